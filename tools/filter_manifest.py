#!/usr/bin/env python3
"""Copy a JSON-lines manifest without the utterances whose field matches a pattern.

Usage:
    python tools/filter_manifest.py IN.jsonl OUT.jsonl --drop engine mbrola --drop voice 'festival:(us[123]|en1)$'

Each ``--drop FIELD REGEX`` removes lines whose ``FIELD`` (as a string) matches ``REGEX``
(``re.search``). Relative audio paths are made absolute so OUT can live anywhere. Prints kept and
dropped counts and hours. Example: the synthetic corpus without its MBROLA voices (non-commercial
licence), ``--drop engine mbrola --drop voice 'festival:(us[123]|en1)$'`` (espeak-ng's and festival's MBROLA voices).
"""

from __future__ import annotations

import argparse
import os
import re
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--drop", nargs=2, action="append", default=[], metavar=("FIELD", "REGEX"),
                    help="drop lines whose FIELD matches REGEX (repeatable)")
    args = ap.parse_args(argv)
    try:
        rules = [(f, re.compile(r)) for f, r in args.drop]
    except re.error as e:
        ap.error(f"bad --drop pattern: {e}")
    from asr.jsonl import read_jsonl, write_jsonl

    base = os.path.dirname(os.path.abspath(args.src))
    kept, dropped = [], []
    for r in read_jsonl(args.src):
        if any(f in r and rx.search(str(r[f])) for f, rx in rules):
            dropped.append(r)
        else:
            kept.append({**r, "audio": os.path.join(base, r["audio"])})  # join keeps an absolute path as it is
    write_jsonl(args.dst, kept)
    hours = [sum(float(r.get("duration", 0.0)) for r in rs) / 3600 for rs in (kept, dropped)]
    print(f"kept {len(kept)} ({hours[0]:.2f} h), dropped {len(dropped)} ({hours[1]:.2f} h) -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
