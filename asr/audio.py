"""Audio file input with clear errors (soundfile: WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1)."""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np

__all__ = ["read_audio", "AudioError"]


class AudioError(ValueError):
    """A file that cannot be used as audio input; the message names the file and the reason."""


def read_audio(path: str) -> Tuple[np.ndarray, int]:
    """Read a file -> (float32 samples in [-1, 1], mono ``(N,)``, sample_rate in Hz).

    Multi-channel audio is down-mixed by averaging. Raises :class:`AudioError` for a
    missing file, a file that is not audio, an unsupported format, empty audio, or
    NaN/inf samples.
    """
    import soundfile as sf

    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise AudioError(f"{path}: not a readable audio file ({e.error_string if hasattr(e, 'error_string') else e})") from None
    except (RuntimeError, TypeError) as e:
        raise AudioError(f"{path}: unsupported audio format ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)
