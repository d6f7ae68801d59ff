"""Tests for the speech-corpus recipe (recipes/synth) and asr/augment.py.

Everything runs on tiny data made here (a few espeak-ng utterances when espeak-ng is
installed) in a temporary directory; no network, a few seconds in total.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("scipy")

from asr.augment import AugmentConfig, Augmenter  # noqa: E402
from asr.jsonl import read_jsonl, write_jsonl  # noqa: E402
from asr.text import is_clean, normalize  # noqa: E402

from recipes.synth import prepare, textpool  # noqa: E402

MANIFEST_KEYS = {"audio": str, "text": str, "duration": float, "voice": str, "engine": str}
SENTENCES = [
    ("the cat sat on the mat", "The cat sat on the mat."),
    ("twenty two boats sailed at dawn", "twenty two boats sailed at dawn"),
    ("is this the right way home", "Is this the right way home?"),
]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """A handful of espeak-ng utterances written through the recipe's own code path."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: cannot synthesise the tiny test corpus")
    from recipes.synth import engines

    root = tmp_path_factory.mktemp("corpus")
    jobs = []
    for i, (norm, speak) in enumerate(SENTENCES):
        voice = ["espeak:en-us+f1", "espeak:en-gb+m3", "espeak:en-gb-scotland+f2"][i]
        jobs.append({"uid": f"t{i}", "text": norm, "speak": speak, "voice": voice, "rate": 1.0 + 0.1 * i,
                     "pitch": 1.0, "level": 0.8, "pad": [0.15, 0.2],
                     "out": str(root / "audio" / f"t{i}.wav")})
    chunk_file = str(root / "chunk.jsonl")
    _, recs = engines.synth_chunk((chunk_file, jobs))
    assert len(recs) == len(jobs), "espeak-ng failed to synthesise the test sentences"
    manifest = str(root / "train.jsonl")
    write_jsonl(manifest, recs)
    return root, manifest


