"""Word n-gram language model for the beam decoder: estimated from text, written as ARPA.

``asr lm TEXT... -o lm.arpa`` reads manifests (``.jsonl``, their ``text`` field) or plain text
files (one sentence per line), normalises every sentence with :func:`asr.text.normalize`, and
writes an interpolated Kneser-Ney model of the given order (default 3) in the ARPA format that
KenLM, and so torchaudio's flashlight decoder (``asr eval --decoder beam --lm lm.arpa``), reads;
an output name ending in ``.gz`` is gzip-compressed (KenLM reads it as it is).

Estimation (Chen & Goodman's interpolated Kneser-Ney with one discount per order):

* counts: the highest order uses raw counts; lower orders use *continuation* counts (how many
  distinct words precede the n-gram), except n-grams starting with ``<s>``, which cannot be
  extended to the left and keep raw counts;
* ``p(w | h) = max(a(hw) - D, 0) / a(h*) + gamma(h) * p(w | h')`` with ``h'`` the history
  without its first word, ``gamma(h) = D * |{w: a(hw) > 0}| / a(h*)`` and the discount
  ``D = n1 / (n1 + 2 n2)`` from the order's counts-of-counts; unigrams interpolate with the
  uniform distribution over the vocabulary (which includes ``</s>`` and ``<unk>``);
* the ARPA file stores the interpolated ``p(w | h)`` of every kept n-gram and a back-off weight
  for every history, so ARPA back-off gives a proper distribution for every history
  (``tests/test_lm.py`` checks that each history's distribution sums to one).

Size controls, for a general-text model that has to stay small (``recipes/lm``):

* ``vocab_size``: keep the most frequent words (ties broken alphabetically); every other word
  becomes ``<unk>`` before counting, and n-grams of order 2 and more that contain ``<unk>`` are
  not written (the decoder never outputs ``<unk>``, so they would only take space);
* ``prune``: one count threshold per order, as KenLM's ``lmplz --prune``: an n-gram whose raw
  count is at most the threshold is not written (unigrams are never pruned; thresholds must not
  decrease with the order, so every kept n-gram's prefix and suffix are kept too). The
  statistics (discounts, totals, gamma) still come from all counts; the probability mass of the
  pruned n-grams goes to the back-off, whose weight is renormalised:
  ``bow(h) = (1 - sum_kept p(w | h)) / (1 - sum_kept p(w | h'))``. Without pruning this equals
  ``gamma(h)``, so unpruned models are unchanged.

This module is pure Python and imports no model, training or server code.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .text import normalize

__all__ = ["LMStats", "build_arpa", "read_sentences", "arpa_vocabulary", "open_text", "quiet_native_stderr"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
Ngram = Tuple[str, ...]


@dataclass(frozen=True)
class LMStats:
    order: int
    sentences: int
    words: int  # running words (without <s>, </s>)
    vocab: int  # distinct words written (without <s>, </s>, <unk>)
    ngrams: Tuple[int, ...]  # entries written per order
    discounts: Tuple[float, ...]
    oov_rate: float = 0.0  # share of running words mapped to <unk> by the vocabulary cut
    pruned: Tuple[int, ...] = ()  # n-grams counted but not written, per order


def open_text(path, mode: str = "rt"):
    """``open`` for text files that may be gzip-compressed (name ending in ``.gz``)."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def read_sentences(paths: Iterable[str]) -> Iterator[str]:
    """Normalised sentences from manifests (``*.jsonl``: the ``text`` field) or text files."""
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"no such text or manifest file: {p}")
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    try:
                        line = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError) as e:
                        raise ValueError(f"{p}:{lineno}: not a manifest line with a 'text' field ({e})") from None
                text = normalize(line)
                if text:
                    yield text


def _discount(counts: Iterable[int]) -> float:
    n1 = n2 = 0
    for c in counts:
        n1 += c == 1
        n2 += c == 2
    if n1 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n2 else 0.5


def _check_prune(prune: Optional[Sequence[int]], order: int) -> List[int]:
    """Per-order thresholds (index n for order n; index 0 unused), validated."""
    t = list(prune or [])
    if len(t) > order:
        raise ValueError(f"--prune has {len(t)} thresholds for a {order}-gram model")
    t += [t[-1] if t else 0] * (order - len(t))  # the last threshold applies to the higher orders
    if t[0] != 0:
        raise ValueError("unigrams cannot be pruned: the first --prune threshold must be 0")
    if any(c < 0 for c in t) or any(b < a for a, b in zip(t, t[1:])):
        raise ValueError(f"--prune thresholds must be non-negative and non-decreasing, got {t}")
    return [0] + t


