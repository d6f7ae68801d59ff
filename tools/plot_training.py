#!/usr/bin/env python3
"""Plot learning curves from one or more ``EXP/log.jsonl`` files to a PNG, and print a summary table.

Usage:
    python tools/plot_training.py /work/exp/gru512 /work/exp/lstm444 --out curves.png
    python tools/plot_training.py /work/exp/gru512/log.jsonl --x step

Panels: training loss per token, dev WER, dev CER, and extra dev sets' WER (e.g. Asterisk real
speech), against CPU-hours of the training process (``--x cpu_h``, the default: convergence per
CPU-hour, fair between runs sharing a machine), wall-clock hours, audio hours seen, or steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


XLABEL = {"cpu_h": "CPU-hours (training processes)", "wall_h": "wall-clock hours",
          "audio_h": "audio hours seen", "step": "optimizer steps"}


def read_log(path: Path):
    if path.is_dir():
        path = path / "log.jsonl"
    recs = [json.loads(l) for l in open(path) if l.strip()]
    # EXP/log.jsonl is named after its run directory; a kept copy (recipes/synth/logs/RUN.jsonl) after itself
    return (path.parent.name if path.name == "log.jsonl" else path.stem), recs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="experiment directories or log.jsonl files")
    ap.add_argument("--out", default="training_curves.png", help="PNG path (default: %(default)s)")
    ap.add_argument("--x", choices=list(XLABEL), default="cpu_h", help="x axis (default: %(default)s)")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [read_log(Path(p)) for p in args.logs]
    extra_names = sorted({k for _, recs in runs for r in recs if r["type"] == "valid"
                          for k, v in r.items() if isinstance(v, dict) and "wer" in v and k != "dev"})
    ncols = 3 + len(extra_names)
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4))
    print(f"{'run':16s} {'steps':>7s} {'CPU h':>7s} {'wall h':>7s} {'audio h':>8s} {'loss':>7s} {'dev WER':>8s} {'dev CER':>8s} "
          + " ".join(f"{n[:14]:>14s}" for n in extra_names))
    for name, recs in runs:
        tr = [r for r in recs if r["type"] == "train"]
        va = [r for r in recs if r["type"] == "valid"]
        if tr:
            axes[0].plot([r[args.x] for r in tr], [r["loss"] for r in tr], label=name)
        if va:
            xs = [_valid_x(r, tr, args.x) for r in va]
            axes[1].plot(xs, [r["dev"]["wer"] for r in va], marker="o", label=name)
            axes[2].plot(xs, [r["dev"]["cer"] for r in va], marker="o", label=name)
            for ax, n in zip(axes[3:], extra_names):
                pts = [(x, r[n]["wer"]) for x, r in zip(xs, va) if n in r]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name)
        last_t = tr[-1] if tr else {}
        last_v = va[-1] if va else {}
        print(f"{name:16s} {last_t.get('step', 0):7d} {last_t.get('cpu_h', 0):7.2f} {last_t.get('wall_h', 0):7.2f} "
              f"{last_t.get('audio_h', 0):8.1f} {last_t.get('loss', float('nan')):7.3f} "
              f"{last_v.get('dev', {}).get('wer', float('nan')):8.3f} {last_v.get('dev', {}).get('cer', float('nan')):8.3f} "
              + " ".join(f"{last_v.get(n, {}).get('wer', float('nan')):14.3f}" for n in extra_names))
    titles = ["train loss / token", "dev WER (greedy)", "dev CER (greedy)"] + [f"{n} WER" for n in extra_names]
    for ax, t in zip(axes, titles):
        ax.set_title(t)
        ax.set_xlabel(XLABEL[args.x])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


def _valid_x(rec: dict, train_recs: list, key: str) -> float:
    """A validation record's x: its own value when it has one, else the training records'
    value interpolated at its step (validation records of older logs carry no audio_h, and
    the oldest no cpu_h), never another quantity under the wrong label."""
    if key in rec:
        return rec[key]
    pts = [(r["step"], r[key]) for r in train_recs if key in r]
    if not pts:
        raise SystemExit(f"plot_training: the log has no {key!r} to place validations by")
    steps, vals = zip(*pts)
    return float(np.interp(rec["step"], steps, vals))


if __name__ == "__main__":
    raise SystemExit(main())
