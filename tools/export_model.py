#!/usr/bin/env python3
"""Export a training checkpoint as a compact bundled model (fp16 weights, self-describing).

Usage:
    python tools/export_model.py /work/exp/gru512/best.pt --name default      # -> asr/models/default.pt
    python tools/export_model.py CKPT --out /tmp/model.pt --fp32

Training state (optimizer, scheduler, RNG) is dropped; config, vocabulary, feature settings,
CMVN statistics and the training metadata stay. The exported model is checked against the
source: greedy transcripts of a few seconds of the bundled fixture must match, and the
largest log-probability difference is printed (fp16 rounding).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="training checkpoint (best.pt / last.pt) or any asr checkpoint")
    ap.add_argument("--name", default="default", help="bundled model name (default: %(default)s)")
    ap.add_argument("--out", help="output path (default: asr/models/NAME.pt)")
    ap.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16, half the size)")
    ap.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE", help="extra metadata")
    args = ap.parse_args(argv)

    import torch

    from asr.audio import read_audio
    from asr.checkpoint import load_model

    src = load_model(args.checkpoint)
    out = Path(args.out) if args.out else ROOT / "asr" / "models" / f"{args.name}.pt"
    meta = dict(src.meta)
    meta["source_checkpoint"] = str(Path(args.checkpoint).resolve())
    meta["weights"] = "fp32" if args.fp32 else "fp16"
    for kv in args.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    src.save(out, meta=meta, half=not args.fp32)
    dst = load_model(str(out))
    wave, sr = read_audio(str(ROOT / "tests" / "fixtures" / "conference.wav"))
    # greedy on both sides: the exported model may have a bundled LM next to it (asr.lmbundle), the source not
    a, b = src.transcribe(wave, sr, decoder="greedy"), dst.transcribe(wave, sr, decoder="greedy")
    feats = src.logmel(torch.from_numpy(wave))
    with torch.no_grad():
        la, _ = src.model(feats[None], torch.tensor([feats.shape[0]]))
        lb, _ = dst.model(feats[None], torch.tensor([feats.shape[0]]))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {dst.model.num_params() / 1e6:.2f}M parameters)")
    print(f"max |log-prob difference| vs source: {float((la - lb).abs().max()):.4f}")
    print(f"source:   {a.text!r}\nexported: {b.text!r}")
    if a.text != b.text:
        print("warning: exported transcript differs from the source checkpoint's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
