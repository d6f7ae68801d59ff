"""LibriSpeech data preparation on a tiny fake directory in the standard layout."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


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


def test_prepare_fake_librispeech(tmp_path):
    texts = make_fake(tmp_path / "LibriSpeech")
    out = tmp_path / "m"
    cmd = [sys.executable, str(ROOT / "recipes/librispeech/prepare.py"), "--corpus", str(tmp_path / "LibriSpeech"), "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    dev = [json.loads(l) for l in open(out / "dev-clean.jsonl")]
    assert [d["text"] for d in dev] == [t.lower() for t in texts["dev-clean"].values()]
    assert [d["text"] for d in dev] == ["go do you hear", "but in less than five minutes"]
    assert all(abs(d["duration"] - 0.5) < 1e-3 and d["speaker"] == "84" for d in dev)
    assert (out / "train-100.jsonl").exists() and not (out / "train-960.jsonl").exists()
    # the manifests load with the project's reader, and the eval/train readers accept them
    from asr.data import read_manifest

    assert len(read_manifest(out / "train-100.jsonl")) == 2
    # a rerun skips finished stages
    p2 = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p2.returncode == 0 and "utterances" not in p2.stdout


def test_prepare_errors(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "recipes/librispeech/prepare.py"), "--corpus", str(tmp_path), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1 and "no LibriSpeech subsets" in p.stderr
