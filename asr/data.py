"""Manifests, datasets and duration-bucketed batching for training and evaluation.

A manifest is JSON lines, one utterance per line::

    {"audio": "/abs/or/relative/path.wav", "text": "normalised text", "duration": 3.2,
     "voice": "mb-us1", "engine": "mbrola"}

``audio`` and ``text`` are required; relative paths are resolved against the
manifest's directory. Other fields are kept (evaluation groups by them).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import numpy as np
import torch

from .features import LogMel
from .text import normalize

__all__ = ["Utterance", "read_manifest", "ManifestError", "SpeechDataset", "BucketBatchSampler", "collate"]


class ManifestError(ValueError):
    pass


@dataclass
class Utterance:
    audio: str
    text: str
    duration: float
    extra: dict

    def to_dict(self) -> dict:
        return {"audio": self.audio, "text": self.text, "duration": self.duration, **self.extra}


def read_manifest(path, check_files: bool = True, normalise: bool = True) -> List[Utterance]:
    """Read a JSON-lines manifest; errors name the file and line.

    ``duration`` is read from the audio header when missing.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such manifest")
    out: List[Utterance] = []
    base = path.parent
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: bad JSON ({e.msg})") from None
            if not isinstance(d, dict):
                raise ManifestError(f"{path}:{n}: expected a JSON object, got {type(d).__name__}")
            for key in ("audio", "text"):
                if key not in d:
                    raise ManifestError(f"{path}:{n}: missing field {key!r}")
            if not isinstance(d["text"], str) or not isinstance(d["audio"], str):
                raise ManifestError(f"{path}:{n}: 'audio' and 'text' must be strings")
            audio = d.pop("audio")
            if not os.path.isabs(audio):
                audio = str(base / audio)
            if check_files and not os.path.exists(audio):
                raise ManifestError(f"{path}:{n}: audio file not found: {audio}")
            text = d.pop("text")
            dur = d.pop("duration", None)
            if dur is None:
                import soundfile as sf

                try:
                    dur = sf.info(audio).duration
                except Exception as e:
                    raise ManifestError(f"{path}:{n}: cannot read audio {audio}: {e}") from None
            out.append(Utterance(audio, normalize(text) if normalise else text, float(dur), d))
    return out


