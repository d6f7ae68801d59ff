"""LibriSpeech data preparation on a tiny fake directory in the standard layout (the recipe's
``main`` in this process; tests/test_recipe_scripts.py runs it as a script)."""

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.librispeech import prepare


def make_fake(root: Path):
    texts = {"dev-clean": {"84-121123-0000": "GO DO YOU HEAR", "84-121123-0001": "BUT IN LESS THAN FIVE MINUTES"},
             "train-clean-100": {"19-198-0000": "NORTHANGER ABBEY", "19-198-0001": "CHAPTER ONE"}}
    for subset, utts in texts.items():
        for uid, text in utts.items():
            spk, chap, _ = uid.split("-")
            d = root / subset / spk / chap
            d.mkdir(parents=True, exist_ok=True)
            sf.write(d / f"{uid}.flac", np.zeros(8000, dtype=np.float32) + 0.01, 16000)
            with open(d / f"{spk}-{chap}.trans.txt", "a") as f:
                f.write(f"{uid} {text}\n")
    return texts


def test_prepare_fake_librispeech(tmp_path, capsys):
    texts = make_fake(tmp_path / "LibriSpeech")
    out = tmp_path / "m"
    argv = ["--corpus", str(tmp_path / "LibriSpeech"), "--out", str(out)]
    assert prepare.main(argv) == 0
    assert "dev-clean: 2 utterances" in capsys.readouterr().out
    dev = [json.loads(l) for l in open(out / "dev-clean.jsonl")]
    assert [d["text"] for d in dev] == [t.lower() for t in texts["dev-clean"].values()]
    assert [d["text"] for d in dev] == ["go do you hear", "but in less than five minutes"]
    assert all(abs(d["duration"] - 0.5) < 1e-3 and d["speaker"] == "84" for d in dev)
    assert (out / "train-100.jsonl").exists() and not (out / "train-960.jsonl").exists()
    # the manifests load with the project's reader, and the eval/train readers accept them
    from asr.data import read_manifest

    assert len(read_manifest(out / "train-100.jsonl")) == 2
    # a rerun skips finished stages
    assert prepare.main(argv) == 0 and "utterances" not in capsys.readouterr().out


def test_prepare_errors(tmp_path, capsys):
    assert prepare.main(["--corpus", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no LibriSpeech subsets" in capsys.readouterr().err
