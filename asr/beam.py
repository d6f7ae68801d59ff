"""CTC prefix beam search for ``--decoder beam``: lexicon-free, or with a word n-gram LM.

It wraps torchaudio's flashlight-text decoder (:func:`torchaudio.models.decoder.ctc_decoder`)
instead of hand-written search code. ``flashlight-text`` is an optional dependency
(``pip install flashlight-text``); without it :class:`BeamCTCDecoder` raises
:class:`BeamSearchUnavailable`, a ``ValueError`` the CLI prints as one line.

Paths that yield the same token prefix are merged by log-sum (``log_add=True``), which
is what distinguishes a *prefix* beam search from a beam over single alignments: it can
pick a transcript whose best single path loses to greedy decoding's path but whose
paths together are more probable.

With ``BeamOptions.lm`` (an ARPA file, e.g. from ``asr lm``) the search is restricted to the
LM's words (the lexicon spells each with the model's own tokenizer) and scores
``acoustic + lm_weight * log LM + word_score * words``, as in Kaldi/WeNet/sherpa decoding
with an n-gram LM; words outside the LM's vocabulary cannot be output.

Beam search runs as a stream's ``final_decoder`` (``Stream(final_decoder=BeamCTCDecoder(...))``):
it decodes each segment's log-probabilities when the segment closes, so the acoustic path is
the streaming one and ``asr transcribe``, ``asr eval``, ``asr serve`` and ``asr mic`` share one
code path; partial results of a live stream stay greedy.

A model with a bundled LM (:mod:`asr.lmbundle`) decodes its finals this way by default
(``--decoder default``: ``asr transcribe`` and ``asr eval``); ``--decoder greedy`` turns it off.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from dataclasses import dataclass, replace
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

from .argtypes import finite_float
from .decoding import Result, Token, Word, assemble_words, span_word
from .tokenizer import WORD_START, Tokenizer

__all__ = ["BeamOptions", "BeamCTCDecoder", "BeamSearchUnavailable", "beam_available", "add_decoder_arguments",
           "add_beam_arguments", "beam_options", "check_decoder_arguments", "decoder_options",
           "decoder_from_arguments"]

# flashlight's lexicon-free decoder needs a "silence" token; the model has none, so a
# dummy one is appended to the vocabulary with an emission no path will ever take.
_SIL = "<sil>"
_NEVER = -1.0e4


class BeamSearchUnavailable(ValueError):
    pass


def beam_available() -> bool:
    """True when ``flashlight-text`` (torchaudio's CTC decoder backend) is importable."""
    try:
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class BeamOptions:
    # Defaults measured on dev with the default model and the corpus recipe's 3-gram LM
    # (recipes/eval/tune_lm.py, recipes/eval/README.md): with the LM, WER falls from 58.5 % at
    # beam 16 to 52.2 % at 128 (51.4 % at 256, 50.3 % at 512); trying only the 8 most probable of
    # the 257 tokens per step costs no WER and cuts the search's CPU time about 10x.
    beam_size: int = 128  # hypotheses kept after each step
    beam_size_token: Optional[int] = 8  # tokens tried per step, most probable first (None: the whole vocabulary)
    beam_threshold: float = 50.0  # drop hypotheses scoring this much (log) below the best
    log_add: bool = True  # merge equal prefixes by log-sum (prefix beam search); False: keep the max
    lm: Optional[str] = None  # word n-gram LM, ARPA (asr lm); None: lexicon-free search without LM
    lm_weight: float = 1.0  # weight of the LM's log probability
    word_score: float = 0.0  # added per word (positive: longer outputs, fewer deletions)

    def __post_init__(self):
        if self.beam_size < 1:
            raise ValueError(f"--beam-size must be at least 1, got {self.beam_size}")
        if self.beam_size_token is not None and self.beam_size_token < 1:
            raise ValueError(f"--beam-size-token must be at least 1 (None, or 0 on the command line: the whole "
                             f"vocabulary), got {self.beam_size_token}")
        if not self.beam_threshold > 0:
            raise ValueError(f"--beam-threshold must be positive, got {self.beam_threshold}")
        for name in ("lm_weight", "word_score"):
            if not math.isfinite(getattr(self, name)):  # NaN would make every hypothesis's score NaN
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}")

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``beam 128 (8 tokens/step, threshold 50) + LM (weight 1, word score 1)``."""
        d = f"beam {self.beam_size} ({self.beam_size_token or 'all'} tokens/step, threshold {self.beam_threshold:g})"
        return d + (f" + LM (weight {self.lm_weight:g}, word score {self.word_score:g})" if self.lm else "")


_BEAM_FLAGS = ("beam_size", "beam_size_token", "beam_threshold", "lm_weight", "word_score")


def beam_options(args, base: Optional[BeamOptions] = None) -> "BeamOptions":
    """:class:`BeamOptions` from the flags of :func:`add_beam_arguments`: a flag not given keeps
    ``base``'s value (a bundled LM's settings, ``Recognizer.decoding``), else :class:`BeamOptions`'
    default; ``--lm`` replaces ``base``'s LM."""
    given = {k: getattr(args, k) for k in _BEAM_FLAGS if hasattr(args, k)}  # a flag not given is not set
    base = base or BeamOptions()
    return replace(base, lm=getattr(args, "lm", None) or base.lm, **given)


