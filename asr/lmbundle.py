"""The word LM bundled with a model, and the default final decoder it gives.

A checkpoint ``NAME.pt`` may have a decoding file ``NAME.lm.json`` next to it (the bundled
``default`` model does: ``asr/models/default.lm.json`` and ``default.lm.arpa.gz``)::

    {"lm": "default.lm.arpa.gz",            # ARPA word n-gram, relative to the JSON file
     "lm_weight": 1.5, "word_score": 1.0,   # BeamOptions fields; missing ones keep their defaults
     "beam_size": 128, "beam_size_token": 8, "beam_threshold": 50.0,
     "about": "..."}                         # free text, ignored

:func:`asr.load_model` reads it into ``Recognizer.decoding``, and that model's final results
(``asr transcribe``, ``asr eval``, ``rec.transcribe``, ``rec.stream()``) then come from beam
search with the LM (:class:`asr.beam.BeamCTCDecoder`); partial results stay greedy. A model
without the file keeps greedy finals.

Building the decoder reads the LM, spells its words in the model's tokens and builds the
search trie (about 2 CPU-seconds for the bundled 64k-word LM), so it happens on first use and
once per process: :func:`shared_decoder` keeps one decoder per (options, vocabulary), which
every stream shares.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import Optional

from .beam import BeamCTCDecoder, BeamOptions, beam_available

__all__ = ["SUFFIX", "lm_options", "shared_decoder"]

SUFFIX = ".lm.json"
_KEYS = {f.name for f in fields(BeamOptions)} - {"lm"}

_lock = threading.Lock()
_decoders: dict = {}
_warned = False


def lm_options(model_path) -> Optional[BeamOptions]:
    """The beam options of the LM bundled with checkpoint ``model_path`` (``NAME.lm.json`` next to
    ``NAME.pt``; see the module docstring); None if it has none. ValueError for an unusable file."""
    side = Path(model_path).with_suffix(SUFFIX)
    if not side.is_file():
        return None
    try:
        d = json.loads(side.read_text(encoding="utf-8"))
        lm = side.parent / d["lm"]
        opts = BeamOptions(lm=str(lm), **{k: v for k, v in d.items() if k in _KEYS})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{side}: not a usable LM decoding file ({e.__class__.__name__}: {e})") from None
    if not lm.is_file():
        raise ValueError(f"{side}: its language model {lm} is missing (a broken install?)")
    return opts


def shared_decoder(rec, opts: BeamOptions) -> Optional[BeamCTCDecoder]:
    """The process's one :class:`BeamCTCDecoder` for ``opts`` over model ``rec``'s vocabulary,
    built on first use (thread-safe). None, after a one-time warning, when the beam search
    backend (flashlight-text) is not installed: finals then stay greedy."""
    global _warned
    if not beam_available():
        if not _warned:
            print("asr: warning: flashlight-text is not installed, so final results use greedy decoding "
                  "instead of the bundled LM (pip install flashlight-text)", file=sys.stderr)
            _warned = True
        return None
    key = (opts, tuple(rec.tokenizer.pieces), rec.step_s)
    with _lock:  # one build, even when several threads ask at once
        dec = _decoders.get(key)
        if dec is None:
            dec = _decoders[key] = BeamCTCDecoder(rec.tokenizer, rec.step_s, opts)
    return dec
