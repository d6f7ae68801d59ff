"""Streaming speech recognition: log-mel -> causal conv + unidirectional GRU -> CTC.

Main entry points::

    import asr
    rec = asr.load_model("default")          # or a checkpoint path
    result = rec.transcribe(samples, 16000)  # offline = one stream, finished
    stream = rec.stream(16000)               # streaming: accept_waveform / partial / finish
"""

from .checkpoint import ModelNotFoundError, Recognizer, available_models, load_model, save_checkpoint
from .decoding import EndpointConfig, Result, Word
from .features import FeatureConfig
from .model import CTCModel, ModelConfig
from .text import normalize

__version__ = "0.1.0"

__all__ = [
    "load_model", "available_models", "save_checkpoint", "Recognizer", "ModelNotFoundError",
    "Result", "Word", "EndpointConfig", "FeatureConfig", "ModelConfig", "CTCModel", "normalize",
]
