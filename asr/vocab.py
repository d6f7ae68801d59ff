"""Runtime vocabulary: the decoder a request's grammar, hotwords and n-best options ask for.

One rule for the Python API (``rec.stream(16000, hotwords=[...])``), the CLI and the server's
per-connection options, given the caller's default final decoder ``default``:

* ``grammar`` (a phrase list, optionally with ``"[unk]"``): :class:`asr.grammar.GrammarDecoder`, each
  segment is one of the phrases; with ``nbest`` > 1 the best phrases as alternatives;
* else ``hotwords`` when ``default`` is a beam search with a word LM (e.g. the bundled LM's) and
  ``nbest`` is 1: :class:`asr.lmhotwords.HotwordBeamDecoder`, the same search with the hotwords added to
  its lexicon and boosted (the LM stays);
* else ``hotwords`` or ``nbest`` > 1: :class:`asr.prefixbeam.PrefixBeamDecoder` (prefix beam search
  with contextual biasing, no LM): greedy finals, a model without an LM, or n-best lists;
* else ``default`` (None: greedy).

Grammar and hotwords together are refused: a grammar already allows nothing else.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .decoding import Decoder

__all__ = ["vocabulary_decoder"]


def vocabulary_decoder(rec, grammar: Optional[Sequence[str]] = None, hotwords=None, nbest: int = 1,
                       default: Optional[Decoder] = None) -> Optional[Decoder]:
    """The final decoder for these options over model ``rec`` and the caller's default final decoder
    ``default`` (see the module docstring).

    ``hotwords``: strings, ``(phrase, boost)`` tuples or ``{"phrase", "boost"}`` dicts, or pairs already
    parsed by :func:`asr.hotwords.parse_hotwords`. ValueError with a one-line reason for bad options."""
    from .prefixbeam import MAX_NBEST

    if isinstance(nbest, bool) or not isinstance(nbest, int) or not 1 <= nbest <= MAX_NBEST:
        raise ValueError(f"nbest must be an integer in [1, {MAX_NBEST}], got {nbest!r}")
    if grammar is not None and hotwords is not None:
        raise ValueError("a grammar and hotwords cannot be combined: the grammar already allows only its phrases")
    if grammar is not None:
        from .grammar import GrammarDecoder

        return GrammarDecoder(grammar, rec, nbest=nbest)
    if hotwords is not None or nbest > 1:
        from .hotwords import parse_hotwords
        from .prefixbeam import PrefixBeamDecoder

        hot = parse_hotwords(hotwords) if hotwords is not None else ()
        if hot and nbest == 1 and getattr(getattr(default, "opts", None), "lm", None) is not None:
            from .lmhotwords import HotwordBeamDecoder  # default: a BeamCTCDecoder with a word LM

            return HotwordBeamDecoder(default, hot)
        return PrefixBeamDecoder(rec, hot, nbest=nbest)
    return default
