"""Online waveform augmentation for the training data loader.

Each call draws every random decision from the ``numpy.random.Generator`` it is given,
so the same generator state always yields the same output (the data loader derives one
generator per utterance and epoch from the run seed). Chain, each step optional::

    speed perturbation -> reverberation -> additive noise -> telephone band -> gain -> codec -> clip

* speed: polyphase resampling by a rational factor (pitch and tempo change together,
  the usual Kaldi-style "speed perturbation"); the length changes by ``1/speed``;
* reverb: FFT convolution with a random room impulse response from the bank written by
  ``recipes/synth/prepare.py`` stage 6 (``<aug_dir>/rirs.npz``), output rescaled to the
  input's RMS and cut to the input length (the direct path sits at the start of each RIR,
  so there is no delay);
* noise at a random SNR: white / pink / brown noise (pre-computed bank, random crops),
  music on hold (``<aug_dir>/moh/*.wav``) and babble (sum of 3-6 other utterances from
  ``babble_paths``);
* telephone: 16 kHz -> 8 kHz -> 300-3400 Hz band-pass -> optional 8-bit mu-law -> 16 kHz;
* random gain;
* codec round trip (``codec_prob``, 0 by default): encode and decode with one codec drawn by
  ``codec_weights`` among those this process has (:data:`CODECS`): G.722 at 64/56/48 kbit/s
  (the optional PyPI package ``g722``, extra ``recipes``; the Asterisk test prompts are G.722),
  and through libsndfile (``soundfile``, in memory) GSM 06.10, G.711 mu-/A-law and G.726-32
  ADPCM at 8 kHz (resampled down and back), MP3, Ogg Vorbis and Opus at 16 kHz with a random
  compression level. Output length = input length (G.722's 22-sample delay removed);
* clipping to [-1, 1].

Without ``aug_dir`` only the synthesized noises are used (no music, no reverb);
without ``babble_paths`` there is no babble. Missing sources are simply skipped and
their probability mass goes to the remaining noise types; likewise a codec whose library
is missing (or cannot encode here) is skipped and its weight goes to the others.

Cost (measured on the 2-core project machine, 4 s utterances, default config, one
thread): 0.86 ms of CPU per second of audio with the default config, 2.5 ms with every
step forced on (details in ``recipes/synth/README.md``). A codec round trip, per second of
audio (``OMP_NUM_THREADS=1 python tools/bench_augment.py DATA/synth/train.jsonl --utts 150``,
four runs while training kept both cores busy, so approximate): G.711 0.6-1.1 ms, G.722 1.5-1.9,
Vorbis 3.2-4.2, GSM 3.3-4.4, MP3 5.6-7.1, G.726 6.1-7.6, Opus 31-37 (G.711's is mostly the
resampling to 8 kHz and back); ~6-7 ms averaged over the default ``codec_weights``, so ``codec_prob=0.3``
adds ~2 ms per augmented second.
"""

from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["CODECS", "AugmentConfig", "Augmenter", "available_codecs", "codec_round_trip", "mix_at_snr"]

SR = 16000

CODECS = ("g722", "gsm", "g711", "g726", "mp3", "vorbis", "opus")  # the order of codec_weights
G722_BITRATES = (64000, 56000, 48000)  # drawn uniformly
G722_DELAY = 22  # samples at 16 kHz (QMF analysis + synthesis filters), measured by cross-correlation
# libsndfile codecs: name -> (sample rate it runs at, container, subtypes (one drawn), compression
# level range drawn uniformly or None); bit rates measured on real speech
_SF_CODECS = {
    "gsm": (8000, "WAV", ("GSM610",), None),  # GSM 06.10 full rate, 13 kbit/s
    "g711": (8000, "WAV", ("ULAW", "ALAW"), None),  # 64 kbit/s
    "g726": (8000, "WAV", ("G721_32",), None),  # 32 kbit/s ADPCM
    "mp3": (SR, "MP3", ("MPEG_LAYER_III",), (0.5, 0.99)),  # ~38-24 kbit/s (1.0 is refused)
    "vorbis": (SR, "OGG", ("VORBIS",), (0.5, 1.0)),  # ~49-30 kbit/s
    "opus": (SR, "OGG", ("OPUS",), (0.9, 1.0)),  # ~32-7 kbit/s
}


