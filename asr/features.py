"""Audio front end: resampling and log-mel features, offline and streaming.

Both paths compute exactly the same frames:

* frame ``i`` covers samples ``[i * hop, i * hop + win)`` of the 16 kHz signal
  (no centring, no padding: a frame exists only once all its samples do);
* an utterance of ``N`` samples has ``1 + (N - win) // hop`` frames (0 if ``N < win``);
* normalisation is global (statistics stored in the model), never per chunk.

:class:`StreamingFeatures` keeps the samples of the next, incomplete frame between
calls, and :class:`StreamingResampler` keeps the sinc kernel's context, so any
chunking of the input yields the offline result (up to float rounding, ~1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

__all__ = [
    "FeatureConfig",
    "LogMel",
    "StreamingFeatures",
    "StreamingResampler",
    "num_frames",
    "to_mono_float",
]


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel settings; stored in every checkpoint."""

    sample_rate: int = 16000  # Hz; input at other rates is resampled to this
    win_length: int = 400  # samples per analysis window (25 ms)
    hop_length: int = 160  # samples between frames (10 ms)
    n_fft: int = 400  # FFT size (= window: no zero padding)
    n_mels: int = 80  # mel bins
    f_min: float = 20.0  # Hz, lowest mel edge (below is DC / hum)
    f_max: float = 7600.0  # Hz, highest mel edge (just under Nyquist; telephone audio stops at 3.4 kHz)
    log_floor: float = 1e-6  # added to mel power before log, keeps silence finite

    @property
    def frame_shift_s(self) -> float:
        return self.hop_length / self.sample_rate


def num_frames(num_samples: int, cfg: FeatureConfig) -> int:
    """Number of complete frames in ``num_samples`` samples (no padding)."""
    if num_samples < cfg.win_length:
        return 0
    return 1 + (num_samples - cfg.win_length) // cfg.hop_length


class LogMel(torch.nn.Module):
    """Waveform ``(..., samples)`` at ``cfg.sample_rate`` -> log-mel ``(..., frames, n_mels)``.

    Built on ``torchaudio.transforms.MelSpectrogram`` with ``center=False`` so a
    frame depends on its own 25 ms of audio only.
    """

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            center=False,
            power=2.0,
        )

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.shape[-1] < self.cfg.win_length:
            return wave.new_zeros(wave.shape[:-1] + (0, self.cfg.n_mels))
        mel = self.mel(wave.float())  # (..., n_mels, frames)
        return torch.log(mel + self.cfg.log_floor).transpose(-1, -2).contiguous()

    @torch.no_grad()
    def of_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """Analysis windows ``(frames, win_length)`` -> log-mel ``(frames, n_mels)``.

        The same values as :meth:`forward` on the signal the windows were cut from (one
        FFT per row), but the rows may come from many streams: the server computes every
        stream's new frames in one call (:func:`asr.stream.feed_streams`).
        """
        if self.cfg.n_fft != self.cfg.win_length:
            raise ValueError("of_windows needs n_fft == win_length")
        if windows.shape[0] == 0:  # MKL's FFT refuses an empty batch
            return windows.new_zeros(0, self.cfg.n_mels)
        spec = torch.fft.rfft(windows * self.mel.spectrogram.window, n=self.cfg.n_fft)
        # abs().pow(2) as torchaudio computes it: |re + i im|^2 summed otherwise differs in the last bits
        mel = spec.abs().pow(2.0) @ self.mel.mel_scale.fb  # (frames, n_mels)
        return torch.log(mel + self.cfg.log_floor)


class StreamingFeatures:
    """Chunk-invariant log-mel extraction for one stream.

    ``accept(samples)`` returns the frames completed by these samples,
    ``(frames, n_mels)``; the samples of the next, incomplete frame are kept.
    """

    def __init__(self, logmel: LogMel):
        self.logmel = logmel
        self.cfg = logmel.cfg
        self._buf = np.zeros(0, np.float32)  # samples from the start of the next frame on

    def accept(self, samples: torch.Tensor) -> torch.Tensor:
        return self.logmel.of_windows(self.windows(samples))

    def windows(self, samples: torch.Tensor) -> torch.Tensor:
        """The analysis windows ``(frames, win_length)`` these samples complete (a view of
        the buffer); the samples of the next, incomplete frame are kept."""
        # numpy, not torch: a server calls this for every stream at every step, and numpy's
        # per-call overhead is a fraction of torch's
        x = samples.float().numpy()
        buf = np.concatenate([self._buf, x]) if self._buf.size else x
        n = num_frames(buf.size, self.cfg)
        if n == 0:
            self._buf = buf.copy()  # x may be the caller's memory
            return torch.zeros(0, self.cfg.win_length)
        # keep everything from the start of the next frame on
        self._buf = buf[n * self.cfg.hop_length :].copy()
        if not buf.flags.writeable:
            buf = buf.copy()
        return torch.as_strided(torch.from_numpy(buf), (n, self.cfg.win_length), (self.cfg.hop_length, 1))


