"""Stage 5 of the synthetic speech recipe: the real-speech test sets from Asterisk's prompts.

The ``asterisk-core-sounds-en-g722`` package holds one speaker's prompts (G.722, 16 kHz) and a
transcript file; the prompts whose transcript is reliable become ``asterisk.jsonl``, those whose
text needs no spelling-out ``asterisk_letters.jsonl``.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import subprocess

import numpy as np

from asr.jsonl import write_jsonl
from asr.text import is_clean, normalize
from recipes.synth.common import log
from recipes.synth.textpool import RE_ABBREV

ASTERISK_DIRS = ["/usr/share/asterisk/sounds/en_US_f_Allison", "/usr/share/asterisk/sounds/en"]
ASTERISK_TXT = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"


def asterisk_transcripts(path: str = ASTERISK_TXT) -> dict[str, str]:
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="ignore") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            name, text = name.strip(), text.strip()
            if name and " " not in name:
                out[name] = text
    return out


def reliable_transcript(text: str) -> bool:
    """Transcripts describing sounds ([beep]), alternatives (a/b), abbreviations, keypad symbols
    (``#``/``*`` are spoken "pound"/"star" but normalise to nothing) and digit strings whose reading
    is ambiguous (``1234`` read digit by digit, ``H.323``) are skipped."""
    if not text or re.search(r"[\[\]<>/()#*]|\d{4,}|\w\.\d", text) or RE_ABBREV.search(text):
        return False
    return bool(normalize(text))


def g722_root() -> str:
    """The directory of the installed G.722 prompts."""
    root = next((d for d in ASTERISK_DIRS if glob.glob(os.path.join(d, "*.g722"))), None)
    if root is None:
        out = subprocess.run(["dpkg", "-L", "asterisk-core-sounds-en-g722"], capture_output=True, text=True).stdout
        files = [p for p in out.split() if p.endswith(".g722")]
        root = os.path.commonpath(files)
    return root


def convert_asterisk(data_dir: str) -> None:
    """Decode the prompts with reliable transcripts to 16-bit WAV under ``audio/asterisk`` and write
    both manifests."""
    import G722
    import soundfile as sf
    root = g722_root()
    trans = asterisk_transcripts()
    out_dir = os.path.join(data_dir, "audio", "asterisk")
    recs, letters = [], []
    files = sorted(glob.glob(os.path.join(root, "**", "*.g722"), recursive=True))
    for path in files:
        name = os.path.relpath(path, root)[: -len(".g722")]
        text = trans.get(name)
        if text is None or not reliable_transcript(text):
            continue
        with open(path, "rb") as f:
            pcm = np.asarray(G722.G722(16000, 64000).decode(f.read()), dtype=np.float32) / 32768.0
        if len(pcm) < 1600:
            continue
        wav = os.path.join(out_dir, name.replace("/", "__") + ".wav")
        os.makedirs(out_dir, exist_ok=True)
        sf.write(wav, pcm, 16000, subtype="PCM_16")
        rec = {"audio": wav, "text": normalize(text), "duration": round(len(pcm) / 16000, 4),
               "voice": "asterisk-female", "engine": "human"}
        recs.append(rec)
        if is_clean(text):
            letters.append(rec)
    write_jsonl(os.path.join(data_dir, "asterisk.jsonl"), recs)
    write_jsonl(os.path.join(data_dir, "asterisk_letters.jsonl"), letters)
    log(f"asterisk: {len(files)} files, {len(recs)} with reliable transcripts "
        f"({sum(r['duration'] for r in recs) / 60:.1f} min), {len(letters)} letters-only "
        f"({sum(r['duration'] for r in letters) / 60:.1f} min)")
