"""CTC decoding: greedy search with word times and confidences, streaming-capable.

:class:`GreedyCTCDecoder` consumes log-probabilities step by step and can be asked
for its current hypothesis at any time without changing it, so one decoder serves
offline decoding, partial results and final results alike. It also carries the
simple endpoint rule the server uses (trailing blank time after speech, maximum
segment length); an endpoint only *segments* the token sequence, it never resets
the acoustic state, so the concatenated finals equal the whole-file transcript.

Offline decoders (a whole utterance or a closed segment at once) follow the
:class:`Decoder` protocol: :class:`GreedyDecoder` here, :class:`asr.beam.BeamCTCDecoder`
for beam search. Every decoder turns its token path into words with
:func:`assemble_words`, so word times and confidences mean the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Sequence

import torch

from .errors import OptionError
from .tokenizer import WORD_START, Tokenizer

__all__ = ["Word", "Result", "Alternative", "Token", "Decoder", "GreedyCTCDecoder", "GreedyDecoder", "EndpointConfig",
           "assemble_words", "closed_words", "greedy_decode"]


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the stream
    end: float  # seconds
    conf: float  # mean posterior of the word's tokens at their peaks, 0..1

    def to_dict(self) -> dict:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3), "conf": round(self.conf, 3)}


@dataclass
class Alternative:
    """One entry of an n-best list (``Result.alternatives``)."""

    text: str
    words: List[Word] = field(default_factory=list)
    score: float = 0.0  # log score of the hypothesis (nats; acoustic + hotword bonus), higher is better
    confidence: float = 0.0  # its share of the n-best list's probability mass, 0..1 (sums to 1 over the list)

    def shifted(self, offset_s: float) -> "Alternative":
        """The same alternative with word times ``offset_s`` seconds later."""
        words = [Word(w.word, w.start + offset_s, w.end + offset_s, w.conf) for w in self.words]
        return Alternative(self.text, words, self.score, self.confidence)

    def to_dict(self, words: bool = True) -> dict:
        d = {"text": self.text, "score": round(self.score, 3), "confidence": round(self.confidence, 4)}
        if words:
            d["words"] = [w.to_dict() for w in self.words]
        return d


@dataclass
class Result:
    text: str
    words: List[Word] = field(default_factory=list)
    start: float = 0.0  # seconds: segment start (stream time)
    end: float = 0.0  # seconds: audio decoded so far / segment end
    # set on partial results: the first ``stable`` words (text, times, confidence) will not change any
    # more, in later partials nor in the segment's final result (0 elsewhere: a final is final anyway)
    stable: int = 0
    # n-best decoding (nbest > 1): the alternatives, best first (the first one is ``text``); else empty
    alternatives: List[Alternative] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
            "start": round(self.start, 3),
            "end": round(self.end, 3),
        }

    @classmethod
    def of_words(cls, words: List[Word], start: float = 0.0, end: float = 0.0) -> "Result":
        """The result whose text is ``words`` joined by spaces."""
        return cls(" ".join(w.word for w in words), words, start, end)


class Decoder(Protocol):
    """Offline CTC decoding of one utterance (or one segment of a stream): what a stream's
    ``final_decoder`` and ``Recognizer.transcribe(decoder=...)`` take. Implemented by
    :class:`GreedyDecoder`, :class:`asr.beam.BeamCTCDecoder` and :class:`asr.grammar.GrammarDecoder`."""

    def decode(self, log_probs: torch.Tensor, length: Optional[int] = None) -> Result:
        """``log_probs``: ``(steps, vocab)``; only the first ``length`` steps (None: all).
        Word times are in seconds from the first step."""
        ...

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``greedy`` or ``beam 128 (...)``."""
        ...


@dataclass(frozen=True)
class EndpointConfig:
    """When a segment ends on its own (server-side endpointing)."""

    trailing_silence_s: float = 0.8  # blank-only time after the last token that closes a segment
    max_segment_s: float = 20.0  # a segment longer than this is closed at the next token gap
    enabled: bool = True

    def __post_init__(self):
        for name in ("trailing_silence_s", "max_segment_s"):
            if not getattr(self, name) > 0:  # NaN too
                raise OptionError(name, f"must be positive, got {getattr(self, name)}")


@dataclass
class Token:
    """One token of a decoded CTC path (blanks excluded)."""

    id: int
    first: int  # first step of the token (greedy: first step where it was the arg-max)
    last: int  # last step of its run
    prob: float  # peak posterior


def span_word(text: str, first: int, last: int, probs: Sequence[float], step_s: float,
              offset_s: float = 0.0) -> Word:
    """A word over output steps ``first..last``: start = ``first``, end = the step after ``last``
    (seconds, ``offset_s + step * step_s``), confidence = the mean of ``probs``."""
    return Word(text, offset_s + first * step_s, offset_s + (last + 1) * step_s, sum(probs) / len(probs))


def closed_words(tokens: Sequence[Token], pieces: Sequence[str]) -> int:
    """How many leading words of ``tokens`` are closed: followed by a later token that starts a word.

    A closed word can never change as more tokens are appended: its tokens' runs are over and the
    word-start token after it ends its text. The last word stays open even after a long blank run,
    since a following piece without the word-start mark would extend it.
    """
    last_start = next((k for k in range(len(tokens) - 1, -1, -1) if pieces[tokens[k].id].startswith(WORD_START)), 0)
    n, text = 0, False
    for tok in tokens[:last_start]:
        piece = pieces[tok.id]
        if piece.startswith(WORD_START):
            n += text
            text = False
            piece = piece[len(WORD_START) :]
        text = text or bool(piece)
    return n + text


