"""asr.data.voice_channel (VTLP + random channel on log-mel), asr.augment's codec round trip, and
their training options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr import augment
from asr.augment import (
    CODECS,
    AugmentConfig,
    Augmenter,
    available_codecs,
    codec_round_trip,
)
from asr.data import voice_channel
from asr.features import FeatureConfig, LogMel
from asr.train import TrainConfig


def _logmel_of_tone(hz: float) -> torch.Tensor:
    t = torch.arange(16000) / 16000
    return LogMel(FeatureConfig())(0.3 * torch.sin(2 * np.pi * hz * t))


def test_vtlp_moves_a_tone_like_a_frequency_scaling():
    """A 1 kHz tone warped by f lands in the mel bin of a (1000 * f) Hz tone (no EQ)."""
    fcfg = FeatureConfig()
    x = _logmel_of_tone(1000.0)
    for f in (0.9, 1.12):
        y = voice_channel(x, np.random.default_rng(0), fcfg, warp=(f, f), eq_db=0.0)
        want = int(_logmel_of_tone(1000.0 * f).mean(0).argmax())
        assert abs(int(y.mean(0).argmax()) - want) <= 1


def test_identity_without_warp_or_eq_and_deterministic():
    fcfg = FeatureConfig()
    x = torch.randn(40, fcfg.n_mels)
    torch.testing.assert_close(voice_channel(x, np.random.default_rng(1), fcfg, warp=(1, 1), eq_db=0.0), x)
    a = voice_channel(x, np.random.default_rng(5), fcfg)
    b = voice_channel(x, np.random.default_rng(5), fcfg)
    torch.testing.assert_close(a, b)
    # the channel is the same for every frame: a smooth curve within about +-eq_db dB
    d = voice_channel(x, np.random.default_rng(2), fcfg, warp=(1, 1), eq_db=6.0) - x
    torch.testing.assert_close(d, d[:1].expand_as(d))
    assert float(d.abs().max()) <= 6.0 * np.log(10) / 10 * 1.5 + 1e-6


def test_config_validation():
    with pytest.raises(ValueError, match="select_metric"):
        TrainConfig(select_metric="loss")
    with pytest.raises(ValueError, match="voice_channel_prob"):
        TrainConfig.from_dict({"voice_channel_prob": 1.5})
    for bad in ("-0.1", "1.01"):
        with pytest.raises(ValueError, match="codec_prob"):
            TrainConfig.from_sources(None, [f"codec_prob={bad}"])
    cfg = TrainConfig.from_dict({"select_metric": "cer", "voice_channel_prob": 0.5, "codec_prob": 0.25})
    assert cfg.select_metric == "cer" and cfg.augmentation.voice_channel_prob == 0.5
    assert cfg.augmentation.codec_prob == 0.25 and TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig().augmentation.codec_prob == 0.0  # off unless asked for
    with pytest.raises(ValueError, match="codec_weights"):
        AugmentConfig(codec_weights=(1.0, 1.0))


# ---------------------------------------------------------------- codec round trip (asr.augment)
TONE = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000)).astype(np.float32)  # 0.5 s, 1 kHz
ALL_ON = {"speed_prob": 1.0, "reverb_prob": 1.0, "noise_prob": 1.0, "telephone_prob": 1.0, "gain_prob": 1.0}


def test_g722_is_available():
    """G.722 (the Asterisk test's codec) must not silently drop out where the package is installed."""
    pytest.importorskip("G722")
    assert "g722" in available_codecs()


@pytest.mark.parametrize("name", CODECS)
def test_codec_round_trip_keeps_a_tone_in_place(name):
    if name not in available_codecs():
        pytest.skip(f"{name} not available here")
    for seed in range(3):  # different bit rates / laws / compression levels
        y = codec_round_trip(TONE, name, np.random.default_rng(seed))
        assert y.dtype == np.float32 and len(y) == len(TONE)
        np.testing.assert_array_equal(y, codec_round_trip(TONE, name, np.random.default_rng(seed)))
        # best alignment within +-40 samples (the tone's period is 16): lag 0, correlation > 0.9
        mid = slice(800, -800)
        corr = {k: np.corrcoef(TONE[mid], np.roll(y, -k)[mid])[0, 1] for k in range(-40, 41)}
        assert max(corr, key=corr.get) % 16 == 0 and corr[0] > 0.9, (name, corr[0])
        assert 0.7 < np.sum(np.square(y[mid])) / np.sum(np.square(TONE[mid])) < 1.3
    for n in (1, 7, 333):  # shorter than a codec frame
        assert len(codec_round_trip(TONE[:n], name, np.random.default_rng(0))) == n


@pytest.mark.parametrize("name", CODECS)
def test_codec_output_is_time_aligned(name):
    """On a non-periodic signal (noise below 2 kHz) the output lines up with the input at lag 0
    (G.722's 22-sample delay removed; libsndfile drops MP3/Opus encoder delay itself)."""
    if name not in available_codecs():
        pytest.skip(f"{name} not available here")
    from scipy.signal import resample_poly
    x = resample_poly(np.random.default_rng(0).standard_normal(2000), 4, 1)
    x = (0.1 * x / np.std(x)).astype(np.float32)
    y = codec_round_trip(x, name, np.random.default_rng(0))
    score = {k: float(np.dot(y[50:-50], x[50 + k: len(x) - 50 + k])) for k in range(-30, 31)}
    assert max(score, key=score.get) == 0


def test_codec_step_in_the_chain_is_deterministic_and_keeps_length():
    cfg = AugmentConfig(speed_prob=0.0, codec_prob=1.0)
    aug = Augmenter(cfg, None)
    for seed in range(4):
        a = aug(TONE, np.random.default_rng(seed))
        b = Augmenter(cfg, None)(TONE, np.random.default_rng(seed))
        assert len(a) == len(TONE) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    only_codec = AugmentConfig(**{k: 0.0 for k in ALL_ON}, codec_prob=1.0)
    if available_codecs():
        assert not np.array_equal(Augmenter(only_codec, None)(TONE, np.random.default_rng(0)), TONE)


def test_missing_codecs_are_skipped(monkeypatch):
    only_codec = AugmentConfig(**{k: 0.0 for k in ALL_ON}, codec_prob=1.0)
    monkeypatch.setattr(augment, "available_codecs", lambda: ())
    np.testing.assert_array_equal(Augmenter(only_codec, None)(TONE, np.random.default_rng(0)), TONE)
    monkeypatch.setattr(augment, "available_codecs", lambda: ("g711",))  # all the mass on the one left
    calls = []
    monkeypatch.setattr(augment, "codec_round_trip", lambda x, name, rng: calls.append(name) or x)
    for seed in range(5):
        Augmenter(only_codec, None)(TONE, np.random.default_rng(seed))
    assert calls == ["g711"] * 5


def test_codec_prob_zero_leaves_the_chain_unchanged():
    """Values recorded with the chain before the codec step existed (commit cb70639): same output,
    and the same next draw from the generator (data.py goes on drawing from it)."""
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
         + 0.05 * np.random.default_rng(123).standard_normal(8000)).astype(np.float32)
    recorded = {0: (8000, 0.8158535541215322, 2633.355962825928),
                1: (7273, 0.7535131086748066, 365.932653381758),
                2: (7273, 0.562265662780428, 1462.540120951864)}
    for seed, (n, next_draw, abs_sum) in recorded.items():
        rng = np.random.default_rng(seed)
        y = Augmenter(AugmentConfig(**ALL_ON), None)(x, rng)
        assert len(y) == n and rng.random() == next_draw
        assert float(np.sum(np.abs(y.astype(np.float64)))) == pytest.approx(abs_sum, rel=1e-6)


def test_training_passes_codec_prob_to_the_augmenter():
    from types import SimpleNamespace

    from asr.trainproc import Ranks
    from asr.trainsetup import make_batches

    utts = [SimpleNamespace(audio=f"{i}.wav", text="a", duration=1.0) for i in range(3)]
    tok = SimpleNamespace(encode=lambda text: [1])
    cfg = TrainConfig.from_dict({"train_manifest": "x.jsonl", "codec_prob": 0.3})
    ds, _ = make_batches(cfg, utts, tok, None, Ranks(1, 0, torch.device("cpu")))
    assert ds.augmenter.cfg.codec_prob == 0.3