def _count(sentences: Iterable[str], order: int, vocab_size: Optional[int]):
    """Raw n-gram counts (``raw[n]``), sentences, running words and words mapped to ``<unk>``."""
    if vocab_size is not None:
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
        sentences = sentences if isinstance(sentences, list) else list(sentences)
        freq = Counter(w for s in sentences for w in s.split())
        keep = {w for w, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:vocab_size]}
    raw: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    n_sent = n_words = n_oov = 0
    for s in sentences:
        words = s.split()
        if vocab_size is not None:
            words = [w if w in keep else UNK for w in words]
            n_oov += sum(w == UNK for w in words)
        toks = [BOS, *words, EOS]
        n_sent += 1
        n_words += len(words)
        for n in range(1, order + 1):
            r = raw[n]
            for i in range(len(toks) - n + 1):
                r[tuple(toks[i : i + n])] += 1
    if n_sent == 0:
        raise ValueError("no sentences to build a language model from")
    raw[1].pop((BOS,), None)
    return raw, n_sent, n_words, n_oov


def _adjusted(raw: List[Dict[Ngram, int]], order: int) -> List[Dict[Ngram, int]]:
    """Kneser-Ney counts: raw for the top order and n-grams starting with <s>, else continuation."""
    adj: List[Dict[Ngram, int]] = [dict() for _ in range(order + 1)]
    adj[order] = raw[order]
    for n in range(1, order):
        cont: Dict[Ngram, int] = defaultdict(int)
        for g in raw[n + 1]:
            cont[g[1:]] += 1
        adj[n] = {g: (c if g[0] == BOS else cont.get(g, 0)) for g, c in raw[n].items()}
        adj[n] = {g: c for g, c in adj[n].items() if c > 0}
    return adj


class _Model:
    """ARPA entries (``prob[n]``: log-free probabilities, ``bow[n]``: back-off weights)."""

    def __init__(self, order: int):
        self.prob: List[Dict[Ngram, float]] = [dict() for _ in range(order + 1)]
        self.bow: List[Dict[Ngram, float]] = [dict() for _ in range(order + 1)]

    def p(self, g: Ngram) -> float:
        """ARPA back-off probability of ``g[-1]`` after ``g[:-1]``."""
        n = len(g)
        if g in self.prob[n]:
            return self.prob[n][g]
        if n == 1:
            return self.prob[1][(UNK,)]
        return self.bow[n - 1].get(g[:-1], 1.0) * self.p(g[1:])


def _estimate(raw, adj, order: int, thresholds: List[int]):
    """Interpolated KN probabilities of the kept n-grams and renormalised back-off weights."""
    vocab = sorted({g[0] for g in raw[1]} | {EOS, UNK})
    discounts = [0.0] + [_discount(adj[n].values()) for n in range(1, order + 1)]
    tot: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    typ: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    for n in range(1, order + 1):
        for g, c in adj[n].items():
            tot[n][g[:-1]] += c
            typ[n][g[:-1]] += 1

    def gamma(n: int, h: Ngram) -> float:
        t = tot[n].get(h, 0)
        return discounts[n] * typ[n][h] / t if t else 1.0

    m = _Model(order)
    g0 = gamma(1, ())
    for w in vocab:
        m.prob[1][(w,)] = max(adj[1].get((w,), 0) - discounts[1], 0) / tot[1][()] + g0 / len(vocab)
    pruned = [0] * (order + 1)
    for n in range(2, order + 1):
        D, kept_typ = discounts[n], defaultdict(int)
        sum_p, sum_low = defaultdict(float), defaultdict(float)
        for g, c in adj[n].items():
            if raw[n][g] <= thresholds[n] or UNK in g:
                pruned[n] += 1
                continue
            h, low = g[:-1], m.p(g[1:])
            p = (c - D) / tot[n][h] + gamma(n, h) * low
            m.prob[n][g] = p
            kept_typ[h] += 1
            sum_p[h] += p
            sum_low[h] += low
        for h in kept_typ:
            if kept_typ[h] == typ[n][h]:  # nothing pruned after h: the interpolation weight is exact
                m.bow[n - 1][h] = gamma(n, h)
            else:
                m.bow[n - 1][h] = max(1.0 - sum_p[h], 0.0) / max(1.0 - sum_low[h], 1e-12)
    if order > 1 and (BOS,) not in m.bow[1]:
        m.bow[1][(BOS,)] = 1.0
    return m, vocab, discounts, pruned