def check_decoder_arguments(args) -> None:
    """Fail fast on flag combinations :func:`add_decoder_arguments` cannot express. ``--decoder default``
    next to ``--grammar``, which chooses the final decoder itself, becomes ``greedy`` here, so its own
    check sees no beam search asked for (``--hotwords`` join the default decoder's LM instead)."""
    if args.lm and args.decoder != "beam":
        raise ValueError("--lm needs --decoder beam")
    if args.decoder == "default" and getattr(args, "grammar", None):
        args.decoder = "greedy"


def decoder_options(args, rec) -> Optional[BeamOptions]:
    """The beam search the flags ask for with model ``rec``; None: greedy finals. ``--decoder
    default``: the model's bundled LM (``rec.decoding``, its settings under any beam flags given)
    if it has one, else greedy."""
    check_decoder_arguments(args)
    if args.decoder == "greedy":
        return None
    if args.decoder == "default":
        bundled = getattr(rec, "decoding", None)
        return None if bundled is None else beam_options(args, bundled)
    return beam_options(args)


def decoder_from_arguments(args, rec) -> Optional["BeamCTCDecoder"]:
    """The decoder the flags ask for, for model ``rec``: None (greedy) or a :class:`BeamCTCDecoder`
    (with ``--decoder default`` the process's shared one, :func:`asr.lmbundle.shared_decoder`)."""
    opts = decoder_options(args, rec)
    if opts is None:
        return None
    if args.decoder == "default":
        from .lmbundle import shared_decoder

        return shared_decoder(rec, opts)  # None without flashlight-text: greedy, after a warning
    return BeamCTCDecoder(rec.tokenizer, rec.step_s, opts)


def _tokens_per_step(text: str) -> Optional[int]:
    """``--beam-size-token``: 0 on the command line means the whole vocabulary (None)."""
    n = int(text)
    return None if n == 0 else n


_tokens_per_step.__name__ = "int"  # argparse's error for a non-number: "invalid int value: ..."


def add_beam_arguments(p) -> None:
    """The beam search's flags: ``--beam-size --beam-size-token --beam-threshold --lm --lm-weight
    --word-score``. A flag not given is not set on the parsed arguments (:func:`beam_options` then
    takes the bundled LM's setting or :class:`BeamOptions`' default)."""
    from argparse import SUPPRESS

    o = BeamOptions()
    unset = "with --decoder default the bundled LM's setting, else"
    p.add_argument("--beam-size", type=int, default=SUPPRESS, metavar="N",
                   help=f"beam size (default: {unset} {o.beam_size})")
    p.add_argument("--beam-size-token", type=_tokens_per_step, default=SUPPRESS, metavar="N",
                   help=f"tokens tried per step, the most probable first (0: the whole vocabulary; default: {unset} "
                        f"{o.beam_size_token})")
    p.add_argument("--beam-threshold", type=float, default=SUPPRESS, metavar="X",
                   help=f"drop hypotheses scoring more than X below the best (default: {unset} {o.beam_threshold:g})")
    p.add_argument("--lm", metavar="ARPA", help="word n-gram LM for --decoder beam (build one with `asr lm`; "
                   "tune its weights with recipes/eval/tune_lm.py); output is then limited to the LM's words")
    p.add_argument("--lm-weight", type=finite_float, default=SUPPRESS, help=f"LM weight (default: {unset} {o.lm_weight:g})")
    p.add_argument("--word-score", type=finite_float, default=SUPPRESS,
                   help=f"per-word bonus with an LM (default: {unset} {o.word_score:g})")