def assemble_words(tokens: Sequence[Token], pieces: Sequence[str], step_s: float, offset_s: float = 0.0) -> List[Word]:
    """Tokens with steps -> words with times and confidences.

    A piece starting with the word-start mark opens a word; a word spans from the first
    step of its first non-empty piece to the step after its last one; its confidence is
    the mean peak posterior of all its tokens (a bare word-start token included).
    ``pieces``: the tokenizer's pieces by id; ``step_s``: seconds per step; ``offset_s``:
    the time of step 0.
    """
    words: List[Word] = []
    text, first, last, probs = "", None, None, []
    for tok in tokens:
        piece = pieces[tok.id]
        if piece.startswith(WORD_START):
            if text:
                words.append(span_word(text, first, last, probs, step_s, offset_s))
            text, first, last, probs = "", None, None, []
            piece = piece[len(WORD_START) :]
        if piece:
            if first is None:
                first = tok.first
            text += piece
            last = tok.last
        probs.append(tok.prob)
    if text:
        words.append(span_word(text, first, last, probs, step_s, offset_s))
    return words


class GreedyCTCDecoder:
    """Best-path CTC decoding, fed incrementally.

    ``step_s`` is the duration of one output step (model subsampling x frame shift);
    ``offset_s`` shifts reported times (audio consumed before the first step).
    """

    def __init__(self, tokenizer: Tokenizer, step_s: float, offset_s: float = 0.0):
        self.tok = tokenizer
        self.step_s = step_s
        self.offset_s = offset_s
        self.tokens: List[Token] = []
        self.prev = 0  # arg-max id of the previous step (collapses repeats across chunks)
        self.steps = 0  # steps consumed
        self.seg_step = 0  # first step of the current segment
        self.seg_bounds = [0]  # token index where each segment starts; the last is the open one

    def accept(self, log_probs: torch.Tensor) -> None:
        """log_probs: ``(steps, vocab)`` for this stream."""
        if log_probs.numel() == 0:
            return
        best, ids = log_probs.max(dim=-1)
        self.accept_best(ids.tolist(), best.exp().tolist())

    def accept_best(self, ids_l: List[int], probs: List[float]) -> None:
        """Each step's arg-max id and its posterior: what :meth:`accept` takes from the
        log-probs (a batch of streams takes them in one operation, :func:`asr.stream.decode_streams`)."""
        prev = self.prev
        for k, (i, p) in enumerate(zip(ids_l, probs)):
            t = self.steps + k
            if i != 0:
                if i == prev and self.tokens:
                    tok = self.tokens[-1]
                    tok.last = t
                    tok.prob = max(tok.prob, p)
                else:
                    self.tokens.append(Token(i, t, t, p))
            prev = i
        self.prev = prev
        self.steps += len(ids_l)

    # ---- results -------------------------------------------------------------------
    def _t(self, step: int) -> float:
        return self.offset_s + step * self.step_s

    def _words(self, tokens: List[Token]) -> List[Word]:
        return assemble_words(tokens, self.tok.pieces, self.step_s, self.offset_s)

    def result(self) -> Result:
        """The current segment's hypothesis; changes nothing. ``stable``: its closed words
        (:func:`closed_words`): greedy tokens are never revised, so those words are final."""
        tokens = self.tokens[self.seg_bounds[-1] :]
        res = Result.of_words(self._words(tokens), self._t(self.seg_step), self._t(self.steps))
        res.stable = closed_words(tokens, self.tok.pieces)
        return res

    def full_result(self) -> Result:
        """Hypothesis over the whole stream: every segment's words, joined.

        A segment boundary is always a word boundary, so this equals the
        concatenation of the finals even when a segment's first token does not
        carry a word-start mark.
        """
        bounds = self.seg_bounds + [len(self.tokens)]
        words = [w for a, b in zip(bounds, bounds[1:]) for w in self._words(self.tokens[a:b])]
        return Result.of_words(words, self._t(0), self._t(self.steps))

    def endpoint(self, cfg: EndpointConfig) -> bool:
        """True when the current segment should be closed (see :class:`EndpointConfig`)."""
        if not cfg.enabled or len(self.tokens) == self.seg_bounds[-1]:
            return False
        trailing = (self.steps - 1 - self.tokens[-1].last) * self.step_s
        if trailing >= cfg.trailing_silence_s:
            return True
        seg_len = (self.steps - self.seg_step) * self.step_s
        return seg_len >= cfg.max_segment_s and self.prev == 0

    def close_segment(self) -> Result:
        """Return the current segment's result and start a new segment."""
        res = self.result()
        if len(self.tokens) > self.seg_bounds[-1]:
            self.seg_bounds.append(len(self.tokens))
        self.seg_step = self.steps
        return res


class GreedyDecoder:
    """Offline best-path decoding (:class:`Decoder`): one :class:`GreedyCTCDecoder` fed the whole utterance."""

    def __init__(self, tokenizer: Tokenizer, step_s: float):
        self.tok = tokenizer
        self.step_s = step_s

    def decode(self, log_probs: torch.Tensor, length: Optional[int] = None) -> Result:
        """``log_probs``: ``(steps, vocab)``; the first ``length`` steps (None: all)."""
        dec = GreedyCTCDecoder(self.tok, self.step_s)
        dec.accept(log_probs if length is None else log_probs[:length])
        return dec.result()

    def describe(self) -> str:
        return "greedy"


def greedy_decode(log_probs: torch.Tensor, length: int, tokenizer: Tokenizer, step_s: float) -> Result:
    """Offline greedy decoding of one utterance: log_probs ``(steps, vocab)``, its first ``length`` steps."""
    return GreedyDecoder(tokenizer, step_s).decode(log_probs, length)
