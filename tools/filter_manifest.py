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
import json
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
    base = os.path.dirname(os.path.abspath(args.src))
    kept = dropped = 0
    hours = [0.0, 0.0]
    tmp = args.dst + ".tmp"
    with open(args.src, encoding="utf-8") as fi, open(tmp, "w", encoding="utf-8") as fo:
        for line in fi:
            if not line.strip():
                continue
            r = json.loads(line)
            drop = any(f in r and rx.search(str(r[f])) for f, rx in rules)
            hours[drop] += float(r.get("duration", 0.0)) / 3600
            if drop:
                dropped += 1
                continue
            if not os.path.isabs(r["audio"]):
                r["audio"] = os.path.join(base, r["audio"])
            fo.write(json.dumps(r, ensure_ascii=False) + "\n")
            kept += 1
    os.replace(tmp, args.dst)
    print(f"kept {kept} ({hours[0]:.2f} h), dropped {dropped} ({hours[1]:.2f} h) -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