def add_decoder_arguments(p, finals_only: bool = False, default: Optional[str] = None) -> None:
    """The decoder flags shared by ``asr transcribe``, ``asr eval``, ``asr serve`` and ``asr mic``:
    ``--decoder`` and :func:`add_beam_arguments`' flags.
    ``finals_only``: live recognition, where partial results always stay greedy. ``default``: the
    ``--decoder`` default; None: ``default`` (the model's bundled LM), or ``greedy`` with ``finals_only``
    (``asr serve`` keeps greedy finals unless asked; ``asr mic`` passes ``default``)."""
    default = default or ("greedy" if finals_only else "default")
    what = "final results (partial results stay greedy)" if finals_only else "CTC decoding"
    p.add_argument("--decoder", choices=["default", "greedy", "beam"], default=default,
                   help=f"{what}: default: beam search with the model's bundled word LM if it has one, else greedy; "
                        "greedy: best path; beam: beam search, lexicon-free or, with --lm, limited to the LM's words. "
                        "Beam search needs flashlight-text (default: %(default)s)")
    add_beam_arguments(p)


def spellings(tok: Tokenizer, word: str) -> List[List[str]]:
    """A word's spellings in the model's tokens for a lexicon ([] if it has none): its pieces, and for a
    char model, whose word-boundary token sits between words, not before the first one, the pieces
    after that token too."""
    try:
        ids = tok.encode(word)
    except ValueError:  # characters outside a char model's alphabet
        return []
    if not ids or 0 in ids:
        return []
    pieces = [tok.pieces[i] for i in ids]
    return [pieces] if pieces[0].startswith(WORD_START) else [pieces, [WORD_START, *pieces]]


def spell_info(spells: List[List[str]]) -> Tuple[int, bool]:
    """(tokens of the first spelling, whether it starts with the word-boundary token): how
    :meth:`BeamCTCDecoder._lexicon_words` finds a word's tokens in a hypothesis."""
    return len(spells[0]), spells[0][0] == WORD_START


def lexicon_entries(tok: Tokenizer, lm: str) -> Iterator[Tuple[str, List[List[str]]]]:
    """``(word, spellings)`` of each word of ARPA file ``lm`` that the model's tokens can spell, in the file's order."""
    from .lm import arpa_vocabulary

    for w in arpa_vocabulary(lm):
        spells = spellings(tok, w)
        if spells:
            yield w, spells