def _write(m: _Model, order: int, out: str) -> List[int]:
    counts = [len(m.prob[1]) + 1] + [len(m.prob[n]) for n in range(2, order + 1)]  # +1: <s>
    tmp = str(out) + ".tmp"
    opener = gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) if str(out).endswith(".gz") \
        else open(tmp, "w", encoding="utf-8")
    with opener as f:
        f.write("\\data\\\n")
        for n, c in enumerate(counts, 1):
            f.write(f"ngram {n}={c}\n")
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            if n == 1:
                f.write(f"-99\t{BOS}\t{_bow(m.bow[1][(BOS,)]) if order > 1 else 0.0:.6f}\n")
            bows = m.bow[n] if n < order else {}
            for g in sorted(m.prob[n]):
                line = f"{math.log10(m.prob[n][g]):.6f}\t{' '.join(g)}"
                if g in bows:
                    line += f"\t{_bow(bows[g]):.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")
    os.replace(tmp, out)
    return counts


def build_arpa(sentences: Iterable[str], out: str, order: int = 3, vocab_size: Optional[int] = None,
               prune: Optional[Sequence[int]] = None) -> LMStats:
    """Estimate an interpolated Kneser-Ney ``order``-gram model and write it to ``out`` (ARPA;
    gzip if ``out`` ends in ``.gz``). ``vocab_size``: keep only the most frequent words;
    ``prune``: count thresholds per order, e.g. ``(0, 1, 1)`` drops singleton bigrams and trigrams."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    thresholds = _check_prune(prune, order)
    raw, n_sent, n_words, n_oov = _count(sentences, order, vocab_size)
    adj = _adjusted(raw, order)
    m, vocab, discounts, pruned = _estimate(raw, adj, order, thresholds)
    counts = _write(m, order, out)
    return LMStats(order, n_sent, n_words, len(vocab) - 2, tuple(counts), tuple(round(d, 4) for d in discounts[1:]),
                   oov_rate=n_oov / max(n_words, 1), pruned=tuple(pruned[2:]))


def _bow(gamma: float) -> float:
    return math.log10(gamma) if gamma > 0 else -99.0


def arpa_vocabulary(path: str) -> List[str]:
    """The words of an ARPA file's unigram section (without ``<s>``, ``</s>``, ``<unk>``);
    the file may be gzip-compressed (``.gz``)."""
    words, in_uni = [], False
    with open_text(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                if in_uni:
                    break
                in_uni = line == "\\1-grams:"
                continue
            if in_uni and line:
                w = line.split("\t")[1] if "\t" in line else line.split()[1]
                if w not in (BOS, EOS, UNK):
                    words.append(w)
    if not words:
        raise ValueError(f"{path}: no unigrams found; is it an ARPA language model?")
    return words


_KENLM_BANNER = ("Loading the LM will be faster if you build a binary file.", "Reading ",
                 "----5---10---15---20", "****")


@contextlib.contextmanager
def quiet_native_stderr():
    """Hide KenLM's loading banner, which its C++ code prints on file descriptor 2 (so
    ``contextlib.redirect_stderr`` cannot catch it): everything written to fd 2 inside the block
    is captured, and what is not part of the banner is written to ``sys.stderr`` afterwards.
    Usage: ``with quiet_native_stderr(): dec = ctc_decoder(..., lm=path)``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as cap:
        os.dup2(cap.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            cap.seek(0)
            rest = [ln for ln in cap.read().decode("utf-8", "replace").splitlines()
                    if ln.strip() and not ln.startswith(_KENLM_BANNER)]
            if rest:
                sys.stderr.write("\n".join(rest) + "\n")


def _prune_arg(text: str) -> List[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"--prune: expected integers such as '0 1 1', got {text!r}") from None


def _main(args) -> int:
    from tqdm import tqdm

    sents = tqdm(read_sentences(args.text), desc="reading text", unit=" sentences", disable=args.no_progress)
    st = build_arpa(sents, args.output, order=args.order, vocab_size=args.vocab_size,
                    prune=_prune_arg(args.prune) if args.prune else None)
    size = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB): {st.order}-gram interpolated Kneser-Ney from "
          f"{st.sentences:,} sentences, {st.words:,} words, vocabulary {st.vocab:,}"
          f"{f' (OOV {100 * st.oov_rate:.2f} %)' if args.vocab_size else ''}; "
          f"n-grams {', '.join(f'{c:,}' for c in st.ngrams)}; discounts {st.discounts}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("lm", help="build a word n-gram language model (ARPA) for --decoder beam",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="+", help="manifests (.jsonl, 'text' field) or text files (one sentence per line)")
    p.add_argument("-o", "--output", required=True, help="ARPA file to write (.gz: gzip-compressed)")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=None, metavar="N",
                   help="keep the N most frequent words, the rest become <unk> (default: all)")
    p.add_argument("--prune", default=None, metavar="'T1 T2 ...'",
                   help="count thresholds per order: n-grams seen at most T times are not written, e.g. '0 1 1' "
                        "(unigrams are never pruned; the last value applies to higher orders; default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_main)
