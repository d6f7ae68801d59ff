#!/usr/bin/env python3
"""Compare the project model with PocketSphinx 5 on the same test sets: one table.

Usage:
    python3 recipes/eval/run.py [--model default] [--data-dir /work/data/synth] [--out exp/eval]
                                [--sets test_heldout asterisk_letters [MANIFEST_OR_DIR ...]]
                                [--limit N] [--chunk-ms 160] [--decoder greedy [default] [beam]] [--beam-size 128]
                                [--beam-size-token 8] [--beam-threshold 50] [--lm ARPA] [--lm-weight 1.0] [--word-score 0.0]
                                [--grammar PHRASES] [--threads 1] [--speed-utts 20] [--latency-utts 20] [--latency-chunk-ms 160]
                                [--stage 1] [--stop-stage 3] [--force]

A set is a name in ``--data-dir`` (``NAME.jsonl``), or any manifest path or LibriSpeech-layout
directory. ``--limit N`` keeps N utterances of every set, spread evenly over it (manifests are
often ordered by voice, so the first N would be one voice); both systems see the same ones.

Stages (finished work is cached under ``--out`` with a key of its inputs, and skipped on
reruns while the key matches; ``--force`` redoes it):

    1  PocketSphinx 5 (recipes/eval/pocketsphinx_baseline.py: default en-us model, 1 thread)
       on each set -> ``OUT/pocketsphinx/SET/{hyps.jsonl,summary.json}``; rescored with
       ``asr.evaluate.score`` so both systems are scored by the same code. A complete earlier
       run of that script in ``DATA_DIR/baseline/`` (same manifest, newer) is reused.
    2  project model on each set with each ``--decoder`` (``asr.evaluate``: streaming path,
       WER/CER, RTF on 1 thread and all cores, latency at real-time pace)
       -> ``OUT/MODEL/SET/{report.md,summary.json,...}`` (greedy), ``OUT/MODEL+beam[-lm]/SET/...``
       (beam search, with ``--lm`` a word n-gram LM from ``asr lm``), ``OUT/MODEL+default/SET/...``
       (``--decoder default``: the model's bundled LM and settings, as ``asr transcribe`` decodes)
    3  comparison table -> ``OUT/comparison.md`` + ``OUT/comparison.json``

``--grammar PHRASES`` (as ``asr eval --grammar``) decodes both systems with the same phrase list:
the project with :mod:`asr.grammar`, PocketSphinx with a JSGF grammar of the phrases (results in
``MODEL+grammar/`` and ``pocketsphinx+grammar/``), e.g. digits on the Free Spoken Digit Dataset.

Latency is measured for the project model only (PocketSphinx decodes whole utterances here).

This file is the CLI; the work is in ``sets`` (set resolution, cache keys), ``systems`` (stages 1
and 2) and ``comparison`` (stage 3).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python3 recipes/eval/run.py): `recipes` is in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.eval.comparison import stage_table  # noqa: E402
from recipes.eval.sets import log, resolve_sets  # noqa: E402
from recipes.eval.systems import stage_pocketsphinx, stage_project  # noqa: E402

DEFAULT_SETS = ["test_heldout", "asterisk_letters"]


def parse_args(argv=None) -> argparse.Namespace:
    from asr.beam import add_beam_arguments
    from asr.checkpoint import add_int8_argument
    from asr.grammar import add_grammar_argument

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="bundled model name or checkpoint path (default: %(default)s)")
    ap.add_argument("--data-dir", default="/work/data/synth", help="where set names are looked up (default: %(default)s)")
    ap.add_argument("--out", default="exp/eval", help="output directory (default: %(default)s)")
    ap.add_argument("--sets", nargs="+", default=DEFAULT_SETS, metavar="SET",
                    help="set names in --data-dir, manifests or LibriSpeech directories (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=0,
                    help="N utterances spread evenly over each set (default: all)")
    ap.add_argument("--chunk-ms", type=float, default=160.0, help="project: stream chunk size in ms (default: %(default)s)")
    ap.add_argument("--decoder", nargs="+", choices=["default", "greedy", "beam"], default=["greedy"],
                    help="project decoders, each a row of the table: default: what `asr transcribe` does "
                         "out of the box (the model's bundled LM with its settings; greedy without one); "
                         "beam: beam search with this run's beam flags (default: greedy)")
    add_beam_arguments(ap)  # --beam-size ... --word-score, as `asr eval`
    add_int8_argument(ap)  # results go to MODEL-int8[+beam...]
    add_grammar_argument(ap)  # both systems, results in MODEL+grammar/ and pocketsphinx+grammar/
    ap.add_argument("--batch-size", type=int, default=16, help="project: streams decoded together")
    ap.add_argument("--threads", type=int, default=1,
                    help="project: torch threads of the batched eval run (0: all cores; default: %(default)s, "
                         "see README)")
    ap.add_argument("--speed-utts", type=int, default=20, help="project: utterances timed on 1 thread / all cores")
    ap.add_argument("--latency-utts", type=int, default=20, help="project: utterances fed at real-time pace (0: skip)")
    ap.add_argument("--latency-chunk-ms", type=float, default=160.0)
    ap.add_argument("--stage", type=int, default=1)
    ap.add_argument("--stop-stage", type=int, default=3)
    ap.add_argument("--force", action="store_true", help="redo cached results")
    args = ap.parse_args(argv)
    if args.limit < 0:
        ap.error("--limit must be 0 or more")
    if args.grammar and (args.decoder != ["greedy"] or args.lm):
        ap.error("--grammar replaces the decoder: drop --decoder beam / default / --lm")
    if args.lm and "beam" not in args.decoder:
        ap.error("--lm needs --decoder beam")
    if args.lm and not Path(args.lm).is_file():
        ap.error(f"no such language model: {args.lm}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = resolve_sets(args.sets, args.data_dir, out, args.limit)
    log("sets: " + ", ".join(f"{n} ({src})" for n, _, src in sets))
    if args.stage <= 2 <= args.stop_stage:
        from asr.checkpoint import load_model

        try:
            load_model(args.model)
        except (FileNotFoundError, ValueError) as e:  # before PocketSphinx spends minutes
            print(f"run.py: error: {e}", file=sys.stderr)
            return 1
    if args.stage <= 1 <= args.stop_stage:
        stage_pocketsphinx(sets, args, out)
    if args.stage <= 2 <= args.stop_stage:
        stage_project(sets, args, out)
    if args.stage <= 3 <= args.stop_stage:
        path = stage_table(sets, args, out)
        print(path.read_text())
        log(f"stage 3: {path} and {out / 'comparison.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
