#!/usr/bin/env python3
"""Real recorded words from hundreds of speakers, split by speaker into train and dev manifests.

| source | what | speakers | licence |
|---|---|---|---|
| ``sc`` Google Speech Commands v0.02, test part | 4,074 one-word clips, 35 words, 16 kHz | 239 (hash in the file name) | CC-BY 4.0 |
| ``fsdd`` Free Spoken Digit Dataset | 3,000 digit clips "zero".."nine", 8 kHz | 6 (name in the file name) | CC BY-SA 4.0 |
| ``so`` speechocean762 | 5,000 read sentences (1-10 words, 5.6 h), 16 kHz; non-native (Mandarin L1), half children | 250 | Apache-2.0 (the authors' Hugging Face release mispeech/speechocean762; the README: "free for both commercial and non-commercial purposes") |
| ``cv`` Mozilla Common Voice (any English release or sample of one) | read sentences, many accents; test only | one per ``client_id`` | CC0 (Common Voice's licence) |
| ``cvk`` Mozilla Common Voice as packaged on Kaggle (``cv-valid-dev.csv``: filename, text, ...) | 4,076 read sentences (2,410 distinct, 5.0 h), 48 kHz mp3, many accents (US 637, England 327, ... of 1,350 labelled) | unknown (no speaker column): one id per clip; split by sentence | CC0 (Common Voice's licence) |

Get the sources (any checkout works; only the audio folders are read)::

    git clone --depth 1 https://github.com/thegtagamer/PICO-tinyML-benchmark   # SC: MLTK_keyworkSpotting/dataset
    git clone --depth 1 https://github.com/Jakobovski/free-spoken-digit-dataset  # FSDD: recordings/
    git clone --depth 1 https://github.com/jimbozhang/speechocean762             # so: WAVE/, train/, test/
    git clone --depth 1 https://github.com/rigved/rit-engl-682-spring-2021-project  # cv: 100 clips, 99 speakers
    git clone --depth 1 https://github.com/GreenTea749/ASR-AI-microservice-Elastic-search-AI-application  # cvk: cv-valid-dev/

Usage::

    python3 recipes/realwords/prepare.py --speech-commands PICO-tinyML-benchmark/MLTK_keyworkSpotting/dataset \\
        --fsdd free-spoken-digit-dataset/recordings --speechocean speechocean762 --data-dir /work/data/realwords \\
        [--so-dev-frac 0.5] [--merge-dev /work/data/real/real_dev.jsonl] [--sc-dev-frac 0.2] [--fsdd-dev-speakers theo] [--repeat 4]

Speech Commands: a clip's word is its folder name, or for ``_unknown_`` the file-name prefix
(``bed_0c540988_nohash_0.wav``); ``_silence_`` (background noise) is skipped. Its speaker is the
hash before ``_nohash_``; a speaker goes to dev when a stable hash of its id falls below
``--sc-dev-frac``, so the split never changes and no speaker is in both parts. FSDD: file names are
``DIGIT_SPEAKER_N.wav``; the ``--fsdd-dev-speakers`` are dev, the rest train. speechocean762: the
Kaldi-style ``train/`` and ``test/`` folders (``text``, ``wav.scp``, ``utt2spk``) of the checkout; its
``train`` speakers are train, its ``test`` speakers are split by the same stable hash into dev
(``--so-dev-frac``) and a real-sentence test set ``test.jsonl`` (never trained or selected on).
Common Voice: a folder with ``validated.tsv`` (a release) or ``validated.csv`` (columns ``client_id``,
``path``, ``sentence``), audio under ``clips/``, ``data/`` or the folder itself; every clip is a
test clip (``--common-voice`` alone writes only ``test.jsonl``): with 100 sentences of 99 speakers
(mostly native, many accents) the sample above is a test of read speech from many people, not
training material.
Common Voice, Kaggle packaging (``--cv-csv``): CSV files with the columns ``filename`` (e.g.
``cv-valid-dev/sample-000000.mp3``) and ``text``, audio found next to the CSV or one folder up. That
packaging dropped Common Voice's ``client_id``, so speakers are unknown: the split is by sentence (a
stable hash of the normalised text, ``--cv-dev-frac`` of the sentences to dev, every clip of a
sentence in the same part) and its dev part ``cv_dev.jsonl`` is text-disjoint but may share speakers
with training: reported, never used for selection. ``--exclude-text MANIFEST ...`` drops every clip
whose sentence is in those manifests (test sets: no test sentence is trained on).

Writes 16 kHz mono 16-bit WAV under ``<data-dir>/audio/<source>/`` and the manifests
``train.jsonl``, ``dev.jsonl`` (if there are training speakers), ``test.jsonl`` (if a source has test
speakers) (``{"audio", "text", "duration", "speaker", "engine"}``, ``engine`` = ``real-sc`` /
``real-fsdd`` / ``real-so`` / ``real-cv``) and, with ``--merge-dev``, ``dev_real.jsonl`` = ``dev.jsonl`` plus those
manifests (the real-speech dev set used for model selection), and with ``--repeat N``
``train_x<N>.jsonl`` listing every training clip N times (a share of a pooled training set without
copying audio). Existing WAV files are kept, so a second run only rewrites the manifests.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from asr.jsonl import read_jsonl, write_jsonl
from asr.text import normalize

SR = 16000
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SC_NAME = re.compile(r"^(?:(?P<word>[a-z]+)_)?(?P<spk>[0-9a-f]{8})_nohash_(?P<n>\d+)(?:\.wav)+$")
FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<spk>[a-z]+)_(?P<n>\d+)\.wav$")


class Clip(NamedTuple):
    source: str  # "sc" or "fsdd"
    path: Path  # original file
    key: str  # output file stem, unique within the source
    text: str
    speaker: str
    part: str = ""  # the source's own split ("train" / "test"), if it has one


class RecipeError(RuntimeError):
    pass


def speech_commands(root: Path) -> Iterator[Clip]:
    """Labelled clips of a Speech Commands folder (one sub-folder per word)."""
    for path in sorted(root.glob("*/*.wav")):
        folder = path.parent.name
        if folder == "_silence_" or folder.startswith("."):
            continue
        m = SC_NAME.match(path.name)
        if not m:
            continue
        word = m["word"] if folder == "_unknown_" else folder
        if not word or not word.isalpha():
            continue
        yield Clip("sc", path, f"{word}_{m['spk']}_{m['n']}", word.lower(), m["spk"])


def fsdd(root: Path) -> Iterator[Clip]:
    """Digit clips of an FSDD ``recordings`` folder."""
    for path in sorted(root.glob("*.wav")):
        m = FSDD_NAME.match(path.name)
        if m:
            yield Clip("fsdd", path, path.stem, DIGITS[int(m["digit"])], m["spk"])


def speechocean(root: Path) -> Iterator[Clip]:
    """Read sentences of a speechocean762 checkout (Kaldi-style ``train/`` and ``test/`` folders)."""
    for part in ("train", "test"):
        folder = root / part
        try:
            wavs = dict(line.split(maxsplit=1) for line in (folder / "wav.scp").read_text().splitlines() if line.strip())
            spk = dict(line.split(maxsplit=1) for line in (folder / "utt2spk").read_text().splitlines() if line.strip())
            lines = (folder / "text").read_text().splitlines()
        except (OSError, ValueError) as e:
            raise RecipeError(f"--speechocean {root}: {part}/ is not a Kaldi data folder ({e})") from e
        for line in lines:
            utt, _, text = line.partition("\t") if "\t" in line else line.partition(" ")
            text = normalize(text)
            if utt in wavs and utt in spk and text:
                yield Clip("so", root / wavs[utt].strip(), utt, text, spk[utt].strip(), part)


def common_voice(root: Path) -> Iterator[Clip]:
    """Validated clips of a Common Voice folder (``validated.tsv`` or ``.csv``: client_id, path, sentence)."""
    table = next((root / n for n in ("validated.tsv", "validated.csv") if (root / n).is_file()), None)
    if table is None:
        raise RecipeError(f"--common-voice {root}: no validated.tsv or validated.csv")
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t" if table.suffix == ".tsv" else ","))
    if rows and not {"client_id", "path", "sentence"} <= set(rows[0]):
        raise RecipeError(f"--common-voice {table}: needs the columns client_id, path, sentence; has {sorted(rows[0])}")
    for row in rows:
        text = normalize(row["sentence"])
        path = next((d / row["path"] for d in (root / "clips", root / "data", root) if (d / row["path"]).is_file()), None)
        if text and path is not None:
            yield Clip("cv", path, Path(row["path"]).stem, text, row["client_id"][:16], "test")


def common_voice_csv(paths: list[Path]) -> Iterator[Clip]:
    """Clips of Common Voice CSVs in the Kaggle packaging (columns filename, text; no speaker ids)."""
    for table in paths:
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"filename", "text"} <= set(rows[0]):
            raise RecipeError(f"--cv-csv {table}: needs the columns filename, text; has {sorted(rows[0])}")
        for row in rows:
            text = normalize(row["text"] or "")
            rel = Path(row["filename"])
            path = next((p for p in (table.parent / rel, table.parent.parent / rel, table.parent / rel.name)
                         if p.is_file()), None)
            if text and path is not None:
                key = f"{rel.parent.name}-{rel.stem}" if rel.parent.name else rel.stem
                yield Clip("cvk", path, key, text, key, "")


def in_dev(speaker: str, frac: float) -> bool:
    """Stable speaker split: the first 8 hex digits of sha1(speaker) as a fraction of 2**32."""
    return int(hashlib.sha1(speaker.encode()).hexdigest()[:8], 16) / 2**32 < frac


def to_16k(path: Path) -> np.ndarray:
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SR:
        from math import gcd

        g = gcd(sr, SR)
        audio = resample_poly(audio, SR // g, sr // g).astype(np.float32)
    return audio


def convert(clips: list[Clip], data_dir: Path) -> list[dict]:
    """Write each clip as a 16 kHz WAV (kept if present); one manifest record per clip."""
    records = []
    for c in tqdm(clips, desc="clips", unit="clip", disable=not sys.stderr.isatty()):
        out = data_dir / "audio" / c.source / f"{c.key}.wav"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            audio = to_16k(c.path)
            tmp = out.with_suffix(".tmp.wav")
            sf.write(str(tmp), np.clip(audio, -1.0, 1.0), SR, subtype="PCM_16")
            os.replace(tmp, out)
        duration = sf.info(str(out)).frames / SR
        records.append({"audio": str(out.relative_to(data_dir)), "text": c.text, "duration": round(duration, 3),
                        "speaker": f"{c.source}-{c.speaker}", "engine": f"real-{c.source}"})
    return records


def absolute(records: list[dict], manifest: Path) -> list[dict]:
    """Records of another manifest with their audio paths made absolute (they move to a new folder)."""
    out = []
    for r in records:
        a = Path(r["audio"])
        out.append({**r, "audio": str(a if a.is_absolute() else (manifest.parent / a).resolve())})
    return out


def split_of(c: Clip, sc_dev_frac: float, fsdd_dev_speakers: tuple[str, ...], so_dev_frac: float,
             cv_dev_frac: float = 0.1) -> str:
    """"train", "dev" or "test" for one clip (by speaker, so no speaker is in two splits; ``cvk``,
    whose speakers are unknown, by sentence: its dev part is ``cv_dev``)."""
    if c.source == "cvk":
        return "cv_dev" if in_dev(c.text, cv_dev_frac) else "train"
    if c.source == "fsdd":
        return "dev" if c.speaker in fsdd_dev_speakers else "train"
    if c.source == "cv":
        return "test"
    if c.source == "so":
        return "train" if c.part == "train" else "dev" if in_dev(c.speaker, so_dev_frac) else "test"
    return "dev" if in_dev(c.speaker, sc_dev_frac) else "train"


def prepare(sc_root: Path | None, fsdd_root: Path | None, data_dir: Path, *, sc_dev_frac: float = 0.2,
            fsdd_dev_speakers: tuple[str, ...] = ("theo",), merge_dev: tuple[Path, ...] = (),
            repeat: int = 0, so_root: Path | None = None, so_dev_frac: float = 0.5, cv_root: Path | None = None,
            cv_csv: tuple[Path, ...] = (), cv_dev_frac: float = 0.1, exclude_text: tuple[Path, ...] = ()) -> dict:
    """Build the manifests; returns a summary ``{split: {source: (clips, seconds, speakers)}}``."""
    clips: list[Clip] = []
    for t in cv_csv:
        if not t.is_file():
            raise RecipeError(f"--cv-csv {t}: no such file")
    if cv_csv:
        found = list(common_voice_csv(list(cv_csv)))
        if not found:
            raise RecipeError(f"--cv-csv: no clips found next to {', '.join(map(str, cv_csv))}")
        clips += found
    for name, root, reader in (("--speech-commands", sc_root, speech_commands), ("--fsdd", fsdd_root, fsdd),
                               ("--speechocean", so_root, speechocean), ("--common-voice", cv_root, common_voice)):
        if root is None:
            continue
        if not root.is_dir():
            raise RecipeError(f"{name} {root}: no such folder")
        found = list(reader(root))
        if not found:
            raise RecipeError(f"{name} {root}: no labelled clips found (expected the layout in --help)")
        clips += found
    if not clips:
        raise RecipeError("give at least one source (--speech-commands, --fsdd, --speechocean, --common-voice, --cv-csv)")
    if exclude_text:
        banned = {normalize(r["text"]) for m in exclude_text for r in read_jsonl(m)}
        clips = [c for c in clips if c.text not in banned]
    data_dir.mkdir(parents=True, exist_ok=True)
    records = convert(clips, data_dir)
    splits = [split_of(c, sc_dev_frac, fsdd_dev_speakers, so_dev_frac, cv_dev_frac) for c in clips]
    train_recs = [r for r, s in zip(records, splits) if s == "train"]
    dev_recs = [r for r, s in zip(records, splits) if s == "dev"]
    test_recs = [r for r, s in zip(records, splits) if s == "test"]
    cv_dev_recs = [r for r, s in zip(records, splits) if s == "cv_dev"]
    if bool(train_recs) != bool(dev_recs or cv_dev_recs) or not (train_recs or test_recs):
        raise RecipeError(f"speaker split left {len(train_recs)} train and {len(dev_recs)} dev clips; "
                          "change --sc-dev-frac / --fsdd-dev-speakers")
    if train_recs:
        write_jsonl(data_dir / "train.jsonl", train_recs)
        if dev_recs:
            write_jsonl(data_dir / "dev.jsonl", dev_recs)
    if cv_dev_recs:
        write_jsonl(data_dir / "cv_dev.jsonl", cv_dev_recs)
    if test_recs:
        write_jsonl(data_dir / "test.jsonl", test_recs)
    if repeat > 1 and train_recs:
        write_jsonl(data_dir / f"train_x{repeat}.jsonl", train_recs * repeat)
    if merge_dev:
        merged = absolute(dev_recs, data_dir / "dev.jsonl")
        for m in merge_dev:
            merged += absolute(read_jsonl(m), m)
        write_jsonl(data_dir / "dev_real.jsonl", merged)
    summary: dict = {}
    for split, recs in (("train", train_recs), ("dev", dev_recs), ("cv_dev", cv_dev_recs), ("test", test_recs)):
        for r in recs:
            n, s, spk = summary.setdefault(split, {}).get(r["engine"], (0, 0.0, set()))
            summary[split][r["engine"]] = (n + 1, s + r["duration"], spk | {r["speaker"]})
    train_spk = {s for v in summary.get("train", {}).values() for s in v[2]}
    dev_spk = {s for v in summary.get("dev", {}).values() for s in v[2]}
    test_spk = {s for v in summary.get("test", {}).values() for s in v[2]}
    assert not (train_spk & dev_spk or train_spk & test_spk or dev_spk & test_spk), "speaker in two splits"
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech-commands", type=Path, help="Speech Commands folder (one sub-folder per word)")
    ap.add_argument("--fsdd", type=Path, help="FSDD recordings/ folder")
    ap.add_argument("--data-dir", type=Path, default=Path("data/realwords"), help="output folder")
    ap.add_argument("--speechocean", type=Path, help="speechocean762 checkout (WAVE/, train/, test/)")
    ap.add_argument("--common-voice", type=Path, help="Common Voice folder (validated.tsv/.csv; clips: test only)")
    ap.add_argument("--cv-csv", type=Path, nargs="+", default=[],
                    help="Common Voice CSVs of the Kaggle packaging (filename,text; e.g. cv-valid-dev/cv-valid-dev.csv)")
    ap.add_argument("--cv-dev-frac", type=float, default=0.1,
                    help="share of the --cv-csv sentences in cv_dev.jsonl (text-disjoint; speakers unknown)")
    ap.add_argument("--exclude-text", type=Path, nargs="*", default=[],
                    help="manifests whose sentences are dropped from every source (test sets)")
    ap.add_argument("--so-dev-frac", type=float, default=0.5,
                    help="share of speechocean762's test speakers in dev (the rest: test.jsonl)")
    ap.add_argument("--sc-dev-frac", type=float, default=0.2, help="share of Speech Commands speakers in dev")
    ap.add_argument("--fsdd-dev-speakers", nargs="+", default=["theo"], help="FSDD speakers in dev")
    ap.add_argument("--merge-dev", type=Path, nargs="*", default=[],
                    help="more dev manifests pooled into dev_real.jsonl (e.g. recipes/realspeech's real_dev.jsonl)")
    ap.add_argument("--repeat", type=int, default=0, help="also write train_x<N>.jsonl, every clip N times")
    args = ap.parse_args(argv)
    for name, frac in (("--sc-dev-frac", args.sc_dev_frac), ("--so-dev-frac", args.so_dev_frac),
                       ("--cv-dev-frac", args.cv_dev_frac)):
        if not 0.0 < frac < 1.0:
            ap.error(f"{name} must be in (0, 1), got {frac}")
    try:
        summary = prepare(args.speech_commands, args.fsdd, args.data_dir, sc_dev_frac=args.sc_dev_frac,
                          fsdd_dev_speakers=tuple(args.fsdd_dev_speakers), merge_dev=tuple(args.merge_dev), repeat=args.repeat,
                          so_root=args.speechocean, so_dev_frac=args.so_dev_frac, cv_root=args.common_voice,
                          cv_csv=tuple(args.cv_csv), cv_dev_frac=args.cv_dev_frac,
                          exclude_text=tuple(args.exclude_text))
    except RecipeError as e:
        print(f"realwords: {e}", file=sys.stderr)
        return 2
    print("| split | source | clips | minutes | speakers |\n|---|---|---:|---:|---:|")
    for split, by_src in summary.items():
        for src, (n, s, spk) in sorted(by_src.items()):
            print(f"| {split} | {src} | {n} | {s / 60:.1f} | {len(spk)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
