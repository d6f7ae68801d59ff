#!/usr/bin/env python3
"""Training-step throughput side by side: cells, sizes, frame rates, oneDNN on/off, bf16.

    python tools/bench_train.py                    # default set of configurations, 1 thread
    python tools/bench_train.py --batch-seconds 80 --steps 4 --threads 1
    python tools/bench_train.py --only "GRU 4x512, 40 ms" # the rows whose name contains it

Each configuration runs the same random batch (log-mel features of ``--batch-seconds`` of
audio split into utterances of 2-6 s) through forward + CTC loss + backward + AdamW step. Steps
go round-robin over the configurations (one warm-up round, then ``--steps`` timed rounds), so a
change in machine load affects all alike; the table gives audio seconds trained per second of
compute (median step) and the ratio to the first row. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = [  # name, model options, oneDNN enabled, bf16 autocast (forward in bfloat16 where torch allows)
    ("GRU 4x512, 40 ms", dict(rnn_type="gru", rnn_hidden=512), True, False),
    ("GRU 4x512, 40 ms, oneDNN off", dict(rnn_type="gru", rnn_hidden=512), False, False),
    ("GRU 4x512, 40 ms, bf16 autocast", dict(rnn_type="gru", rnn_hidden=512), True, True),
    ("GRU 4x512, 60 ms", dict(rnn_type="gru", rnn_hidden=512, conv_strides=(2, 3)), True, False),
    ("GRU 4x384, 40 ms", dict(rnn_type="gru", rnn_hidden=384), True, False),
    ("LSTM 4x444, 40 ms", dict(rnn_type="lstm", rnn_hidden=444), True, False),
    ("LSTM 4x444, 40 ms, oneDNN off", dict(rnn_type="lstm", rnn_hidden=444), False, False),
    ("LSTM 4x444, 40 ms, bf16 autocast", dict(rnn_type="lstm", rnn_hidden=444), True, True),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-seconds", type=float, default=80.0, help="audio per batch (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    ap.add_argument("--vocab", type=int, default=256, help="output units (default: %(default)s)")
    ap.add_argument("--only", action="append", metavar="TEXT",
                    help="run only the configurations whose name contains TEXT (repeatable; the first row "
                         "run is the ratio's base)")
    args = ap.parse_args(argv)
    configs = [c for c in CONFIGS if not args.only or any(t in c[0] for t in args.only)]
    if not configs:
        ap.error(f"--only {args.only} matches none of: " + "; ".join(c[0] for c in CONFIGS))

    import warnings

    import torch

    from asr.model import CTCModel, ModelConfig

    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")  # from mkldnn.flags()

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    lens, total = [], 0.0
    while total < args.batch_seconds:
        d = 2.0 + 4.0 * float(torch.rand(1, generator=g))
        lens.append(int(d * 100))
        total += d
    feats = torch.randn(len(lens), max(lens), 80, generator=g)
    flens = torch.tensor(lens)
    runs = []
    for name, opts, onednn, bf16 in configs:
        torch.manual_seed(0)
        model = CTCModel(ModelConfig(vocab_size=args.vocab, n_mels=80, **opts))
        n_out = [n // model.cfg.subsampling for n in lens]
        targets = torch.randint(1, args.vocab, (len(lens), max(n_out) // 3), generator=g)
        tlens = torch.tensor([max(1, n // 3) for n in n_out])
        runs.append(dict(name=name, model=model, onednn=onednn, bf16=bf16, targets=targets, tlens=tlens, wall=[], cpu=[],
                         opt=torch.optim.AdamW(model.parameters(), lr=1e-3)))
    ctc = torch.nn.CTCLoss(zero_infinity=True, reduction="sum")

    def step(r):
        with torch.backends.mkldnn.flags(enabled=r["onednn"]):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=r["bf16"]):
                lp, olens = r["model"](feats, flens)
            loss = ctc(lp.float().transpose(0, 1), r["targets"], olens, r["tlens"])
            r["opt"].zero_grad()
            loss.backward()
            r["opt"].step()

    # round-robin: one step of every configuration per round, so drifting machine load hits all alike
    for k in range(args.steps + 1):
        for r in runs:
            t0, c0 = time.perf_counter(), time.process_time()
            step(r)
            if k:  # round 0 is warm-up
                r["wall"].append(time.perf_counter() - t0)
                r["cpu"].append(time.process_time() - c0)
        print(f"  round {k}/{args.steps} done", file=sys.stderr, flush=True)
    rows = [(r["name"], r["model"].num_params() / 1e6, total / statistics.median(r["wall"]),
             total / statistics.median(r["cpu"])) for r in runs]
    base = rows[0][3]
    print(f"\n{len(lens)} utterances, {total:.0f} s of audio per batch, median of {args.steps} round-robin steps, "
          f"{args.threads} thread(s), torch {torch.__version__}\n")
    print("| configuration | parameters (M) | audio s / wall s | audio s / CPU s | ratio (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name, p, w, c in rows:
        print(f"| {name} | {p:.2f} | {w:.1f} | {c:.1f} | {c / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
