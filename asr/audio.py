"""Audio file input with clear errors (soundfile: WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1)."""

from __future__ import annotations

import os
import struct
import warnings
from typing import Optional, Tuple

import numpy as np

__all__ = ["read_audio", "read_audio_bytes", "AudioError", "AudioWarning"]


class AudioError(ValueError):
    """A file that cannot be used as audio input; the message names the file and the reason."""


class AudioWarning(UserWarning):
    """A file that is used, but not all of it as its header says (e.g. a truncated WAV);
    the ``asr`` commands print it as one line on stderr."""


def read_audio(path: str) -> Tuple[np.ndarray, int]:
    """Read a file -> (float32 samples in [-1, 1], mono ``(N,)``, sample_rate in Hz).

    ``path`` ``"-"`` reads the whole of standard input (WAV, FLAC, OGG bytes, not raw PCM).
    Multi-channel audio is down-mixed by averaging. Raises :class:`AudioError` for a
    missing file, a file that is not audio, an unsupported format, empty audio, or
    NaN/inf samples. Warns (:class:`AudioWarning`) when a WAV file holds less audio than its
    header declares (an interrupted recording or copy): what is there is returned.
    """
    if path == "-":
        import sys

        return read_audio_bytes(sys.stdin.buffer.read(), "<stdin>")
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    samples, sr = _decode(path, path)
    missing = _wav_missing_bytes(path)
    if missing:
        declared, have = missing
        warnings.warn(f"{path}: truncated WAV file: its header declares {declared} bytes of audio, the file holds "
                      f"{have}; using the {len(samples) / sr:.2f} s that are there", AudioWarning, stacklevel=2)
    return samples, sr


def read_audio_bytes(data: bytes, name: str = "<bytes>") -> Tuple[np.ndarray, int]:
    """:func:`read_audio` for the bytes of an audio file held in memory; errors name ``name``."""
    import io

    if not data:
        raise AudioError(f"{name}: no data")
    return _decode(io.BytesIO(data), name)


def _decode(source, name: str) -> Tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise AudioError(f"{name}: not a readable audio file ({e.error_string if hasattr(e, 'error_string') else e})") from None
    except (RuntimeError, TypeError) as e:
        raise AudioError(f"{name}: unsupported audio format ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def _wav_missing_bytes(path: str) -> Optional[Tuple[int, int]]:
    """For a RIFF/WAVE file whose ``data`` chunk is shorter than its header says:
    ``(declared, present)`` bytes; otherwise None. Streaming writers' "unknown length"
    sizes (0, 0xFFFFFFFF) and other formats are not checked."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = os.fstat(f.fileno()).st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                present = size - (pos + 8)
                return (n, present) if present < n and n not in (0, 0xFFFFFFFF) else None
            pos += 8 + n + (n & 1)  # chunks are padded to an even length
    return None