@dataclass(frozen=True)
class AugmentConfig:
    sample_rate: int = SR  # input/output sample rate (only 16 kHz is supported)
    speed_prob: float = 0.6  # probability of applying speed perturbation
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)  # speed factors drawn uniformly (1.0 = unchanged)
    reverb_prob: float = 0.3  # probability of convolving with a room impulse response (needs aug_dir)
    noise_prob: float = 0.6  # probability of adding one noise source
    snr_db: tuple[float, float] = (0.0, 25.0)  # SNR range in dB, drawn uniformly
    noise_weights: tuple[float, float, float, float, float] = (1.0, 1.0, 0.5, 1.0, 1.5)
    # relative weights of (white, pink, brown, music, babble); unavailable types are dropped
    babble_speakers: tuple[int, int] = (3, 6)  # number of other utterances summed into babble (inclusive)
    babble_cache: int = 128  # babble utterances kept in memory (chosen from babble_paths at first use)
    telephone_prob: float = 0.15  # probability of telephone-band simulation
    mulaw_prob: float = 0.5  # given telephone: probability of 8-bit mu-law quantisation
    band_hz: tuple[float, float] = (300.0, 3400.0)  # telephone band-pass edges
    gain_prob: float = 0.8  # probability of a random gain
    gain_db: tuple[float, float] = (-12.0, 6.0)  # gain range in dB, drawn uniformly
    noise_bank_seconds: float = 20.0  # length of each pre-computed synthetic noise (random crops)
    noise_bank_seed: int = 0  # seed of the synthetic noise bank (fixed, so outputs are reproducible)
    codec_prob: float = 0.0  # probability of a codec round trip (0: the step draws nothing from the rng)
    codec_weights: tuple[float, ...] = (3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    # relative weights of CODECS (g722, gsm, g711, g726, mp3, vorbis, opus); unavailable ones are dropped

    def __post_init__(self):
        if len(self.codec_weights) != len(CODECS):
            raise ValueError(f"codec_weights needs {len(CODECS)} weights {CODECS}, got {self.codec_weights}")


def _resample(x: np.ndarray, up: int, down: int) -> np.ndarray:
    from scipy.signal import resample_poly
    return resample_poly(x, up, down).astype(np.float32)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded at the end to ``n`` samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def codec_round_trip(x: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """``x`` (float32, 16 kHz) encoded and decoded by codec ``name`` (one of :data:`CODECS`), float32,
    same length and time-aligned; the codec's settings (bit rate, law, compression level) are drawn
    from ``rng``. Raises ImportError / soundfile.LibsndfileError when the codec is not available."""
    n = len(x)
    if name == "g722":
        import G722
        rate = G722_BITRATES[int(rng.integers(len(G722_BITRATES)))]
        pcm = np.round(np.clip(np.pad(x, (0, G722_DELAY)), -1.0, 1.0) * 32767).astype(np.int16)
        codec = G722.G722(SR, rate)  # fresh encoder/decoder state per utterance
        y = np.asarray(codec.decode(codec.encode(pcm)), dtype=np.int16)[G722_DELAY:]
        return _fit(y.astype(np.float32) / 32768.0, n)
    import soundfile as sf
    rate, fmt, subtypes, levels = _SF_CODECS[name]
    subtype = subtypes[int(rng.integers(len(subtypes)))]
    kw = {"compression_level": float(rng.uniform(*levels))} if levels else {}
    z = _resample(x, rate, SR) if rate != SR else x
    buf = io.BytesIO()
    sf.write(buf, np.clip(z, -1.0, 1.0), rate, format=fmt, subtype=subtype, **kw)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")  # libsndfile removes MP3/Opus encoder delay and padding
    y = y if y.ndim == 1 else y[:, 0]
    return _fit(_resample(y, SR, rate) if rate != SR else y, n)


_AVAILABLE: dict[str, bool] = {}


def available_codecs() -> tuple[str, ...]:
    """The :data:`CODECS` that work in this process (each tried once on a short tone, then cached)."""
    if not _AVAILABLE:
        tone = (0.3 * np.sin(2 * np.pi * 440 / SR * np.arange(SR // 5))).astype(np.float32)
        for name in CODECS:
            try:
                _AVAILABLE[name] = len(codec_round_trip(tone, name, np.random.default_rng(0))) == len(tone)
            except Exception:  # noqa: BLE001  library missing or codec not built in: skip it
                _AVAILABLE[name] = False
    return tuple(name for name in CODECS if _AVAILABLE[name])


def _pad_or_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random length-``n`` window of ``x`` (tiled when ``x`` is shorter)."""
    if len(x) < n:
        x = np.tile(x, int(np.ceil(n / max(1, len(x)))) + 1)
    start = int(rng.integers(0, len(x) - n + 1))
    return x[start:start + n]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x + noise`` (same length), the noise scaled to sit ``snr_db`` dB below ``x`` in RMS; float32."""
    scale = _rms(x) / (_rms(noise) * 10 ** (snr_db / 20))
    return (x + scale * noise).astype(np.float32)


class Augmenter:
    """Callable waveform augmenter (see module docstring)."""

    def __init__(self, cfg: AugmentConfig, aug_dir: str | None, babble_paths: list[str] | None = None):
        if cfg.sample_rate != SR:
            raise ValueError("Augmenter works on 16 kHz audio")
        self.cfg = cfg
        self.aug_dir = aug_dir
        self.babble_paths = list(babble_paths or [])
        self._noise: dict[str, np.ndarray] | None = None
        self._moh: list[np.ndarray] | None = None
        self._rirs: list[np.ndarray] | None = None
        self._babble: list[np.ndarray] | None = None
        self._tel_sos = None

    # ------------------------------------------------------------------ lazy material
    def _noise_bank(self) -> dict[str, np.ndarray]:
        if self._noise is None:
            g = np.random.default_rng(self.cfg.noise_bank_seed)
            n = int(self.cfg.noise_bank_seconds * SR)
            white = g.standard_normal(n)
            spec = np.fft.rfft(g.standard_normal(n))
            f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
            bank = {"white": white}
            for name, alpha in (("pink", 0.5), ("brown", 1.0)):
                x = np.fft.irfft(spec / f ** alpha, n)
                bank[name] = x
            self._noise = {k: (v / _rms(v)).astype(np.float32) for k, v in bank.items()}
        return self._noise

    def _music(self) -> list[np.ndarray]:
        if self._moh is None:
            self._moh = []
            if self.aug_dir:
                import soundfile as sf
                for p in sorted(glob.glob(os.path.join(self.aug_dir, "moh", "*.wav"))):
                    x, sr = sf.read(p, dtype="float32")
                    if sr == SR and len(x) > SR:
                        self._moh.append(x if x.ndim == 1 else x.mean(axis=1))
        return self._moh

    def _rir_bank(self) -> list[np.ndarray]:
        if self._rirs is None:
            self._rirs = []
            path = os.path.join(self.aug_dir, "rirs.npz") if self.aug_dir else None
            if path and os.path.exists(path):
                d = np.load(path)
                self._rirs = [d["rirs"][i, : int(n)].astype(np.float32) for i, n in enumerate(d["lengths"])]
        return self._rirs

    def _babble_pool(self) -> list[np.ndarray]:
        if self._babble is None:
            self._babble = []
            if self.babble_paths:
                import soundfile as sf
                g = np.random.default_rng(self.cfg.noise_bank_seed + 1)
                k = min(self.cfg.babble_cache, len(self.babble_paths))
                for i in g.choice(len(self.babble_paths), size=k, replace=False):
                    try:
                        x, sr = sf.read(self.babble_paths[int(i)], dtype="float32")
                    except Exception:  # noqa: BLE001  unreadable file: skip it
                        continue
                    if x.ndim > 1:
                        x = x.mean(axis=1)
                    if sr == SR and len(x) > SR // 4:
                        self._babble.append(x / _rms(x))
        return self._babble

    # ------------------------------------------------------------------ steps
    _resample = staticmethod(_resample)

    def speed(self, x: np.ndarray, factor: float) -> np.ndarray:
        """Play ``x`` ``factor`` times faster (length / factor)."""
        if factor == 1.0:
            return x
        fr = Fraction(1.0 / factor).limit_denominator(50)
        return self._resample(x, fr.numerator, fr.denominator)

    def reverb(self, x: np.ndarray, rir: np.ndarray) -> np.ndarray:
        n = len(x) + len(rir) - 1
        nfft = 1 << (n - 1).bit_length()
        y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(x)]
        return (y * (_rms(x) / _rms(y))).astype(np.float32)

    def noise_kind(self, rng: np.random.Generator) -> str | None:
        """Draw a noise kind by ``cfg.noise_weights`` among the available ones (None: none available)."""
        kinds = ["white", "pink", "brown", "music", "babble"]
        avail = [True, True, True, bool(self._music()), bool(self._babble_pool())]
        w = np.array([wt if ok else 0.0 for wt, ok in zip(self.cfg.noise_weights, avail)])
        if w.sum() <= 0:
            return None
        return kinds[int(rng.choice(len(kinds), p=w / w.sum()))]

    def noise(self, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples (float32, 16 kHz) of noise of ``kind`` (a random crop / babble mix; unscaled)."""
        if kind in ("white", "pink", "brown"):
            return _pad_or_crop(self._noise_bank()[kind], n, rng)
        if kind == "music":
            moh = self._music()
            return _pad_or_crop(moh[int(rng.integers(len(moh)))], n, rng)
        pool = self._babble_pool()
        lo, hi = self.cfg.babble_speakers
        k = int(rng.integers(lo, hi + 1))
        out = np.zeros(n, dtype=np.float32)
        for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False):
            out += _pad_or_crop(pool[int(i)], n, rng)
        return out

    def add_noise(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kind = self.noise_kind(rng)
        if kind is None:
            return x
        snr = rng.uniform(*self.cfg.snr_db)
        return mix_at_snr(x, self.noise(kind, len(x), rng), snr)

    def telephone(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.signal import butter, sosfilt
        if self._tel_sos is None:
            self._tel_sos = butter(4, self.cfg.band_hz, btype="bandpass", fs=8000, output="sos")
        y = sosfilt(self._tel_sos, self._resample(x, 1, 2))
        if rng.random() < self.cfg.mulaw_prob:
            mu = 255.0
            peak = max(float(np.abs(y).max()), 1e-6)
            z = np.clip(y / peak, -1, 1)
            c = np.sign(z) * np.log1p(mu * np.abs(z)) / np.log1p(mu)
            c = np.round((c + 1) * 127.5) / 127.5 - 1  # 8-bit code words
            y = np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu * peak
        return _fit(self._resample(y.astype(np.float32), 2, 1), len(x))

    def codec(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A round trip through one codec drawn by ``cfg.codec_weights`` among the available ones."""
        avail = available_codecs()
        w = np.array([wt if name in avail else 0.0 for name, wt in zip(CODECS, self.cfg.codec_weights)])
        if w.sum() <= 0:
            return x
        return codec_round_trip(x, CODECS[int(rng.choice(len(CODECS), p=w / w.sum()))], rng)

    # ------------------------------------------------------------------ main entry
    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        x = np.asarray(wave)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        if len(x) == 0:
            return x
        # the same number of draws happens whatever the branch, so one decision does not
        # shift the random stream of the others
        u = rng.random(5)
        speed = cfg.speeds[int(rng.integers(len(cfg.speeds)))]
        if u[0] < cfg.speed_prob:
            x = self.speed(x, speed)
        if u[1] < cfg.reverb_prob and self._rir_bank():
            rirs = self._rir_bank()
            x = self.reverb(x, rirs[int(rng.integers(len(rirs)))])
        if u[2] < cfg.noise_prob:
            x = self.add_noise(x, rng)
        if u[3] < cfg.telephone_prob:
            x = self.telephone(x, rng)
        if u[4] < cfg.gain_prob:
            x = x * np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
        # drawn only when enabled, so codec_prob = 0 leaves every later draw (data.py's) unchanged
        if cfg.codec_prob > 0 and rng.random() < cfg.codec_prob:
            x = self.codec(x, rng)
        return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)
