#!/usr/bin/env python3
"""LibriSpeech data preparation: standard directory layout -> JSON-lines manifests.

Usage:
    python recipes/librispeech/prepare.py --corpus /data/LibriSpeech --out /data/librispeech-manifests
    asr train --config recipes/librispeech/conf/gpu.toml --exp exp/librispeech \\
        --set train_manifest=/data/librispeech-manifests/train-960.jsonl \\
              dev_manifest=/data/librispeech-manifests/dev-clean.jsonl
    torchrun --nproc-per-node 8 -m asr train --config recipes/librispeech/conf/gpu.toml --exp exp/ls

Expects the layout of the OpenSLR tarballs: ``CORPUS/<subset>/<speaker>/<chapter>/``
holding ``<speaker>-<chapter>.trans.txt`` (``UTTID TEXT`` per line) and ``UTTID.flac``.
Writes ``OUT/<subset>.jsonl`` per subset found (fields: audio, text, duration, speaker,
chapter) and ``OUT/train-960.jsonl`` / ``OUT/train-100.jsonl`` when their parts exist.
Stages (``--stage/--stop-stage``): 1 manifests, 2 combined training lists; a ``.done``
marker per stage in OUT makes reruns skip finished work (``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asr.corpora import librispeech_records as read_subset  # manifest records of one subset directory
from asr.jsonl import write_jsonl

SUBSETS = ["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean", "test-other"]
COMBINED = {"train-960": SUBSETS[:3], "train-100": SUBSETS[:1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="directory containing the LibriSpeech subsets")
    ap.add_argument("--out", required=True, help="output directory for manifests")
    ap.add_argument("--stage", type=int, default=1)
    ap.add_argument("--stop-stage", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="redo finished stages")
    args = ap.parse_args(argv)
    corpus, out = Path(args.corpus), Path(args.out)
    if not corpus.is_dir():
        print(f"prepare: error: {corpus} is not a directory", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    found = [s for s in SUBSETS if (corpus / s).is_dir()]
    if not found:
        print(f"prepare: error: no LibriSpeech subsets ({', '.join(SUBSETS)}) under {corpus}", file=sys.stderr)
        return 1
    from tqdm import tqdm

    def stage(n):
        return args.stage <= n <= args.stop_stage and (args.force or not (out / f".done.stage{n}").exists())

    if stage(1):
        for s in tqdm(found, desc="subsets"):
            n = write_jsonl(out / f"{s}.jsonl", read_subset(corpus / s))
            print(f"{s}: {n} utterances")
        (out / ".done.stage1").touch()
    if stage(2):
        for name, parts in COMBINED.items():
            if all((out / f"{p}.jsonl").exists() for p in parts):
                lines = [l for p in parts for l in open(out / f"{p}.jsonl")]
                write_jsonl(out / f"{name}.jsonl", (json.loads(l) for l in lines))
                print(f"{name}: {len(lines)} utterances")
        (out / ".done.stage2").touch()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
