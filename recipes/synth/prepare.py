#!/usr/bin/env python3
"""Offline speech corpus recipe: synthetic training speech + held-out and real test sets.

Usage:
    python3 recipes/synth/prepare.py [--data-dir /work/data/synth] [--stage 0] [--stop-stage 9]
                                     [--train-hours 40] [--short-hours 3] [--dev-utts 400] [--test-utts 720]
                                     [--seed 1234] [--jobs 2]

Stages (each writes ``<data-dir>/.done/stageN`` when finished and is skipped afterwards;
delete the marker, or the stage's outputs, to redo it):

    0  install missing apt packages (Debian non-free recipe from /work/shared/data.md) and pip packages
    1  text pools: fortunes + WordNet examples -> normalised, de-duplicated, shuffled,
       disjoint ``text/{train,dev,test}.txt`` (``*.speak.txt``: the text given to the engines)
    2  train audio (>= --train-hours) from the training engines -> ``train.jsonl``
    3  dev audio (--dev-utts) from the training engines, dev text pool -> ``dev.jsonl``
       (prints "TRAIN READY" when train.jsonl and dev.jsonl exist)
    4  held-out synthetic test (pico2wave, Piper joe, RHVoice), test text pool -> ``test_heldout.jsonl``
    5  real speech: Asterisk prompts (G.722, 16 kHz) -> ``asterisk.jsonl`` + ``asterisk_letters.jsonl``
    6  augmentation material: music-on-hold at 16 kHz + simulated room impulse responses -> ``aug/``
    7  data card -> ``DATA_CARD.md`` + ``data_card.json`` (copied to recipes/synth/DATA_CARD.md)
    8  word 3-gram LM of the training sentences (``asr lm``, interpolated Kneser-Ney) for the beam
       decoder -> ``lm/train_3gram.arpa`` (no dev or test text goes into it)
    9  short training utterances: isolated words and word pairs cut from the training text pool,
       --short-hours of them from the training engines -> ``train_short.jsonl`` (train with
       ``--set extra_train='["<data-dir>/train_short.jsonl"]'``); rewrites the data card

Manifests are JSON lines ``{"audio", "text", "duration", "voice", "engine"}``, written atomically.
Audio is 16 kHz mono 16-bit PCM WAV. Work is parallel over ``--jobs`` processes; an interrupted
audio stage resumes from its finished chunks.

This file is the stage list and the CLI; the work is in the package's modules: ``install``
(stage 0), ``textpool`` (1, 9's text), ``generate`` (planning and synthesis of 2-4, 9),
``engines`` (voices and back-ends), ``asterisk`` (5), ``augment_material`` (6), ``datacard`` (7).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script (python3 recipes/synth/prepare.py): `recipes` is in this checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from asr.jsonl import write_jsonl  # noqa: E402
from recipes.synth.common import log, write_lines  # noqa: E402
from recipes.synth.generate import generate  # noqa: E402
from recipes.synth.textpool import load_pool, short_pool, write_text_pools  # noqa: E402


# --------------------------------------------------------------------------- stages
def stage0_install(args) -> None:
    from recipes.synth.install import install_packages
    install_packages()


def stage1_text(args) -> None:
    write_text_pools(args.data_dir, args.seed)


def stage2_train(args) -> None:
    from recipes.synth.engines import training_voices
    recs = generate(args, "train", load_pool(args.data_dir, "train"), training_voices(),
                    target_hours=args.train_hours)
    write_jsonl(os.path.join(args.data_dir, "train.jsonl"), recs)
    log(f"train.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")


def stage3_dev(args) -> None:
    from recipes.synth.engines import training_voices
    recs = generate(args, "dev", load_pool(args.data_dir, "dev"), training_voices(), n_utts=args.dev_utts)
    write_jsonl(os.path.join(args.data_dir, "dev.jsonl"), recs)
    log(f"dev.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")


def stage4_heldout(args) -> None:
    from recipes.synth.engines import heldout_voices
    voices = heldout_voices()
    try:
        from recipes.synth.piper_support import synthesize
        ok = synthesize("This is a test.") is not None
    except Exception as e:  # noqa: BLE001
        ok = False
        log(f"piper unavailable ({e!r}); held-out set without Piper")
    if not ok:
        voices = {k: v for k, v in voices.items() if v["engine"] != "piper"}
    recs = generate(args, "test_heldout", load_pool(args.data_dir, "test"), voices, n_utts=args.test_utts,
                    semitones=1.5, balanced=True)
    write_jsonl(os.path.join(args.data_dir, "test_heldout.jsonl"), recs)
    log(f"test_heldout.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")


def stage5_asterisk(args) -> None:
    from recipes.synth.asterisk import convert_asterisk
    convert_asterisk(args.data_dir)


def stage6_aug(args) -> None:
    from recipes.synth.augment_material import make_aug_material
    make_aug_material(os.path.join(args.data_dir, "aug"), seed=args.seed, n_rooms=args.rirs)


def stage7_card(args) -> None:
    from recipes.synth.datacard import write_data_card
    write_data_card(args.data_dir, os.path.join(HERE, "DATA_CARD.md"))


def stage8_lm(args) -> None:
    from asr.lm import build_arpa, read_sentences

    os.makedirs(os.path.join(args.data_dir, "lm"), exist_ok=True)
    out = os.path.join(args.data_dir, "lm", "train_3gram.arpa")
    st = build_arpa(read_sentences([os.path.join(args.data_dir, "train.jsonl")]), out, order=3)
    log(f"stage 8: {out}: {st.sentences} sentences, vocabulary {st.vocab}, n-grams {st.ngrams}")


def stage9_short(args) -> None:
    """Short training utterances (1-2 words) from the training voices: the sentence pools start at
    3 words, while prompts and commands (half of the Asterisk letters set) are single words."""
    from recipes.synth.datacard import write_data_card
    from recipes.synth.engines import training_voices
    with open(os.path.join(args.data_dir, "text", "train.txt")) as f:
        sentences = f.read().splitlines()
    pool = short_pool(sentences, n_items=max(1000, int(args.short_hours * 3600 / 0.5)), seed=args.seed)
    write_lines(os.path.join(args.data_dir, "text", "train_short.txt"), [n for n, _ in pool])
    recs = generate(args, "train_short", pool, training_voices(), target_hours=args.short_hours)
    write_jsonl(os.path.join(args.data_dir, "train_short.jsonl"), recs)
    log(f"train_short.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")
    write_data_card(args.data_dir, os.path.join(HERE, "DATA_CARD.md"))  # stage 7 ran before this split existed


STAGES = {0: stage0_install, 1: stage1_text, 2: stage2_train, 3: stage3_dev, 4: stage4_heldout,
          5: stage5_asterisk, 6: stage6_aug, 7: stage7_card, 8: stage8_lm, 9: stage9_short}


# --------------------------------------------------------------------------- CLI
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/work/data/synth")
    ap.add_argument("--stage", type=int, default=0)
    ap.add_argument("--stop-stage", type=int, default=9)
    ap.add_argument("--train-hours", type=float, default=40.0)
    ap.add_argument("--short-hours", type=float, default=3.0,
                    help="hours of 1-2 word training utterances (stage 9)")
    ap.add_argument("--dev-utts", type=int, default=400)
    ap.add_argument("--test-utts", type=int, default=720)
    ap.add_argument("--rirs", type=int, default=300, help="number of simulated rooms (stage 6)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes")
    args = ap.parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir)
    return args


def run_stage(n: int, args) -> None:
    """Stage ``n`` unless its ``.done`` marker exists; its time goes to ``stage_times.json``."""
    marker = os.path.join(args.data_dir, ".done", f"stage{n}")
    if os.path.exists(marker):
        log(f"stage {n} ({STAGES[n].__name__}): already done, skipped")
        return
    timings_path = os.path.join(args.data_dir, "stage_times.json")
    log(f"stage {n} ({STAGES[n].__name__}): start")
    t0 = time.time()
    STAGES[n](args)
    dt = time.time() - t0
    times = json.load(open(timings_path)) if os.path.exists(timings_path) else {}
    times[str(n)] = {"stage": STAGES[n].__name__, "seconds": round(dt, 1)}
    with open(timings_path + ".tmp", "w") as f:
        json.dump(times, f, indent=1)
    os.replace(timings_path + ".tmp", timings_path)
    with open(marker, "w") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S") + f" {dt:.1f}s\n")
    log(f"stage {n}: done in {dt:.1f} s")


def main(argv=None) -> None:
    args = parse_args(argv)
    os.makedirs(os.path.join(args.data_dir, ".done"), exist_ok=True)
    for n in range(args.stage, args.stop_stage + 1):
        run_stage(n, args)
        if n == 3 and all(os.path.exists(os.path.join(args.data_dir, f)) for f in ("train.jsonl", "dev.jsonl")):
            log("TRAIN READY")


if __name__ == "__main__":
    main()
