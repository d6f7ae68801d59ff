"""asr.data.voice_channel (VTLP + random channel on log-mel) and its training options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
    cfg = TrainConfig.from_dict({"select_metric": "cer", "voice_channel_prob": 0.5})
    assert cfg.select_metric == "cer" and cfg.augmentation.voice_channel_prob == 0.5
