"""Word n-gram language model for the beam decoder: estimated from training text, written as ARPA.

``asr lm TEXT... -o lm.arpa`` reads manifests (``.jsonl``, their ``text`` field) or plain text
files (one sentence per line), normalises every sentence with :func:`asr.text.normalize`, and
writes an interpolated Kneser-Ney model of the given order (default 3) in the ARPA format that
KenLM, and so torchaudio's flashlight decoder (``asr eval --decoder beam --lm lm.arpa``), reads.

Estimation (Chen & Goodman's interpolated Kneser-Ney with one discount per order):

* counts: the highest order uses raw counts; lower orders use *continuation* counts (how many
  distinct words precede the n-gram), except n-grams starting with ``<s>``, which cannot be
  extended to the left and keep raw counts;
* ``p(w | h) = max(a(hw) - D, 0) / a(h*) + gamma(h) * p(w | h')`` with ``h'`` the history
  without its first word, ``gamma(h) = D * |{w: a(hw) > 0}| / a(h*)`` and the discount
  ``D = n1 / (n1 + 2 n2)`` from the order's counts-of-counts; unigrams interpolate with the
  uniform distribution over the vocabulary (which includes ``</s>`` and ``<unk>``);
* the ARPA file stores the interpolated ``p(w | h)`` of every seen n-gram and ``gamma(h)`` as
  the back-off weight of every history, so ARPA back-off reproduces the interpolated model
  exactly (``tests/test_lm.py`` checks that each history's distribution sums to one).

This module is pure Python and imports no model, training or server code.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Tuple

from .text import normalize

__all__ = ["LMStats", "build_arpa", "read_sentences", "arpa_vocabulary"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
Ngram = Tuple[str, ...]


@dataclass(frozen=True)
class LMStats:
    order: int
    sentences: int
    words: int  # running words (without <s>, </s>)
    vocab: int  # distinct words (without <s>, </s>, <unk>)
    ngrams: Tuple[int, ...]  # entries written per order
    discounts: Tuple[float, ...]


def read_sentences(paths: Iterable[str]) -> Iterator[str]:
    """Normalised sentences from manifests (``*.jsonl``: the ``text`` field) or text files."""
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"no such text or manifest file: {p}")
        with open(path, encoding="utf-8") as f:
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


def build_arpa(sentences: Iterable[str], out: str, order: int = 3) -> LMStats:
    """Estimate an interpolated Kneser-Ney ``order``-gram model and write it to ``out`` (ARPA)."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    raw: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]  # raw[n][ngram]
    n_sent = n_words = 0
    for s in sentences:
        toks = [BOS, *s.split(), EOS]
        n_sent += 1
        n_words += len(toks) - 2
        for n in range(1, order + 1):
            for i in range(len(toks) - n + 1):
                raw[n][tuple(toks[i : i + n])] += 1
    if n_sent == 0:
        raise ValueError("no sentences to build a language model from")
    raw[1].pop((BOS,), None)

    # adjusted counts a[n]: raw for the top order and for n-grams starting with <s>, else continuation
    adj: List[Dict[Ngram, int]] = [dict() for _ in range(order + 1)]
    adj[order] = dict(raw[order])
    for n in range(1, order):
        cont: Dict[Ngram, int] = defaultdict(int)
        for g in raw[n + 1]:
            cont[g[1:]] += 1
        for g, c in raw[n].items():
            adj[n][g] = c if g[0] == BOS else cont.get(g, 0)
        adj[n] = {g: c for g, c in adj[n].items() if c > 0}

    vocab = sorted({g[0] for g in raw[1]} | {EOS, UNK})
    discounts = [0.0] + [_discount(adj[n].values()) for n in range(1, order + 1)]

    # per-history totals and number of distinct continuations, for every order
    tot: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    typ: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    for n in range(1, order + 1):
        for g, c in adj[n].items():
            tot[n][g[:-1]] += c
            typ[n][g[:-1]] += 1

    def gamma(n: int, h: Ngram) -> float:
        t = tot[n].get(h, 0)
        return discounts[n] * typ[n][h] / t if t else 1.0

    prob: List[Dict[Ngram, float]] = [dict() for _ in range(order + 1)]
    g0 = gamma(1, ())
    for w in vocab:
        prob[1][(w,)] = max(adj[1].get((w,), 0) - discounts[1], 0) / tot[1][()] + g0 / len(vocab)

    def lower(g: Ngram) -> float:  # interpolated p(g[-1] | g[1:-1]) of order len(g) - 1
        n = len(g) - 1
        if g[1:] in prob[n]:
            return prob[n][g[1:]]
        return gamma(n, g[1:-1]) * lower(g[1:]) if n > 1 else prob[1].get(g[-1:], prob[1][(UNK,)])

    for n in range(2, order + 1):
        D = discounts[n]
        for g, c in adj[n].items():
            h = g[:-1]
            prob[n][g] = (c - D) / tot[n][h] + gamma(n, h) * lower(g)

    histories = [set() for _ in range(order + 1)]
    for n in range(2, order + 1):
        histories[n - 1] = {g[:-1] for g in prob[n]}

    counts = [len(prob[1]) + 1] + [len(prob[n]) for n in range(2, order + 1)]  # +1: <s>
    tmp = Path(str(out) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n, c in enumerate(counts, 1):
            f.write(f"ngram {n}={c}\n")
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            if n == 1:
                f.write(f"-99\t{BOS}\t{_bow(gamma(2, (BOS,))) if order > 1 else 0.0:.6f}\n")
            for g in sorted(prob[n]):
                line = f"{math.log10(prob[n][g]):.6f}\t{' '.join(g)}"
                if n < order and g in histories[n]:
                    line += f"\t{_bow(gamma(n + 1, g)):.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")
    tmp.replace(out)
    return LMStats(order, n_sent, n_words, len(vocab) - 2, tuple(counts), tuple(round(d, 4) for d in discounts[1:]))


def _bow(gamma: float) -> float:
    return math.log10(gamma) if gamma > 0 else -99.0


def arpa_vocabulary(path: str) -> List[str]:
    """The words of an ARPA file's unigram section (without ``<s>``, ``</s>``, ``<unk>``)."""
    words, in_uni = [], False
    with open(path, encoding="utf-8") as f:
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


def _main(args) -> int:
    from tqdm import tqdm

    sents = tqdm(read_sentences(args.text), desc="reading text", unit=" sentences", disable=args.no_progress)
    st = build_arpa(sents, args.output, order=args.order)
    size = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB): {st.order}-gram interpolated Kneser-Ney from "
          f"{st.sentences:,} sentences, {st.words:,} words, vocabulary {st.vocab:,}; "
          f"n-grams {', '.join(f'{c:,}' for c in st.ngrams)}; discounts {st.discounts}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("lm", help="build a word n-gram language model (ARPA) for --decoder beam",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("text", nargs="+", help="manifests (.jsonl, 'text' field) or text files (one sentence per line)")
    p.add_argument("-o", "--output", required=True, help="ARPA file to write")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_main)