class StreamingResampler:
    """Chunk-invariant ``torchaudio.functional.resample`` for one stream.

    torchaudio resamples in blocks: output block ``b`` (``new`` samples, with
    ``orig/new`` the rate ratio reduced by their gcd) is a sinc-kernel dot product
    over input samples ``[b*orig - width, (b+1)*orig + width)``. Calling
    ``resample`` on a segment that starts at a block boundary therefore gives the
    same values as the whole-signal call for every block whose support lies inside
    the segment. We keep ``ctx`` input blocks of left context and emit only blocks
    whose right context has arrived; :meth:`flush` emits the rest with the same
    zero padding at the end that the whole-signal call uses.
    """

    LOWPASS_FILTER_WIDTH = 6  # torchaudio defaults; the width formula below mirrors them
    ROLLOFF = 0.99

    def __init__(self, orig_freq: int, new_freq: int):
        if orig_freq <= 0 or new_freq <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_freq} -> {new_freq}")
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)
        g = math.gcd(self.orig_freq, self.new_freq)
        self.orig, self.new = self.orig_freq // g, self.new_freq // g
        base = min(self.orig, self.new) * self.ROLLOFF
        width = math.ceil(self.LOWPASS_FILTER_WIDTH * self.orig / base)
        self.ctx_blocks = math.ceil(width / self.orig) + 1  # left context, in input blocks
        self.right = width + 1  # right context needed, in samples
        self._buf = torch.zeros(0)  # input samples from global index self._buf_start
        self._buf_start = 0  # always a multiple of self.orig
        self._next_block = 0  # next output block to emit
        self._total_in = 0

    @property
    def identity(self) -> bool:
        return self.orig == self.new

    def _run(self, final: bool) -> torch.Tensor:
        total = self._total_in
        if final:
            # the whole-signal call emits ceil(new * total / orig) samples
            last_sample = math.ceil(self.new * total / self.orig)
            end_block = math.ceil(last_sample / self.new)
        else:
            # block b is ready when input up to (b+1)*orig + width is here
            end_block = max(0, (total - self.right) // self.orig)
            last_sample = end_block * self.new
        if end_block <= self._next_block:
            return torch.zeros(0)
        seg = self._buf if final else self._buf[: end_block * self.orig + self.right - self._buf_start]
        out = torchaudio.functional.resample(seg[None], self.orig_freq, self.new_freq)[0]
        first_local = (self._next_block - self._buf_start // self.orig) * self.new
        if final:
            # the segment reaches the true end, so its zero padding is the whole signal's
            n_out = last_sample - self._next_block * self.new
            out = out[first_local : first_local + n_out]
        else:
            out = out[first_local : first_local + (end_block - self._next_block) * self.new]
        self._next_block = end_block
        keep_from = max(0, (end_block - self.ctx_blocks)) * self.orig
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :].clone()
            self._buf_start = keep_from
        return out

    def accept(self, samples: torch.Tensor) -> torch.Tensor:
        """Input samples at ``orig_freq`` -> the output samples they complete."""
        if self.identity:
            return samples.float()
        self._buf = torch.cat([self._buf, samples.float()])
        self._total_in += samples.numel()
        return self._run(final=False)

    def flush(self) -> torch.Tensor:
        """End of input: the remaining output samples."""
        if self.identity or self._total_in == 0:
            return torch.zeros(0)
        return self._run(final=True)


def to_mono_float(samples, name: str = "audio") -> torch.Tensor:
    """Convert PCM to a 1-D float32 tensor in [-1, 1].

    Accepts numpy arrays or tensors shaped ``(samples,)`` or ``(samples, channels)``
    (soundfile's layout); channels are averaged. Integer PCM is scaled by its full
    range. Raises ``ValueError`` on NaN/inf or an unsupported dtype.
    """
    if isinstance(samples, torch.Tensor):
        arr = samples.detach().cpu().numpy()
    else:
        arr = np.asarray(samples)
    check_finite = arr.dtype.kind == "f"  # integer PCM is always finite
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = arr.astype(np.float32) / 2147483648.0
    elif arr.dtype == np.uint8:
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    elif arr.dtype in (np.float32, np.float64, np.float16):
        arr = arr.astype(np.float32, copy=False)
    else:
        raise ValueError(f"{name}: unsupported sample type {arr.dtype}")
    if arr.ndim == 2:
        arr = arr.mean(axis=1)
    elif arr.ndim != 1:
        raise ValueError(f"{name}: expected (samples,) or (samples, channels), got shape {arr.shape}")
    if check_finite and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(arr))