# --------------------------------------------------------------------------- manifests
def test_manifest_format(tiny_corpus):
    root, manifest = tiny_corpus
    assert not os.path.exists(manifest + ".tmp")
    recs = read_jsonl(manifest)
    assert len(recs) == len(SENTENCES)
    for r in recs:
        assert set(r) == set(MANIFEST_KEYS)
        for k, t in MANIFEST_KEYS.items():
            assert isinstance(r[k], t), (k, r[k])
        assert os.path.isabs(r["audio"]) and os.path.exists(r["audio"])
        info = sf.info(r["audio"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.frames / info.samplerate - r["duration"]) < 1e-3
        assert r["text"] == normalize(r["text"]) and r["text"]
        assert r["engine"] == "espeak-ng"


def test_trimmed_silence_kept_short(tiny_corpus):
    _, manifest = tiny_corpus
    for r in read_jsonl(manifest):
        x, _ = sf.read(r["audio"], dtype="float32")
        thr = 0.01 * np.abs(x).max()
        active = np.flatnonzero(np.abs(x) > thr)
        lead, tail = active[0] / 16000, (len(x) - active[-1]) / 16000
        assert lead <= 0.35 and tail <= 0.4, (lead, tail)
        assert 0.5 < r["duration"] < 16


# --------------------------------------------------------------------------- text
def test_make_item_rules():
    # clean text is spoken as written, the reference is normalised
    assert textpool.make_item("The dog barked loudly.") == ("the dog barked loudly", "The dog barked loudly.")
    # numbers: the engine reads the normalised text so audio and reference agree
    norm, speak = textpool.make_item("I have 3 cats and 2 dogs.")
    assert norm == speak == "i have three cats and two dogs"
    # all-caps words would be spelled out by some engines: speak the normalised text
    assert textpool.make_item("Do NOT touch it now.")[1] == "do not touch it now"
    # ambiguous abbreviations, code/ascii art, too short or too long: dropped
    assert textpool.make_item("Dr. Smith went to Washington today.") is None
    assert textpool.make_item("if (x) { return y; } /* ok */") is None
    assert textpool.make_item("Hi there.") is None
    assert textpool.make_item(" ".join(["word"] * 26)) is None
    assert is_clean("Please hold.") and not is_clean("Press 1.")


def test_fortune_and_wordnet_parsing():
    text = ("Never put off till tomorrow what you can do today. Unless it is fun!\n"
            "\t\t-- Mark Twain\n%\nA second fortune\nspans two lines.\n  -- Anonymous\n%\n")
    entries = textpool.fortune_entries(text)
    assert entries == ["Never put off till tomorrow what you can do today. Unless it is fun!",
                       "A second fortune spans two lines."]
    assert textpool.split_sentences(entries[0]) == ["Never put off till tomorrow what you can do today.",
                                                   "Unless it is fun!"]
    line = ('00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | a small dog; "the dog barked all night"; '
            '"she walked the dog"  \n')
    assert textpool.wordnet_examples(line) == ["the dog barked all night", "she walked the dog"]
    assert textpool.wordnet_examples("  1 This software and database is being provided") == []


def test_split_pools_disjoint_and_deterministic():
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma"]
    items = [(" ".join(rng.choice(words, 4)), "x") for _ in range(3000)]
    items += items[:500]  # duplicates must not leak across pools
    pools = textpool.split_pools(items, seed=7, dev_frac=0.05, test_frac=0.1)
    sets = {k: {n for n, _ in v} for k, v in pools.items()}
    assert not (sets["train"] & sets["dev"]) and not (sets["train"] & sets["test"]) \
        and not (sets["dev"] & sets["test"])
    assert sum(len(v) for v in pools.values()) == len({n for n, _ in items})
    assert all(len(v) == len(sets[k]) for k, v in pools.items())  # no duplicates inside a pool
    again = textpool.split_pools(list(reversed(items)), seed=7, dev_frac=0.05, test_frac=0.1)
    assert again == pools  # independent of input order
    assert textpool.split_pools(items, seed=8, dev_frac=0.05, test_frac=0.1)["dev"] != pools["dev"]


def test_short_pool_cuts_one_and_two_word_items_from_training_text():
    train = ["the cat sat on the mat", "the dog sat on a log", "a cat ran", "zebra quietly left"]
    pool = textpool.short_pool(train, n_items=400, seed=7)
    assert pool == textpool.short_pool(train, n_items=400, seed=7)  # deterministic under the seed
    assert pool != textpool.short_pool(train, n_items=400, seed=8)
    assert len(pool) == 400 and all(norm == speak for norm, speak in pool)
    texts = [norm for norm, _ in pool]
    ones = [t for t in texts if len(t.split()) == 1]
    twos = [t.split() for t in texts if len(t.split()) == 2]
    assert len(ones) + len(twos) == 400 and 0.5 < len(ones) / 400 < 0.8  # one_word_share 0.65
    # single words: training types seen twice or more, two letters or more ("a" and "zebra" are not)
    assert set(ones) == {"the", "cat", "sat", "on"}
    # pairs: consecutive words of one training sentence
    pairs = {(s.split()[k], s.split()[k + 1]) for s in train for k in range(len(s.split()) - 1)}
    assert all(tuple(p) in pairs for p in twos) and len({tuple(p) for p in twos}) > 5
    with pytest.raises(ValueError):
        textpool.short_pool(["solo"], n_items=3, seed=0)


def test_text_stage_on_small_input(tmp_path, monkeypatch):
    fdir = tmp_path / "fortunes"
    fdir.mkdir()
    body = "%\n".join(f"Sentence number {w} is here to stay. Another one about {w} follows it.\n\t-- Someone\n"
                      for w in ["apples", "pears", "plums", "figs", "dates", "limes", "kiwis", "grapes"] * 3)
    (fdir / "tiny").write_text(body)
    (fdir / "tiny.dat").write_bytes(b"\x00\x01")
    monkeypatch.setattr(textpool, "FORTUNE_DIR", str(fdir))
    monkeypatch.setattr(textpool, "WORDNET_GLOB", str(tmp_path / "nothing.*"))

    class A:
        data_dir = str(tmp_path / "data")
        seed = 3
    prepare.stage1_text(A)
    pools = {s: textpool.load_pool(A.data_dir, s) for s in ("train", "dev", "test")}
    assert sum(len(p) for p in pools.values()) == 16  # 8 fruits x 2 sentences, duplicates removed
    flat = [n for p in pools.values() for n, _ in p]
    assert len(flat) == len(set(flat)) and all(n == normalize(n) for n in flat)
    assert not any("someone" in n for n in flat)  # attribution lines stripped


# --------------------------------------------------------------------------- augmentation
def _tone(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def aug_dir(tmp_path):
    d = tmp_path / "aug"
    (d / "moh").mkdir(parents=True)
    sf.write(str(d / "moh" / "music.wav"), _tone(3.0, seed=5) * 2, 16000, subtype="PCM_16")
    rng = np.random.default_rng(1)
    rirs = np.zeros((3, 4000), np.float32)
    for i in range(3):
        rirs[i] = rng.standard_normal(4000) * np.exp(-np.arange(4000) / (600 * (i + 1)))
        rirs[i, 0] = 1.0
    np.savez(str(d / "rirs.npz"), rirs=rirs, lengths=np.array([4000, 3000, 2000]), fs=16000)
    return str(d)


ALL_ON = AugmentConfig(speed_prob=1.0, reverb_prob=1.0, noise_prob=1.0, telephone_prob=1.0, gain_prob=1.0)


@pytest.mark.parametrize("cfg", [AugmentConfig(), ALL_ON])
def test_augment_deterministic(cfg, aug_dir, tmp_path):
    babble = []
    for i in range(4):
        p = tmp_path / f"b{i}.wav"
        sf.write(str(p), _tone(1.0 + i * 0.3, seed=10 + i), 16000)
        babble.append(str(p))
    x = _tone()
    outs = []
    for seed in (1, 1, 2):
        aug = Augmenter(cfg, aug_dir, babble)  # fresh instance: lazy loading must not change results
        outs.append([aug(x, np.random.default_rng([seed, k])) for k in range(6)])
    for a, b in zip(outs[0], outs[1]):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert any(a.shape != c.shape or not np.array_equal(a, c) for a, c in zip(outs[0], outs[2]))


@pytest.mark.parametrize("aug_dir_used", [False, True])
def test_augment_dtype_and_range(aug_dir_used, aug_dir):
    aug = Augmenter(ALL_ON, aug_dir if aug_dir_used else None)
    x = _tone() * 3.0  # deliberately beyond full scale
    for k in range(10):
        y = aug(x, np.random.default_rng(k))
        assert y.dtype == np.float32 and y.ndim == 1
        assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
        assert 0.85 * len(x) < len(y) < 1.2 * len(x)
    y = aug((x * 8000).astype(np.int16), np.random.default_rng(0))  # int16 input accepted
    assert y.dtype == np.float32


def test_augment_speed_changes_length():
    aug = Augmenter(AugmentConfig(), None)
    x = _tone(1.0)
    assert len(aug.speed(x, 1.1)) == pytest.approx(len(x) / 1.1, abs=2)
    assert len(aug.speed(x, 0.9)) == pytest.approx(len(x) / 0.9, abs=2)
    assert aug.speed(x, 1.0) is x


def test_augment_noop_config_is_identity():
    cfg = AugmentConfig(speed_prob=0, reverb_prob=0, noise_prob=0, telephone_prob=0, gain_prob=0)
    x = _tone()
    assert np.array_equal(Augmenter(cfg, None)(x, np.random.default_rng(0)), x)


def test_augment_snr_is_respected():
    cfg = AugmentConfig(speed_prob=0, reverb_prob=0, noise_prob=1, telephone_prob=0, gain_prob=0,
                        snr_db=(10.0, 10.0), noise_weights=(1, 0, 0, 0, 0))
    x = _tone()
    y = Augmenter(cfg, None)(x, np.random.default_rng(0))
    noise = y - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.2)


def test_manifest_json_lines_atomic(tmp_path):
    p = str(tmp_path / "m.jsonl")
    recs = [{"audio": "/a.wav", "text": "a b", "duration": 1.5, "voice": "v", "engine": "e"}]
    write_jsonl(p, recs)
    assert [json.loads(line) for line in open(p)] == recs and not os.path.exists(p + ".tmp")


# --------------------------------------------------------------------------- split ablation
def test_extra_voices_uses_only_chosen_engines_and_training_text(tmp_path, monkeypatch):
    from recipes.synth import extra_voices

    data = tmp_path / "data"
    (data / "text").mkdir(parents=True)
    (data / "text" / "train.txt").write_text("a training sentence\n")
    (data / "text" / "train.speak.txt").write_text("A training sentence.\n")
    seen = {}

    def fake_generate(args, split, pool, voices, *, target_hours=None, **kw):
        seen.update(split=split, pool=pool, voices=voices, hours=target_hours)
        return [{"audio": f"/x/{v}.wav", "text": pool[0][0], "duration": 2.0, "voice": v,
                 "engine": voices[v]["engine"]} for v in sorted(voices)]

    monkeypatch.setattr(extra_voices, "generate", fake_generate)
    assert extra_voices.main(["--engines", "rhvoice", "--hours", "0.5", "--data-dir", str(data)]) == 0
    assert seen["split"] == "xtrain_rhvoice" and seen["hours"] == 0.5
    assert seen["pool"] == [("a training sentence", "A training sentence.")]
    assert seen["voices"] and {v["engine"] for v in seen["voices"].values()} == {"rhvoice"}
    recs = read_jsonl(str(data / "xtrain_rhvoice.jsonl"))
    assert [r["voice"] for r in recs] == sorted(seen["voices"])
    with pytest.raises(SystemExit):  # no text pools: a clear error, not a traceback
        extra_voices.main(["--engines", "piper", "--data-dir", str(tmp_path / "empty")])
