"""Streaming speech recognition: log-mel -> causal conv + unidirectional GRU -> CTC.

Main entry points::

    import asr
    rec = asr.load_model("default")          # or a checkpoint path
    result = rec.transcribe(samples, 16000)  # offline = one stream, finished
    stream = rec.stream(16000)               # streaming: accept_waveform / partial / finish

This package is the engine; :mod:`streaming` (WebSocket serving) is built on it and
nothing here imports it. The ``asr`` command (:mod:`asr.cli`) dispatches to both.
"""

from .checkpoint import ModelNotFoundError, Recognizer, available_models, load_model, save_checkpoint
from .decoding import EndpointConfig, Result, Word
from .features import FeatureConfig
from .model import CTCModel, ModelConfig
from .stream import Stream, StreamClosedError, decode_streams
from .text import normalize

__version__ = "0.1.0"

__all__ = [
    "load_model", "available_models", "save_checkpoint", "Recognizer", "ModelNotFoundError",
    "Stream", "StreamClosedError", "decode_streams",
    "Result", "Word", "EndpointConfig", "FeatureConfig", "ModelConfig", "CTCModel", "normalize",
]
