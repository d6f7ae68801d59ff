#!/usr/bin/env python3
"""Real human English speech found in Debian packages, as a training manifest.

The synthetic corpus (``recipes/synth``) has no human voice in it, and the Asterisk prompts (the
real-speech test set) must never be trained on. A search of Debian bookworm (main, contrib,
non-free), PyPI and npm (2026-12) found no speech corpus in any package, only voice clips in
games and educational programs. This recipe collects the ones whose words are known exactly from
the package itself: 11.3 minutes (538 clips), nearly all single words and short phrases, about
a dozen speakers, one game voice (Warzone 2100) two thirds of it.

| source | package | what is said | how the words are known | licence |
|---|---|---|---|---|
| ``warzone`` | warzone2100-data | game voice lines (a female computer voice, male pilots) | ``script/tutorial.js`` messages and the comments of ``audio/audio.cfg`` | GPL-2+ |
| ``tuxpaint`` | tuxpaint-stamps-default | stamp descriptions ("A koala.") | first line of the stamp's ``.txt`` | GPL-2 |
| ``librivox`` | pocketsphinx-testdata | 5 read sentences (LibriVox, *Sense and Sensibility*) | ``librivox/transcription`` | BSD-2; audio public domain |
| ``cards`` | pocketsphinx-testdata | card names ("ten of clubs") | ``cards/cards.transcription`` | BSD-2 |
| ``ktuberling`` | ktuberling-data | object names | ``sounds/en.soundtheme`` | GPL-2+ |
| ``saytime`` | saytime | numbers and clock words | file name | permissive (J. Poskanzer, 1990) |
| ``csmash`` | csmash-data | numbers (table-tennis scores) | file name | GPL-2+ |
| ``scid`` | scid-data | chess words, files a-h, ranks 1-8 | file name | GPL-2 |
| ``gentle`` | gentle | letters A-Z | file name | LGPL-3 (Voxeo, 2005) |

Left out: sound effects in the same directories (beeps, clicks), clips whose words are only
hinted at by a slot name (hedgewars, nexuiz taunts), clips with no labels (megaglest), anything
from Asterisk (the test speaker), and qabcs-data (possibly synthetic, not checkable here).

Usage::

    python3 recipes/realspeech/prepare.py [--data-dir /work/data/real] [--repeat 20]

Writes ``<data-dir>/real_train.jsonl`` (one line per clip, 16 kHz mono 16-bit WAV under
``<data-dir>/audio/<source>/``), ``real_dev.jsonl`` (the ``--holdout`` sources, by default
ktuberling and tuxpaint: speakers the training sources do not have) and, with ``--repeat N``, ``real_train_x<N>.jsonl`` listing every
clip N times, so that 9 minutes are not lost among 40 hours of synthetic speech when pooled with
``asr train --set extra_train='[..., "<data-dir>/real_train_x20.jsonl"]'``. Needs ``apt-get`` (it
downloads the ``.deb`` files into ``<data-dir>/debs`` and unpacks them there with ``dpkg -x``;
nothing is installed). Idempotent: existing downloads and WAV files are kept.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable, Iterator, List, NamedTuple

import numpy as np
import soundfile as sf

if __package__ in (None, ""):  # run as a script (python3 recipes/realspeech/prepare.py): `recipes` is in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.synth.datacard import _summ  # noqa: E402

# source -> the Debian package it comes from
PACKAGE = {"warzone": "warzone2100-data", "tuxpaint": "tuxpaint-stamps-default",
           "librivox": "pocketsphinx-testdata", "cards": "pocketsphinx-testdata",
           "ktuberling": "ktuberling-data", "saytime": "saytime", "csmash": "csmash-data",
           "scid": "scid-data", "gentle": "gentle"}
SR = 16000
MIN_S, MAX_S = 0.3, 20.0  # clips outside this range are skipped (effects, music)


class Clip(NamedTuple):
    source: str  # recipe source name (table above)
    key: str  # unique id within the source, used for the WAV file name
    read: Callable[[], tuple]  # -> (samples float32 [n] or [n, ch], sample rate)
    text: str  # transcript as found in the package (normalised later)


def _file(path: Path) -> Callable[[], tuple]:
    return lambda: sf.read(str(path), dtype="float32", always_2d=False)


def _member(zf: zipfile.ZipFile, name: str) -> Callable[[], tuple]:
    return lambda: sf.read(io.BytesIO(zf.read(name)), dtype="float32", always_2d=False)


# --- sources -------------------------------------------------------------------------------------

# Warzone 2100 directories that hold speech (the others hold effects, music and beeps).
WZ_SPEECH_DIRS = ("audio/tutorial/", "audio/extra/", "audio/memressp/", "audio/vtoltalk/",
                  "audio/coltive/", "audio/trnsppil/")


def warzone(root: Path) -> Iterator[Clip]:
    zf = zipfile.ZipFile(root / "warzone2100-data/usr/share/games/warzone2100/base.wz")
    labels = {}
    cfg = zf.read("audio/audio.cfg").decode("latin-1")
    for m in re.finditer(r'audio\s+"([^"]+\.ogg)"[^\n]*?/\*\s*(.*?)\s*\*/', cfg):
        labels.setdefault(m.group(1), m.group(2))
    js = zf.read("script/tutorial.js").decode("utf-8")
    for m in re.finditer(r'"audio":\s*"([^"]+\.ogg)".*?"message":\s*_\("((?:[^"\\]|\\.)*)"\)', js):
        labels[m.group(1)] = m.group(2)
    for name in sorted(zf.namelist()):
        base = name.rsplit("/", 1)[-1]
        if name.startswith(WZ_SPEECH_DIRS) and name.endswith(".ogg") and labels.get(base):
            yield Clip("warzone", name[len("audio/"):-4].replace("/", "_"), _member(zf, name), labels[base])


def tuxpaint(root: Path) -> Iterator[Clip]:
    for ogg in sorted((root / "tuxpaint-stamps-default/usr/share/tuxpaint/stamps").rglob("*_desc.ogg")):
        txt = ogg.with_name(ogg.name[: -len("_desc.ogg")] + ".txt")
        if txt.exists():
            first = txt.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
            if first and "=" not in first[0]:
                yield Clip("tuxpaint", ogg.stem, _file(ogg), first[0])


def _sphinx_transcripts(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*$", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def _sphinx_test_set(source: str, transcription: str) -> Callable[[Path], Iterator[Clip]]:
    """A source from a pocketsphinx-testdata folder: ``<source>/<transcription>`` + ``<key>.wav``."""

    def clips(root: Path) -> Iterator[Clip]:
        d = root / "pocketsphinx-testdata/usr/share/pocketsphinx/test/data" / source
        for key, text in sorted(_sphinx_transcripts(d / transcription).items()):
            if (d / f"{key}.wav").exists():
                yield Clip(source, key, _file(d / f"{key}.wav"), text)

    return clips


librivox = _sphinx_test_set("librivox", "transcription")
cards = _sphinx_test_set("cards", "cards.transcription")


# ktuberling's sound names that are not the words as spoken (compounds, misspellings); "ufo" is
# left out (said as a word or spelt?).
KTUBERLING_WORDS = {"fallingstar": "falling star", "palmtree": "palm tree", "brocolli": "broccoli",
                    "broccolli": "broccoli", "sphynx": "sphinx", "ufo": None}


def ktuberling(root: Path) -> Iterator[Clip]:
    d = root / "ktuberling-data/usr/share/ktuberling/sounds"
    theme = (d / "en.soundtheme").read_text(encoding="utf-8")
    for name, f in re.findall(r'<sound\s+name="([^"]+)"\s+file="([^"]+)"', theme):
        if (d / f).exists():
            # Names are "object" or "scene_object" (pizzeria_olive): the clip says the object.
            word = name.split("_")[-1]
            word = KTUBERLING_WORDS.get(word, word)
            if word:
                yield Clip("ktuberling", Path(f).stem, _file(d / f), word)


SAYTIME_WORDS = {"the_time_is": "the time is", "oclock": "o'clock", "hour": "hour", "hours": "hours",
                 "minute": "minute", "minutes": "minutes", "second": "second", "seconds": "seconds",
                 "exactly": "exactly", "and": "and", "oh": "oh"}


def saytime(root: Path) -> Iterator[Clip]:
    # Digits files are the numbers 1-20, 30, 40, 50; "0" is left out (zero or oh?), "am"/"pm" too.
    for f in sorted((root / "saytime/usr/share/saytime").glob("*.au")):
        word = SAYTIME_WORDS.get(f.stem) or (f.stem if f.stem.isdigit() and f.stem != "0" else None)
        if word:
            yield Clip("saytime", f.stem, _file(f), word)


CSMASH_EFFECTS = {"racket", "table", "click"}


def csmash(root: Path) -> Iterator[Clip]:
    for f in sorted((root / "csmash-data/usr/share/games/csmash/wav").glob("*.wav")):
        if f.stem not in CSMASH_EFFECTS:
            yield Clip("csmash", f.stem, _file(f), "love all" if f.stem == "loveall" else f.stem)


SCID_WORDS = {"King": "king", "Queen": "queen", "Rook": "rook", "Bishop": "bishop", "Knight": "knight",
              "Check": "check"}


def scid(root: Path) -> Iterator[Clip]:
    # Files a-h and ranks 1-8 are said as the letter / number; Mate, Castle*, Promote, Back, x,
    # move and alert are left out (wording or content not known).
    for f in sorted((root / "scid-data/usr/share/scid/sounds").glob("*.wav")):
        s = f.stem
        word = SCID_WORDS.get(s) or (s if re.fullmatch(r"[a-h1-8]", s) else None)
        if word:
            yield Clip("scid", s, _file(f), word)


def gentle(root: Path) -> Iterator[Clip]:
    for f in sorted((root / "gentle/usr/share/gentle/wav").glob("*.wav")):
        if re.fullmatch(r"[A-Z]", f.stem):
            yield Clip("gentle", f.stem, _file(f), f.stem.lower())


SOURCES = {"warzone": warzone, "tuxpaint": tuxpaint, "librivox": librivox, "cards": cards,
           "ktuberling": ktuberling, "saytime": saytime, "csmash": csmash, "scid": scid, "gentle": gentle}
# Two sources of other speakers than the training sources, kept out of training by default: a
# small real-speech dev set (unseen speakers, isolated words and short phrases).
HOLDOUT = ("ktuberling", "tuxpaint")


# --- stages --------------------------------------------------------------------------------------

def fetch(data_dir: Path, sources: List[str]) -> Path:
    """Download and unpack the sources' packages (no installation); returns the unpack root.

    Packages already unpacked under ``<data-dir>/pkg/<package>`` are not downloaded again.
    """
    debs, root = data_dir / "debs", data_dir / "pkg"
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    packages = sorted({PACKAGE[s] for s in sources} - {p.name for p in root.iterdir()})
    missing = [p for p in packages if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        try:
            r = subprocess.run(["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True)
        except FileNotFoundError:
            sys.exit(f"apt-get not found: unpack {' '.join(missing)} under {root}/<package> yourself")
        if r.returncode:
            sys.exit(f"apt-get download failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    for p in packages:
        dest = root / p
        if not dest.exists():
            deb = sorted(debs.glob(f"{p}_*.deb"))[-1]
            subprocess.run(["dpkg", "-x", str(deb), str(dest) + ".tmp"], check=True)
            os.replace(str(dest) + ".tmp", dest)
    return root


def to_16k_mono(x: np.ndarray, sr: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SR:
        x = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), sr, SR).numpy()
    return x.astype(np.float32)


def build(data_dir: Path, root: Path, sources: List[str]) -> List[dict]:
    from asr.text import normalize
    from tqdm import tqdm

    clips = [c for s in sources for c in SOURCES[s](root)]
    records, skipped = [], {"empty text": 0, "duration": 0}
    for c in tqdm(clips, desc="clips", unit="clip"):
        text = normalize(c.text)
        if not text:
            skipped["empty text"] += 1
            continue
        out = data_dir / "audio" / c.source / f"{c.key}.wav"
        if out.exists():
            dur = sf.info(str(out)).duration
        else:
            x, sr = c.read()
            x = to_16k_mono(x, sr)
            dur = len(x) / SR
            if MIN_S <= dur <= MAX_S:
                out.parent.mkdir(parents=True, exist_ok=True)
                peak = max(float(np.abs(x).max()), 1.0)  # only clipping audio is scaled down
                sf.write(str(out) + ".tmp.wav", x / peak, SR, subtype="PCM_16")
                os.replace(str(out) + ".tmp.wav", out)
        if not MIN_S <= dur <= MAX_S:
            skipped["duration"] += 1
            continue
        records.append({"audio": os.path.relpath(out, data_dir), "text": text, "duration": round(dur, 3),
                        "engine": "real", "voice": c.source, "source_text": c.text})
    print(f"kept {len(records)} of {len(clips)} clips; skipped {skipped}", file=sys.stderr)
    return records


def write(path: Path, records: List[dict]) -> None:
    """Atomic JSON-lines write (temp file + rename)."""
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/work/data/real", help="output directory (default %(default)s)")
    ap.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES),
                    help="sources to collect (default: all)")
    ap.add_argument("--holdout", nargs="*", default=list(HOLDOUT), choices=list(SOURCES),
                    help="sources written to real_dev.jsonl instead of the training manifests, to measure "
                         "unseen real speakers (default: %(default)s; none: --holdout)")
    ap.add_argument("--repeat", type=int, default=0,
                    help="also write real_train_x<N>.jsonl listing every clip N times (default: no)")
    args = ap.parse_args(argv)
    if args.repeat < 0:
        ap.error("--repeat must be >= 0")
    data_dir = Path(args.data_dir).resolve()
    root = fetch(data_dir, args.sources)
    records = build(data_dir, root, args.sources)
    if not records:
        sys.exit("no clips found: are the packages unpacked under " + str(root) + "?")
    train = [r for r in records if r["voice"] not in args.holdout]
    dev = [r for r in records if r["voice"] in args.holdout]
    write(data_dir / "real_train.jsonl", train)
    write(data_dir / "real_dev.jsonl", dev)
    if args.repeat > 1:
        write(data_dir / f"real_train_x{args.repeat}.jsonl", train * args.repeat)
    summary = _summ(records)  # the corpus recipe's tally by voice (here: by source)
    print(f"{'source':12s} {'clips':>6s} {'minutes':>8s}  manifest")
    for k, t in summary["by_voice"].items():
        print(f"{k:12s} {t['utterances']:6d} {t['hours'] * 60:8.2f}  {'real_dev' if k in args.holdout else 'real_train'}")
    print(f"{'total':12s} {summary['utterances']:6d} {summary['hours'] * 60:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