def emissions(log_probs: Sequence[torch.Tensor], vocab: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Non-empty ``(steps_i, vocab)`` log-probs -> the flashlight search's ``(batch, steps, vocab + 1)``
    input (the dummy silence token never emitted) and the lengths."""
    lens = torch.tensor([lp.shape[0] for lp in log_probs])
    em = torch.full((len(log_probs), int(lens.max()), vocab + 1), _NEVER, dtype=torch.float32)
    for b, lp in enumerate(log_probs):
        em[b, : lens[b], :vocab] = lp.float()
    return em.contiguous(), lens


class BeamCTCDecoder:
    """Offline beam search over ``(steps, vocab)`` CTC log-probabilities -> :class:`Result`
    (an :class:`asr.decoding.Decoder`).

    ``step_s`` is the duration of one output step (``Recognizer.step_s``); word times
    and confidences follow the greedy decoder's conventions (start = first step of the
    word's first token, end = step after its last token, conf = mean posterior of its
    tokens at the steps the beam chose for them).
    """

    def __init__(self, tokenizer: Tokenizer, step_s: float, opts: BeamOptions = BeamOptions()):
        if not beam_available():
            raise BeamSearchUnavailable(
                "--decoder beam needs torchaudio's CTC decoder backend: pip install flashlight-text"
            )
        from torchaudio.models.decoder import ctc_decoder

        self.tok = tokenizer
        self.step_s = step_s
        self.opts = opts
        self.vocab = tokenizer.vocab_size
        self._lock = threading.Lock()  # one decoder may serve the streams (and server workers) of a process
        self._shared_lock = threading.Lock()
        lexicon, self._spell_len, self._shared = None, {}, None
        if opts.lm is not None:
            if not os.path.isfile(opts.lm):
                raise FileNotFoundError(f"no such language model: {opts.lm}")
            lexicon = self._write_lexicon(opts.lm)
        from .lm import quiet_native_stderr

        try:
            with quiet_native_stderr():  # KenLM's loading banner (fd 2); other messages still get through
                self._dec = ctc_decoder(
                    lexicon=lexicon, tokens=list(tokenizer.pieces) + [_SIL], lm=opts.lm, nbest=1,
                    beam_size=opts.beam_size, beam_size_token=opts.beam_size_token,
                    beam_threshold=opts.beam_threshold, log_add=opts.log_add,
                    lm_weight=opts.lm_weight, word_score=opts.word_score,
                    blank_token=tokenizer.pieces[0], sil_token=_SIL, unk_word="<unk>",
                )
        finally:
            if lexicon is not None:
                os.unlink(lexicon)

    def _write_lexicon(self, lm: str) -> str:
        """A flashlight lexicon file: each LM word and its spelling(s) in the model's tokens."""
        fd, path = tempfile.mkstemp(suffix=".lexicon.txt", text=True)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for w, spells in lexicon_entries(self.tok, lm):
                self._spell_len[w] = spell_info(spells)
                f.writelines(f"{w}\t{' '.join(s)}\n" for s in spells)
        return path

    def lexicon_search(self):
        """The search's shared parts for per-request lexicons (:class:`asr.lmhotwords.SharedLexicon`),
        built on first use; None without an LM."""
        if self.opts.lm is None:
            return None
        with self._shared_lock:  # not the search's lock: building this must not hold up decoding
            if self._shared is None:
                from .lmhotwords import SharedLexicon

                self._shared = SharedLexicon(self)
            return self._shared

    def decode(self, log_probs: torch.Tensor, length: Optional[int] = None) -> Result:
        """One utterance: ``log_probs`` ``(steps, vocab)``, its first ``length`` steps (None: all)."""
        return self.decode_batch([log_probs if length is None else log_probs[:length]])[0]

    def describe(self) -> str:
        return self.opts.describe()

    def decode_batch(self, log_probs: Sequence[torch.Tensor]) -> List[Result]:
        """Several utterances of different lengths (each ``(steps_i, vocab)``)."""
        out: List[Optional[Result]] = [None] * len(log_probs)
        todo = [i for i, lp in enumerate(log_probs) if lp.shape[0] > 0]
        for i, lp in enumerate(log_probs):
            if lp.shape[0] == 0:
                out[i] = Result("", [], 0.0, 0.0)
        if todo:
            em, lens = emissions([log_probs[i] for i in todo], self.vocab)
            with self._lock:  # one search at a time: the flashlight decoder keeps its search state in itself
                hyps = self._dec(em, lens)
            for b, i in enumerate(todo):
                out[i] = self._result(hyps[b][0], log_probs[i])
        return out  # type: ignore[return-value]

    def _result(self, hyp, lp: torch.Tensor, spell_len: Optional[dict] = None) -> Result:
        """A flashlight hypothesis (``tokens``, ``timesteps``, ``words``) over log-probs ``lp`` -> Result.
        ``spell_len``: the lexicon's :func:`spell_info` by word (None: this decoder's own)."""
        tokens = []
        for tid, t in zip(hyp.tokens.tolist(), hyp.timesteps.tolist()):
            if tid == 0 or tid >= self.vocab:  # blank, dummy silence
                continue
            t = min(int(t), lp.shape[0] - 1)
            tokens.append(Token(tid, t, t, float(lp[t, tid].exp())))
        spell_len = self._spell_len if spell_len is None else spell_len
        if spell_len:
            words = self._lexicon_words(hyp.words, tokens, spell_len)
        else:
            words = assemble_words(tokens, self.tok.pieces, self.step_s)  # as the greedy decoder does
        return Result.of_words(words, 0.0, lp.shape[0] * self.step_s)

    def _lexicon_words(self, hyp_words: Sequence[str], tokens: List[Token], spell_len: dict) -> List[Word]:
        """Words of a lexicon search: each consumes its spelling's tokens (a char model's
        optional word-boundary token before it is skipped), giving its times and confidence."""
        words, k = [], 0
        for w in hyp_words:
            if w not in spell_len:  # <unk> (only with a finite unk score): no spelling to align
                continue
            n, starts_with_boundary = spell_len[w]
            if k < len(tokens) and self.tok.pieces[tokens[k].id] == WORD_START and not starts_with_boundary:
                k += 1
            grp = tokens[k : k + n]
            k += n
            if grp:
                words.append(span_word(w, grp[0].first, grp[-1].last, [t.prob for t in grp], self.step_s))
        return words
