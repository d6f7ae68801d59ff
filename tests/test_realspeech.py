"""recipes/realspeech/prepare.py on a fake unpacked package tree (no apt, no network)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from recipes.realspeech import prepare as realspeech  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _tone(sec: float, sr: int) -> np.ndarray:
    t = np.arange(int(sec * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _ogg_bytes(sec: float, sr: int = 22050) -> bytes:
    import io

    b = io.BytesIO()
    sf.write(b, _tone(sec, sr), sr, format="OGG", subtype="VORBIS")
    return b.getvalue()


@pytest.fixture
def fake_tree(tmp_path):
    pkg = tmp_path / "real" / "pkg"
    gentle = pkg / "gentle/usr/share/gentle/wav"
    gentle.mkdir(parents=True)
    sf.write(gentle / "A.wav", _tone(0.6, 22050), 22050)
    sf.write(gentle / "B.wav", _tone(0.05, 22050), 22050)  # too short: skipped
    sf.write(gentle / "notes.wav", _tone(0.6, 22050), 22050)  # not a letter: not a clip

    wz = pkg / "warzone2100-data/usr/share/games/warzone2100"
    wz.mkdir(parents=True)
    with zipfile.ZipFile(wz / "base.wz", "w") as z:
        z.writestr("audio/audio.cfg",
                   '\taudio\t"beep1.ogg"\t\toneshot  30 1800\t/*Close Window*/\n'
                   '\taudio\t"pcv1.ogg"\toneshot 100 1800  /*Structure Under Attack*/\n'
                   '\taudio\t"pcv2.ogg"\toneshot 100 1800\n')
        z.writestr("script/tutorial.js",
                   '{"audio": "tut1.ogg", "clear": false, "message": _("Oil resources are key"), "state": 0},\n')
        z.writestr("audio/beep1.ogg", _ogg_bytes(0.5))  # an effect outside the speech directories
        z.writestr("audio/memressp/struct/pcv1.ogg", _ogg_bytes(1.2))
        z.writestr("audio/memressp/struct/pcv2.ogg", _ogg_bytes(1.0))  # no label: skipped
        z.writestr("audio/tutorial/tut1.ogg", _ogg_bytes(2.0))

    cards = pkg / "pocketsphinx-testdata/usr/share/pocketsphinx/test/data/cards"
    cards.mkdir(parents=True)
    (cards / "cards.transcription").write_text("<s> ten of clubs  </s> (001)\n<s> five  </s> (002)\n")
    sf.write(cards / "001.wav", _tone(1.5, 16000), 16000)  # 002.wav missing: skipped
    return tmp_path / "real"


def test_realspeech_recipe_labels_split_and_repeat(fake_tree, capsys):
    mod = realspeech
    rc = mod.main(["--data-dir", str(fake_tree), "--sources", "gentle", "warzone", "cards",
                   "--holdout", "cards", "--repeat", "3"])
    assert rc == 0
    read = lambda name: [json.loads(l) for l in (fake_tree / name).read_text().splitlines()]
    train, dev, x3 = read("real_train.jsonl"), read("real_dev.jsonl"), read("real_train_x3.jsonl")
    assert sorted(r["text"] for r in train) == ["a", "oil resources are key", "structure under attack"]
    assert [r["text"] for r in dev] == ["ten of clubs"]
    assert len(x3) == 3 * len(train) and sorted(map(json.dumps, x3)) == sorted(map(json.dumps, train * 3))
    for r in train + dev:
        info = sf.info(str(fake_tree / r["audio"]))
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(info.duration - r["duration"]) < 1e-3
        assert r["engine"] == "real"
    # the manifests load with the library's reader (relative paths resolved)
    from asr.data import read_manifest

    assert len(read_manifest(fake_tree / "real_train.jsonl")) == 3
    out = capsys.readouterr().out
    assert "total" in out and "real_dev" in out


def test_realspeech_recipe_errors_without_apt_or_clips(tmp_path, monkeypatch):
    mod = realspeech
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get on PATH
    with pytest.raises(SystemExit) as e:
        mod.main(["--data-dir", str(tmp_path / "d"), "--sources", "gentle"])
    assert "apt-get" in str(e.value)
    (tmp_path / "d/pkg/gentle").mkdir(parents=True)  # unpacked but empty: no clips
    with pytest.raises(SystemExit) as e:
        mod.main(["--data-dir", str(tmp_path / "d"), "--sources", "gentle"])
    assert "no clips" in str(e.value)


def test_pocketsphinx_baseline_reads_relative_audio_paths(tmp_path, monkeypatch):
    """Manifests with paths relative to their folder (as this recipe writes) decode from any cwd."""
    import sys
    import types

    heard = []

    class FakeDecoder:  # stands in for pocketsphinx.Decoder: "hears" the number of samples
        def start_utt(self):
            pass

        def process_raw(self, data, full_utt=False):
            heard.append(len(data) // 2)

        def end_utt(self):
            pass

        def hyp(self):
            return types.SimpleNamespace(hypstr="ten of clubs")

    monkeypatch.setitem(sys.modules, "pocketsphinx", types.SimpleNamespace(Decoder=FakeDecoder))
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio/a.wav", _tone(0.5, 16000), 16000, subtype="PCM_16")
    man = tmp_path / "m.jsonl"
    man.write_text(json.dumps({"audio": "audio/a.wav", "text": "Ten of clubs", "duration": 0.5}) + "\n")
    monkeypatch.chdir(ROOT)  # not the manifest's folder
    from recipes.eval import pocketsphinx_baseline as mod

    summary = mod.main([str(man), "--out", str(tmp_path / "hyps.jsonl")])
    assert heard == [8000]
    assert summary["wer"] == 0.0 and summary["utterances"] == 1
    assert json.loads((tmp_path / "hyps.jsonl").read_text())["hyp"] == "ten of clubs"