class SpeechDataset(torch.utils.data.Dataset):
    """Indexes ``(utt_index, epoch, aug_scale)`` -> (features (T, n_mels), token ids, index).

    Augmentation is deterministic: the random generator of each item is seeded by
    ``(seed, epoch, utt_index)``, whichever worker process loads it.
    """

    def __init__(self, utts: Sequence[Utterance], tokenizer, logmel: LogMel, augmenter=None,
                 spec_augment: bool = False, seed: int = 0, max_spec_time_masks: int = 2,
                 voice_channel_prob: float = 0.0, tail_padding_s: float = 0.0):
        self.utts = list(utts)
        self.tail_padding_s = tail_padding_s  # zeros after each clip (validation: as Stream.finish)
        self.tok = tokenizer
        self.logmel = logmel
        self.augmenter = augmenter
        self.spec_augment = spec_augment
        self.seed = seed
        self.max_time_masks = max_spec_time_masks
        self.voice_channel_prob = voice_channel_prob
        self._tokens = [tokenizer.encode(u.text) for u in self.utts]

    def __len__(self):
        return len(self.utts)

    def __getitem__(self, key):
        idx, epoch, aug_scale = key if isinstance(key, tuple) else (key, 0, 0.0)
        from .audio import read_audio

        wave, sr = read_audio(self.utts[idx].audio)
        if sr != self.logmel.cfg.sample_rate:
            import torchaudio

            wave = torchaudio.functional.resample(torch.from_numpy(wave), sr, self.logmel.cfg.sample_rate).numpy()
        rng = np.random.default_rng([self.seed, epoch, idx])
        if self.augmenter is not None and aug_scale > 0 and rng.random() < aug_scale:
            wave = self.augmenter(wave, rng)
        if self.tail_padding_s > 0:
            wave = np.concatenate([wave, np.zeros(int(round(self.tail_padding_s * self.logmel.cfg.sample_rate)), wave.dtype)])
        feats = self.logmel(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
        if self.voice_channel_prob > 0 and aug_scale > 0 and feats.shape[0] > 0 \
                and rng.random() < self.voice_channel_prob:
            feats = voice_channel(feats, rng, self.logmel.cfg)
        if self.spec_augment and aug_scale > 0 and feats.shape[0] > 0:
            feats = spec_augment(feats, rng, self.max_time_masks)
        return feats, torch.tensor(self._tokens[idx], dtype=torch.long), idx


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def voice_channel(feats: torch.Tensor, rng: np.random.Generator, fcfg, warp: tuple = (0.88, 1.12),
                  eq_db: float = 6.0) -> torch.Tensor:
    """Another speaker and another channel for log-mel features ``(T, n_mels)``.

    * vocal-tract-length perturbation (VTLP): the linear frequency axis is scaled by a factor drawn
      from ``warp`` (bin ``k`` takes the value found at ``f_k / factor``, ``f_k`` its centre in Hz,
      interpolated on the mel scale), which moves formants as a shorter or longer vocal tract does;
    * a random channel: a smooth equaliser curve (three cosines across the mel axis, peak about
      ``eq_db`` dB) plus a spectral tilt, added in the log domain where a filter is a sum.
    """
    n = feats.shape[1]
    mel_lo, mel_hi = _hz_to_mel(fcfg.f_min), _hz_to_mel(fcfg.f_max)
    centres_mel = np.linspace(mel_lo, mel_hi, n + 2)[1:-1]
    centres_hz = 700.0 * (10 ** (centres_mel / 2595.0) - 1.0)
    factor = rng.uniform(*warp)
    src = (_hz_to_mel(np.clip(centres_hz / factor, fcfg.f_min, fcfg.f_max)) - mel_lo) / (mel_hi - mel_lo) * (n + 1) - 1
    src = np.clip(src, 0, n - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    u = torch.from_numpy((src - lo).astype(np.float32))
    out = feats[:, lo] * (1 - u) + feats[:, hi] * u
    x = np.linspace(0.0, np.pi, n)
    curve = sum(rng.uniform(-1, 1) * np.cos(k * x + rng.uniform(0, np.pi)) for k in (1, 2, 3)) / 3
    curve = curve + rng.uniform(-1, 1) * np.linspace(-0.5, 0.5, n)  # tilt
    gain = eq_db * np.log(10.0) / 10.0  # dB of power -> natural log units
    return out + torch.from_numpy((gain * curve).astype(np.float32))


def spec_augment(feats: torch.Tensor, rng: np.random.Generator, time_masks: int = 2) -> torch.Tensor:
    """SpecAugment with torchaudio's masking transforms; masks are filled with the utterance mean.

    Two frequency masks of up to 15 bins and ``time_masks`` time masks of up to 5% of
    the utterance each. torchaudio draws from torch's global generator, so it runs
    under a forked generator seeded from ``rng``: deterministic, and the caller's
    random stream is left untouched.
    """
    import torchaudio.transforms as T

    x = feats.T[None].clone()  # (1, n_mels, T)
    fill = float(x.mean())
    n = x.shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        fmask = T.FrequencyMasking(freq_mask_param=15)
        tmask = T.TimeMasking(time_mask_param=max(1, int(0.05 * n)))
        for _ in range(2):
            x = fmask(x, mask_value=fill)
        for _ in range(time_masks):
            x = tmask(x, mask_value=fill)
    return x[0].T.contiguous()


def collate(batch):
    """-> feats (B, T, n_mels), feat_lens (B,), targets (B, U) padded with 0, target_lens (B,), indices."""
    feats, toks, idx = zip(*batch)
    feat_lens = torch.tensor([f.shape[0] for f in feats])
    tok_lens = torch.tensor([t.numel() for t in toks])
    x = torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True)
    y = torch.nn.utils.rnn.pad_sequence(list(toks), batch_first=True)
    return x, feat_lens, y, tok_lens, list(idx)


class BucketBatchSampler:
    """Duration-bucketed batches of at most ``max_seconds`` of audio, resumable.

    The batch order of epoch ``e`` is a pure function of ``(seed, e)``: batches are
    formed from duration-sorted utterances (little padding), then shuffled. With
    ``sorta_grad`` the first epoch goes short-to-long (Deep Speech 2's SortaGrad),
    which helps CTC leave its initial plateau. ``start_batch`` skips batches already
    done (exact resume). With ``world_size > 1`` each rank takes every
    ``world_size``-th batch (the batch count is trimmed to a multiple of it).

    Yields lists of ``(utt_index, epoch, aug_scale)`` keys for :class:`SpeechDataset`.
    """

    def __init__(self, durations: Sequence[float], max_seconds: float, seed: int = 0, sorta_grad: bool = True,
                 rank: int = 0, world_size: int = 1, max_duration: float = 20.0, aug_schedule=None):
        self.durations = list(durations)
        self.max_seconds = max_seconds
        self.seed = seed
        self.sorta_grad = sorta_grad
        self.rank, self.world_size = rank, world_size
        self.max_duration = max_duration
        self.aug_schedule = aug_schedule or (lambda epoch: 1.0)
        self.epoch = 0
        self.start_batch = 0

    def batches(self, epoch: int) -> List[List[int]]:
        rnd = random.Random(self.seed * 1000003 + epoch)
        idx = [i for i, d in enumerate(self.durations) if 0.1 <= d <= self.max_duration]
        # sort by duration with a random tie-break, so batches differ between epochs
        jitter = {i: rnd.random() for i in idx}
        idx.sort(key=lambda i: (round(self.durations[i] * 4), jitter[i]))
        batches, cur, longest = [], [], 0.0
        for i in idx:
            d = self.durations[i]
            # padded cost = batch size x longest item
            if cur and (len(cur) + 1) * max(longest, d) > self.max_seconds:
                batches.append(cur)
                cur, longest = [], 0.0
            cur.append(i)
            longest = max(longest, d)
        if cur:
            batches.append(cur)
        if not (self.sorta_grad and epoch == 0):
            rnd.shuffle(batches)
        n = len(batches) - len(batches) % self.world_size
        return batches[self.rank : n : self.world_size]

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[List[Tuple[int, int, float]]]:
        scale = float(self.aug_schedule(self.epoch))
        for b in self.batches(self.epoch)[self.start_batch :]:
            yield [(i, self.epoch, scale) for i in b]
