"""Grammar decoding: the result is one phrase of a fixed list (Vosk's ``phrase_list``, PocketSphinx's
JSGF alternatives / keyword lists), for commands, digits and menus.

:class:`GrammarDecoder` is an :class:`asr.decoding.Decoder`: it runs over one segment's CTC
log-probabilities, as a stream's ``final_decoder`` (``rec.transcribe(samples, decoder=GrammarDecoder(...))``,
``asr transcribe --grammar``, ``asr eval --grammar``); partial results of a live stream stay greedy.
Each segment gives exactly one phrase.

Scoring: every phrase is spelled with the model's own tokenizer and scored by its CTC
log-likelihood ``log P(phrase | audio)`` (the sum over all its alignments,
:func:`torch.nn.functional.ctc_loss`, all phrases as one batch); the most likely phrase wins. Its words get
times and confidences from the best single alignment of that phrase
(:func:`torchaudio.functional.forced_align`) through :func:`asr.decoding.assemble_words`, as the greedy
and beam decoders give theirs.

Rejection (``"[unk]"`` in the list, as in Vosk): the unconstrained best path (greedy decoding) scores
``G = sum_t max_v log p_t(v)``. A phrase that is what was said scores about ``G`` (often above: it sums
many alignments); one that does not fit must push some steps off their best token. So when
``(log P(best phrase) - G) / steps`` is below ``-unk_threshold`` (nats per output step), the segment
is ``"[unk]"``. A segment whose greedy path is only blanks (nothing said) is empty when ``"[unk]"``
is allowed. Without ``"[unk]"`` the choice is forced: the best phrase, always (a segment with no
steps, or too short for any phrase, is empty).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from .argtypes import parser_type
from .decoding import Alternative, Result, Token, Word, assemble_words
from .text import normalize

__all__ = ["UNK", "UNK_THRESHOLD", "GrammarDecoder", "PhraseScore", "normalize_phrases", "parse_grammar",
           "add_grammar_argument", "check_grammar_arguments",
           "grammar_argument", "describe_grammar"]

UNK = "[unk]"  # in a phrase list: "no phrase fits" is a possible result (Vosk's spelling)
# nats per output step: see the module docstring. Measured with the bundled model (08:14 build) and a
# digits grammar on Speech Commands dev clips: 0.5 rejects 3 of 40 spoken digits and 56 of 100 other
# words (0.75: 1 of 40, 10 of 100; 0.3: 19 of 40, 93 of 100). A weak separation: tune per model/grammar.
UNK_THRESHOLD = 0.5
_BATCH_ELEMENTS = 8_000_000  # steps x phrases x vocab per ctc_loss call (bounds memory for long lists)


@dataclass(frozen=True)
class PhraseScore:
    phrase: str
    log_prob: float  # log P(phrase | segment), nats (-inf: the segment is too short for it)
    margin: float  # (log_prob - greedy path's log-prob) / steps, nats per step (compared with -unk_threshold)


def normalize_phrases(phrases: Sequence[str]) -> Tuple[Tuple[str, ...], bool]:
    """Phrases as the model spells them (:func:`asr.text.normalize`), duplicates dropped, order kept
    -> (phrases, whether ``"[unk]"`` was among them). ValueError for an empty list, a non-string,
    or a phrase with no words."""
    if isinstance(phrases, str) or not isinstance(phrases, (list, tuple)):
        raise ValueError(f"a grammar is a list of phrases, got {type(phrases).__name__}")
    out: List[str] = []
    unk = False
    for p in phrases:
        if not isinstance(p, str):
            raise ValueError(f"grammar phrases must be strings, got {p!r}")
        if p.strip().lower() == UNK:
            unk = True
            continue
        n = normalize(p)
        if not n:
            raise ValueError(f"grammar phrase {p!r} has no words")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError("a grammar needs at least one phrase besides [unk]")
    return tuple(out), unk


def parse_grammar(text: str) -> Tuple[str, ...]:
    """``--grammar``: a JSON file holding a list of phrases, a JSON list (``'["turn on", "stop", "[unk]"]'``,
    Vosk's ``phrase_list`` form) or comma-separated phrases (``zero,one,two``) -> the phrases as given
    (``"[unk]"`` included). ValueError with a one-line reason."""
    text = text.strip()
    if not text:
        raise ValueError("empty grammar")
    if os.path.isfile(text) or text.lower().endswith(".json"):
        try:
            with open(text, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"no such grammar file: {text}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read grammar file {text}: {e}") from None
        where = text
    elif text.startswith(("[", "{")) and not text.lower().startswith(UNK):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not a JSON list of phrases: {e}") from None
        where = "the JSON list"
    else:
        data = [p for p in text.split(",")]
        where = "the list"
    if not isinstance(data, list) or not data:
        raise ValueError(f"{where} must be a non-empty list of phrases")
    normalize_phrases(data)  # the same checks the decoder makes, before any model is loaded
    return tuple(data)


grammar_argument = parser_type(parse_grammar, "grammar")  # argparse type of ``--grammar``


def add_grammar_argument(p) -> None:
    """``--grammar`` for ``asr transcribe`` and ``asr eval``."""
    p.add_argument("--grammar", type=grammar_argument, metavar="PHRASES",
                   help="restrict each result to one of these phrases: a JSON file or JSON list of phrases, or "
                        'comma-separated phrases ("zero,one,two"); include [unk] to allow "no phrase fits" '
                        "(greedy acoustic path, CTC scoring of every phrase; not with --decoder beam)")


def check_grammar_arguments(args) -> None:
    if getattr(args, "grammar", None) and (args.decoder != "greedy" or args.lm):
        raise ValueError("--grammar replaces the decoder: drop --decoder beam / --lm")


def describe_grammar(phrases: Sequence[str], unk_threshold: float = UNK_THRESHOLD) -> str:
    """One line, e.g. ``grammar (10 phrases, [unk] below -0.5 nats/step)``."""
    ps, unk = normalize_phrases(list(phrases))
    return f"grammar ({len(ps)} phrase{'s' if len(ps) != 1 else ''}" + (
        f", [unk] below -{unk_threshold:g} nats/step)" if unk else ")")


class GrammarDecoder:
    """Offline grammar decoding of a segment's ``(steps, vocab)`` log-probabilities -> a :class:`Result`
    that is one of ``phrases`` (normalised), ``"[unk]"`` or empty; see the module docstring.

    Args:
        phrases: the grammar, e.g. ``["zero", "one", ...]`` or ``["turn on the light", "stop", "[unk]"]``.
        recognizer: the model (anything with ``tokenizer`` and ``step_s``): phrases are spelled with its
            tokenizer; word times are ``step * recognizer.step_s`` seconds.
        unk_threshold: with ``"[unk]"``, the segment is ``"[unk]"`` when the best phrase scores more than
            this many nats per step below the greedy path.
        nbest: > 1: each result lists up to this many phrases as :attr:`Result.alternatives` (a rejected
            segment's ``"[unk]"`` first, scored as the greedy path), with their log-likelihoods.

    Stateless after construction, so one decoder serves many streams of one thread.
    """

    def __init__(self, phrases: Sequence[str], recognizer, unk_threshold: float = UNK_THRESHOLD, nbest: int = 1):
        if not (math.isfinite(unk_threshold) and unk_threshold >= 0):
            raise ValueError(f"unk_threshold must be a finite number of 0 or more, got {unk_threshold}")
        if not (isinstance(nbest, int) and nbest >= 1):
            raise ValueError(f"nbest must be a positive integer, got {nbest!r}")
        self.max_alternatives = nbest
        self.phrases, self.allow_unk = normalize_phrases(list(phrases))
        self.tok = recognizer.tokenizer
        self.step_s = recognizer.step_s
        self.unk_threshold = unk_threshold
        self._ids: List[List[int]] = []
        for p in self.phrases:
            ids = self.tok.encode(p)  # ValueError for characters outside a char model's alphabet
            if not ids or 0 in ids:
                raise ValueError(f"grammar phrase {p!r} cannot be spelled with the model's tokens")
            self._ids.append(ids)
        lens = torch.tensor([len(i) for i in self._ids])
        self._targets = torch.zeros(len(self._ids), int(lens.max()), dtype=torch.long)
        for k, ids in enumerate(self._ids):
            self._targets[k, : len(ids)] = torch.tensor(ids)
        self._lens = lens

    def describe(self) -> str:
        d = describe_grammar(list(self.phrases) + ([UNK] if self.allow_unk else []), self.unk_threshold)
        return d + (f", {self.max_alternatives}-best" if self.max_alternatives > 1 else "")

    # ---- scoring --------------------------------------------------------------------
    def log_likelihoods(self, log_probs: torch.Tensor) -> torch.Tensor:
        """``(phrases,)`` CTC log-likelihoods of every phrase over ``log_probs`` ``(steps, vocab)``."""
        lp = log_probs.float()
        steps, vocab = lp.shape
        n = len(self._ids)
        out = torch.empty(n)
        per_call = max(1, _BATCH_ELEMENTS // max(1, steps * vocab))
        for a in range(0, n, per_call):
            b = min(n, a + per_call)
            lens = self._lens[a:b]
            loss = torch.nn.functional.ctc_loss(
                lp.unsqueeze(1).expand(steps, b - a, vocab), self._targets[a:b, : int(lens.max())],
                torch.full((b - a,), steps, dtype=torch.long), lens, blank=0, reduction="none", zero_infinity=False)
            out[a:b] = -loss
        return out

    def nbest(self, log_probs: torch.Tensor, length: Optional[int] = None,
              n: Optional[int] = None) -> List[PhraseScore]:
        """The phrases sorted by log-likelihood, best first (the first ``n``; None: all), over the first
        ``length`` steps of ``log_probs`` ``(steps, vocab)``."""
        lp = log_probs if length is None else log_probs[:length]
        if lp.shape[0] == 0:
            return []
        with torch.no_grad():
            ll = self.log_likelihoods(lp)
            greedy = float(lp.float().max(dim=-1).values.sum())
        order = sorted(range(len(self.phrases)), key=lambda k: -float(ll[k]))[:n]
        return [PhraseScore(self.phrases[k], float(ll[k]), (float(ll[k]) - greedy) / lp.shape[0]) for k in order]

    # ---- decoding -------------------------------------------------------------------
    def decode(self, log_probs: torch.Tensor, length: Optional[int] = None) -> Result:
        """One segment: ``log_probs`` ``(steps, vocab)``, its first ``length`` steps (None: all).
        Word times in seconds from the first step."""
        lp = (log_probs if length is None else log_probs[:length]).float()
        end = lp.shape[0] * self.step_s
        ranked = [p for p in self.nbest(lp, n=self.max_alternatives) if math.isfinite(p.log_prob)]
        if not ranked:
            return Result("", [], 0.0, end)
        alts: List[Alternative] = []
        if self.allow_unk:
            greedy = self._greedy_tokens(lp)
            if not greedy:
                return Result("", [], 0.0, end)
            if ranked[0].margin < -self.unk_threshold:
                word = Word(UNK, greedy[0].first * self.step_s, (greedy[-1].last + 1) * self.step_s,
                            sum(t.prob for t in greedy) / len(greedy))
                alts.append(Alternative(UNK, [word], float(lp.max(dim=-1).values.sum())))
        for p in ranked[: max(self.max_alternatives, 1) - len(alts)]:
            words = assemble_words(self._aligned_tokens(lp, self._ids[self.phrases.index(p.phrase)]),
                                   self.tok.pieces, self.step_s)
            alts.append(Alternative(p.phrase, words, p.log_prob))
        res = Result.of_words(alts[0].words, 0.0, end)
        if self.max_alternatives > 1:
            top = max(a.score for a in alts)
            total = sum(math.exp(a.score - top) for a in alts)
            for a in alts:
                a.confidence = math.exp(a.score - top) / total
            res.alternatives = alts
        return res

    @staticmethod
    def _greedy_tokens(lp: torch.Tensor) -> List[Token]:
        best, ids = lp.max(dim=-1)
        return _runs(ids.tolist(), best.exp().tolist())

    @staticmethod
    def _aligned_tokens(lp: torch.Tensor, ids: List[int]) -> List[Token]:
        """The phrase's tokens at their best alignment: each token's run of steps and peak posterior."""
        from torchaudio.functional import forced_align

        labels, _ = forced_align(lp[None], torch.tensor([ids], dtype=torch.int32), blank=0)
        labels = labels[0].tolist()
        probs = lp.exp()
        return _runs(labels, [float(probs[t, i]) for t, i in enumerate(labels)])


def _runs(labels: List[int], probs: List[float]) -> List[Token]:
    """CTC path -> tokens: each run of one non-blank label is a token (first/last step, peak posterior)."""
    tokens: List[Token] = []
    prev = 0
    for t, (i, p) in enumerate(zip(labels, probs)):
        if i != 0:
            if i == prev:
                tokens[-1].last = t
                tokens[-1].prob = max(tokens[-1].prob, p)
            else:
                tokens.append(Token(i, t, t, p))
        prev = i
    return tokens
