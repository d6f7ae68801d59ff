#!/usr/bin/env python3
"""Training audio from held-out engines' voices: an ablation of the recipe's split, not a stage.

The recipe keeps pico2wave, Piper and RHVoice out of training so that they measure how the model
does on voices it has never heard (``test_heldout.jsonl``). This script measures what that rule
costs: it synthesises ``--hours`` of the *training* text pool (sentences the model already trains
on, so only the voices are new) with the voices of the chosen held-out engines, with the same
per-utterance rate, pitch and level variation as the training stages. Pool it with
``asr train --set extra_train='[..., "<data-dir>/xtrain_<engines>.jsonl"]'``.

A model trained on it has heard those engines: score it only on the other held-out engines
(``asr eval`` prints a per-engine breakdown) and on the Asterisk recordings, and do not export it
as the bundled default while the split in /work/shared/data.md stands.

Usage:
    python3 recipes/synth/extra_voices.py --engines rhvoice [--hours 8] [--data-dir /work/data/synth]

Needs stages 0 and 1 of ``prepare.py`` (packages and ``text/train.txt``). Writes
``<data-dir>/xtrain_<engines>.jsonl`` and ``audio/xtrain_<engines>/``; a killed run resumes from
its finished chunks, like the recipe's audio stages.
"""

from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script (python3 recipes/synth/extra_voices.py): `recipes` is in this checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from asr.jsonl import write_jsonl  # noqa: E402
from recipes.synth.common import log  # noqa: E402
from recipes.synth.datacard import _summ  # noqa: E402
from recipes.synth.engines import heldout_voices  # noqa: E402
from recipes.synth.generate import generate  # noqa: E402
from recipes.synth.textpool import load_pool  # noqa: E402

ENGINES = ("pico2wave", "piper", "rhvoice")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", nargs="+", required=True, choices=ENGINES,
                    help="held-out engines whose voices to synthesise (all voices of each)")
    ap.add_argument("--hours", type=float, default=8.0, help="hours of audio to make (default 8)")
    ap.add_argument("--data-dir", default="/work/data/synth")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes")
    args = ap.parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir)
    if not os.path.exists(os.path.join(args.data_dir, "text", "train.txt")):
        ap.error(f"{args.data_dir}/text/train.txt not found: run prepare.py stages 0-1 first")
    if args.hours <= 0:
        ap.error("--hours must be positive")
    engines = sorted(set(args.engines))
    voices = {k: v for k, v in heldout_voices().items() if v["engine"] in engines}
    split = "xtrain_" + "_".join(engines)
    log(f"{split}: {args.hours:g} h from {len(voices)} voices ({', '.join(sorted(voices))}), training text pool")
    recs = generate(args, split, load_pool(args.data_dir, "train"), voices, target_hours=args.hours)
    if not recs:
        log(f"{split}: no audio was made (are the engines installed? run prepare.py --stage 0)")
        return 1
    out = os.path.join(args.data_dir, f"{split}.jsonl")
    write_jsonl(out, recs)
    summ = _summ(recs)
    log(f"{out}: {summ['utterances']} utterances, {summ['hours']:.2f} h; per voice (h): "
        + ", ".join(f"{v} {t['hours']:.2f}" for v, t in summ["by_voice"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
