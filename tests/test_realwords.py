"""recipes/realwords/prepare.py on tiny fake Speech Commands and FSDD trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from recipes.realwords import prepare as rw  # noqa: E402


def _tone(path: Path, sec: float, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sec * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)


def _speakers(n: int) -> list[str]:
    return [f"{i:08x}" for i in range(0x1000, 0x1000 + n)]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """The source trees (read only; each test writes to its own output directory)."""
    tmp_path = tmp_path_factory.mktemp("trees")
    sc = tmp_path / "sc"
    spk = _speakers(30)
    for s in spk:
        _tone(sc / "yes" / f"{s}_nohash_0.wav", 1.0, 16000)
        _tone(sc / "_unknown_" / f"bed_{s}_nohash_1.wav.wav", 1.0, 16000)  # word in the file name
    _tone(sc / "_silence_" / "noise_0.wav", 1.0, 16000)  # background noise: skipped
    _tone(sc / "yes" / "README.wav", 1.0, 16000)  # not a clip name: skipped
    fsdd = tmp_path / "fsdd"
    for who in ("theo", "george", "lucas"):
        for d in (0, 7):
            _tone(fsdd / f"{d}_{who}_0.wav", 0.5, 8000)
    return sc, fsdd, spk


def test_labels_speaker_split_and_resampling(trees, tmp_path):
    sc, fsdd, spk = trees
    out = tmp_path / "out"
    summary = rw.prepare(sc, fsdd, out, sc_dev_frac=0.3, fsdd_dev_speakers=("theo",), repeat=3)
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    dev = [json.loads(x) for x in (out / "dev.jsonl").read_text().splitlines()]
    assert len(train) + len(dev) == 2 * len(spk) + 6
    texts = {r["text"] for r in train + dev}
    assert texts == {"yes", "bed", "zero", "seven"}
    # no speaker on both sides; both sides have Speech Commands speakers; FSDD's theo only in dev
    tr_spk, dev_spk = {r["speaker"] for r in train}, {r["speaker"] for r in dev}
    assert not tr_spk & dev_spk
    assert any(s.startswith("sc-") for s in tr_spk) and any(s.startswith("sc-") for s in dev_spk)
    assert {s for s in dev_spk if s.startswith("fsdd-")} == {"fsdd-theo"}
    assert summary["dev"]["real-fsdd"][0] == 2
    # the split is a property of the speaker: the same with another frac for speakers under both
    assert all(rw.in_dev(r["speaker"][3:], 0.3) for r in dev if r["engine"] == "real-sc")
    # 8 kHz FSDD comes out at 16 kHz with the same duration
    rec = next(r for r in train if r["engine"] == "real-fsdd")
    data, sr = sf.read(out / rec["audio"])
    assert sr == 16000 and abs(len(data) / sr - 0.5) < 0.01 and rec["duration"] == pytest.approx(0.5, abs=0.01)
    assert len((out / "train_x3.jsonl").read_text().splitlines()) == 3 * len(train)


def test_merge_dev_makes_paths_absolute(trees, tmp_path):
    sc, fsdd, _ = trees
    other = tmp_path / "other"
    _tone(other / "a.wav", 0.5, 16000)
    (other / "dev.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "koala", "duration": 0.5}) + "\n")
    out = tmp_path / "out"
    rw.prepare(sc, fsdd, out, merge_dev=(other / "dev.jsonl",))
    merged = [json.loads(x) for x in (out / "dev_real.jsonl").read_text().splitlines()]
    assert merged[-1]["audio"] == str((other / "a.wav").resolve())
    assert all(Path(r["audio"]).is_file() for r in merged)
    assert len(merged) == len((out / "dev.jsonl").read_text().splitlines()) + 1


def test_errors(tmp_path, trees, capsys):
    sc, _, _ = trees
    with pytest.raises(rw.RecipeError, match="no such folder"):
        rw.prepare(tmp_path / "missing", None, tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(rw.RecipeError, match="no labelled clips"):
        rw.prepare(None, tmp_path / "empty", tmp_path / "o")
    with pytest.raises(rw.RecipeError, match="at least one source"):
        rw.prepare(None, None, tmp_path / "o")
    with pytest.raises(rw.RecipeError, match="speaker split"):
        rw.prepare(sc, None, tmp_path / "o", sc_dev_frac=1e-9)
    assert rw.main(["--fsdd", str(tmp_path / "missing"), "--data-dir", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err


def _kaldi_part(root: Path, part: str, utts: list[tuple[str, str, str]]) -> None:
    """A speechocean762-style Kaldi folder: (utt, speaker, TEXT) with audio under WAVE/."""
    (root / part).mkdir(parents=True, exist_ok=True)
    for utt, spk, _ in utts:
        _tone(root / "WAVE" / f"SPEAKER{spk}" / f"{utt}.WAV", 0.6, 16000)
    (root / part / "wav.scp").write_text("".join(f"{u}\tWAVE/SPEAKER{s}/{u}.WAV\n" for u, s, _ in utts))
    (root / part / "utt2spk").write_text("".join(f"{u}\t{s}\n" for u, s, _ in utts))
    (root / part / "text").write_text("".join(f"{u}\t{t}\n" for u, _, t in utts))


def test_speechocean_train_speakers_train_test_speakers_dev_or_test(tmp_path):
    so = tmp_path / "so"
    _kaldi_part(so, "train", [(f"{i:04d}0001", f"{i:04d}", "WE CALL IT BEAR") for i in range(1, 6)])
    test = [(f"{i:04d}0002", f"{i:04d}", "I CAN'T SEE 2 CATS") for i in range(6, 40)]
    _kaldi_part(so, "test", test)
    out = tmp_path / "out"
    summary = rw.prepare(None, None, out, so_root=so, so_dev_frac=0.5)
    read = lambda name: [json.loads(x) for x in (out / name).read_text().splitlines()]  # noqa: E731
    train, dev, tst = read("train.jsonl"), read("dev.jsonl"), read("test.jsonl")
    assert {r["speaker"] for r in train} == {f"so-{i:04d}" for i in range(1, 6)}
    assert len(dev) + len(tst) == len(test) and dev and tst
    assert {r["text"] for r in dev + tst} == {"i can't see two cats"}  # normalised like every manifest
    assert all(rw.in_dev(r["speaker"][3:], 0.5) for r in dev) and not any(rw.in_dev(r["speaker"][3:], 0.5) for r in tst)
    assert summary["train"]["real-so"][0] == 5 and all(r["engine"] == "real-so" for r in train + dev + tst)


def test_speechocean_without_kaldi_folders_is_a_clear_error(tmp_path):
    (tmp_path / "so" / "train").mkdir(parents=True)
    with pytest.raises(rw.RecipeError, match="not a Kaldi data folder"):
        rw.prepare(None, None, tmp_path / "out", so_root=tmp_path / "so")


def _common_voice(root: Path, table: str, audio_dir: str, rows: list[tuple[str, str, str]]) -> None:
    """A Common Voice-style folder: (client_id, file, sentence) rows, audio in ``audio_dir``."""
    sep = "\t" if table.endswith(".tsv") else ","
    lines = [sep.join(("client_id", "path", "sentence", "up_votes"))]
    for client, name, text in rows:
        _tone(root / audio_dir / name, 0.7, 48000)
        lines.append(sep.join((client, name, f'"{text}"' if sep == "," else text, "2")))
    (root / table).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("table,audio_dir", [("validated.tsv", "clips"), ("validated.csv", "data")])
def test_common_voice_is_test_only_resampled_and_normalised(tmp_path, table, audio_dir):
    cv = tmp_path / "cv"
    _common_voice(cv, table, audio_dir, [("a" * 40, "cv_1.wav", "He paid 5 dollars, then left."),
                                         ("b" * 40, "cv_2.wav", "It rained."), ("c" * 40, "cv_3.wav", "Gone.")])
    (cv / audio_dir / "cv_3.wav").unlink()  # a row whose audio is missing is skipped
    out = tmp_path / "out"
    summary = rw.prepare(None, None, out, cv_root=cv)
    assert not (out / "train.jsonl").exists() and not (out / "dev.jsonl").exists()
    tst = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    assert [r["text"] for r in tst] == ["he paid five dollars then left", "it rained"]
    assert {r["speaker"] for r in tst} == {"cv-" + "a" * 16, "cv-" + "b" * 16}
    assert all(r["engine"] == "real-cv" and abs(r["duration"] - 0.7) < 0.01 for r in tst)
    assert sf.info(str(out / tst[0]["audio"])).samplerate == 16000
    assert summary["test"]["real-cv"][0] == 2


def test_common_voice_errors(tmp_path):
    (tmp_path / "cv").mkdir()
    with pytest.raises(rw.RecipeError, match="no validated.tsv"):
        rw.prepare(None, None, tmp_path / "out", cv_root=tmp_path / "cv")
    (tmp_path / "cv" / "validated.tsv").write_text("id\tfile\ttext\n1\tx.wav\thello\n")
    with pytest.raises(rw.RecipeError, match="client_id, path, sentence"):
        rw.prepare(None, None, tmp_path / "out", cv_root=tmp_path / "cv")


def test_common_voice_kaggle_csv_split_by_sentence_and_test_sentences_excluded(tmp_path):
    """--cv-csv: the Kaggle packaging (filename, text; no speaker ids). Every clip of a sentence
    lands in one part (train or cv_dev), the sentences of --exclude-text manifests nowhere."""
    root = tmp_path / "cv-valid-dev"
    sentences = [f"sentence number {w}" for w in ("one two three four five six seven eight nine ten eleven "
                                                 "twelve thirteen fourteen fifteen sixteen seventeen eighteen "
                                                 "nineteen twenty").split()]
    rows = ["filename,text,up_votes,down_votes,age,gender,accent,duration"]
    for i in range(60):  # three clips per sentence
        name = f"cv-valid-dev/sample-{i:06d}.mp3"
        _tone(tmp_path / name.replace(".mp3", ".wav"), 0.5, 48000)  # (soundfile reads mp3 alike; wav here)
        rows.append(f"{name.replace('.mp3', '.wav')},{sentences[i % 20].title()},1,0,,,,")
    rows.append("cv-valid-dev/sample-999999.wav,audio missing,1,0,,,,")  # skipped
    (root / "cv-valid-dev.csv").write_text("\n".join(rows) + "\n")
    banned = tmp_path / "test.jsonl"
    banned.write_text(json.dumps({"audio": "x.wav", "text": "Sentence number SEVEN", "duration": 1.0}) + "\n")
    out = tmp_path / "out"
    summary = rw.prepare(None, None, out, cv_csv=(root / "cv-valid-dev.csv",), cv_dev_frac=0.3,
                         exclude_text=(banned,), repeat=2)
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    dev = [json.loads(x) for x in (out / "cv_dev.jsonl").read_text().splitlines()]
    assert len(train) + len(dev) == 57 and train and dev  # 60 clips - the 3 of the excluded sentence
    assert not {r["text"] for r in train} & {r["text"] for r in dev}
    assert "sentence number seven" not in {r["text"] for r in train + dev}
    assert all(r["engine"] == "real-cvk" and abs(r["duration"] - 0.5) < 0.01 for r in train + dev)
    assert len({r["speaker"] for r in train + dev}) == 57  # unknown speakers: one id per clip
    assert sf.info(str(out / train[0]["audio"])).samplerate == 16000
    assert len((out / "train_x2.jsonl").read_text().splitlines()) == 2 * len(train)
    assert summary["cv_dev"]["real-cvk"][0] == len(dev) and not (out / "dev.jsonl").exists()
    with pytest.raises(rw.RecipeError, match="filename, text"):
        (tmp_path / "bad.csv").write_text("path,sentence\nx.wav,hello\n")
        rw.prepare(None, None, tmp_path / "o2", cv_csv=(tmp_path / "bad.csv",))
    with pytest.raises(rw.RecipeError, match="no such file"):
        rw.prepare(None, None, tmp_path / "o3", cv_csv=(tmp_path / "nope.csv",))


def test_run_sh_stage_2_drops_mbrola_voices(tmp_path):
    """The recipe script's stage 2: the synthetic manifests without espeak-ng's and festival's
    MBROLA voices; unknown arguments are refused."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "recipes" / "realwords" / "run.sh"
    synth = tmp_path / "synth"
    synth.mkdir()
    rows = [{"audio": "a.wav", "text": "a", "duration": 1.0, "engine": "espeak-ng", "voice": "espeak:en-us+m1"},
            {"audio": "b.wav", "text": "b", "duration": 1.0, "engine": "espeak-mbrola", "voice": "mbrola:mb-us1"},
            {"audio": "c.wav", "text": "c", "duration": 1.0, "engine": "festival", "voice": "festival:us2"},
            {"audio": "d.wav", "text": "d", "duration": 1.0, "engine": "festival", "voice": "festival:kal"}]
    for split in ("train", "train_short"):
        (synth / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {"DATA": str(tmp_path), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    subprocess.run(["bash", str(script), "--stage", "2", "--stop-stage", "2"], env=env, check=True,
                   capture_output=True)
    for split in ("train", "train_short"):
        kept = [json.loads(x) for x in (synth / f"{split}_nombrola.jsonl").read_text().splitlines()]
        assert [r["text"] for r in kept] == ["a", "d"]
        assert all(Path(r["audio"]).is_absolute() for r in kept)
    bad = subprocess.run(["bash", str(script), "--bogus"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_run_sh_stage_3_trains_on_the_data_under_DATA(tmp_path):
    """Stage 3 passes DATA to `asr train`, and the recipe config's every data path resolves under it
    (a stub `asr` on PATH records the command and the config it reads)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "asr"
    stub.write_text(f"#!{sys.executable}\n"
                    "import json, os, sys\n"
                    "from asr.trainconfig import TrainConfig\n"
                    "a = sys.argv[1:]\n"
                    "cfg = TrainConfig.from_sources(a[a.index('--config') + 1], a[a.index('--set') + 1:])\n"
                    f"open({str(tmp_path / 'cfg.json')!r}, 'w').write(json.dumps(cfg.to_dict()))\n")
    stub.chmod(0o755)
    data = tmp_path / "data"
    env = {"DATA": str(data), "EXP": str(tmp_path / "exp"), "CPU_HOURS": "0.5", "PYTHONPATH": str(root),
           "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin"}
    subprocess.run(["bash", str(root / "recipes" / "realwords" / "run.sh"), "--stage", "3", "--stop-stage", "3"],
                   env=env, check=True, capture_output=True)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    paths = [cfg["train_manifest"], *cfg["extra_train"], cfg["dev_manifest"], cfg["aug_dir"]]
    assert all(p.startswith(f"{data}/") for p in paths), paths
    assert cfg["dev_manifest"] == f"{data}/speechocean/dev_real.jsonl" and len(cfg["extra_train"]) == 9
    assert (cfg["init_from"], cfg["max_cpu_hours"], cfg["threads"]) == ("default", 0.5, 1)
