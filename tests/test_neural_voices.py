"""recipes/neural/prepare.py: the voice-bank transforms and the utterance plan (no TTS needed)."""

from __future__ import annotations

import numpy as np

from recipes.neural import prepare as nv


def test_warp_moves_a_peak_by_the_factor():
    x = np.zeros((601, 3), np.float32)
    x[200] = 1.0
    for warp in (0.85, 1.1):
        y = nv.warp_bins(x, warp)
        assert y.shape == x.shape
        assert abs(int(np.argmax(y[:, 0])) - 200 * warp) <= 1
    np.testing.assert_array_equal(nv.warp_bins(x, 1.0), x)


def test_voices_cover_both_regions_and_are_reproducible():
    a, b = nv.draw_voices(9, seed=3), nv.draw_voices(9, seed=3)
    assert a == b and len(a) == 9
    assert a[0].pitch == 1.0 and a[0].warp == 1.0  # the voice as shipped
    low = [v for v in a[1:] if v.pitch < 0.75 and v.warp < 0.94]
    high = [v for v in a[1:] if v.pitch > 0.8 and v.warp >= 0.94]
    assert len(low) == 4 and len(high) == 4
    assert all(v.speed[0] < v.speed[1] for v in a)


def test_plan_reaches_the_hours_with_short_items():
    pool = [(f"word{i} other{i} third{i} fourth{i}", f"Word{i} other{i} third{i} fourth{i}.") for i in range(5000)]
    items = nv.plan(pool, 0.05, 0.5, np.random.default_rng(0))
    secs = sum(0.06 * len(s) + 0.5 for _, s in items)
    assert 0.05 * 3600 <= secs < 0.05 * 3600 + 5
    short = [t for t, s in items if t == s]
    assert 0.3 < len(short) / len(items) < 0.7
    assert all(1 <= len(t.split()) <= 3 for t in short)


def test_kokoro_voices_are_convex_blends_and_reproducible():
    from recipes.neural import kokoro as kk

    a, b = kk.draw_voices(12, seed=5, offset=1.0), kk.draw_voices(12, seed=5, offset=1.0)
    assert a == b and len({v.name for v in a}) == 12
    for v in a:
        assert len(v.weights) == 5 and all(w >= 0 for w in v.weights)
        assert abs(sum(v.weights) - 1) < 0.01 and 0 <= v.offset <= 1.0 and v.speed[0] < v.speed[1]


def test_kokoro_style_is_the_blend_plus_a_bounded_offset():
    from recipes.neural import kokoro as kk

    bank = kk.KokoroBank.__new__(kk.KokoroBank)  # no model: only the style arithmetic
    rng = np.random.default_rng(0)
    bank.packs = rng.standard_normal((5, 510, 256)).astype(np.float32)
    bank.spread = bank.packs.std(axis=0)
    pure = kk.KVoice("p", (0.0, 1.0, 0.0, 0.0, 0.0), 1, 0.0, (1.0, 1.1))
    np.testing.assert_allclose(bank.style(pure), bank.packs[1], rtol=1e-6)
    off = kk.KVoice("o", (0.0, 1.0, 0.0, 0.0, 0.0), 1, 0.5, (1.0, 1.1))
    d = (bank.style(off) - bank.packs[1]) / bank.spread
    assert d.std() > 0.1 and np.abs(d).max() < 0.5 * 6  # an offset of at most ~6 sigma x 0.5 spread
    np.testing.assert_allclose(d[0], d[100], atol=1e-3)  # one direction for every row of the pack
