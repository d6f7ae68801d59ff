#!/usr/bin/env python3
"""Real-time factor of the streaming path, single stream, side by side.

Usage:
    python tools/bench_rtf.py                         # random ~7M-parameter GRU model, 1 thread
    python tools/bench_rtf.py --model default         # a trained checkpoint / bundled model
    python tools/bench_rtf.py --chunks-ms 40 160 1000 --seconds 20 --threads 1
    python tools/bench_rtf.py --model default --int8  # the float model and its int8 copy side by side

For each chunk size it feeds the same audio through a fresh ``Stream`` chunk by chunk
(``accept_waveform`` + ``partial()`` after every chunk, as a live client would see),
then ``finish()``; RTF = processing time / audio duration (best of ``--repeats``).
With no ``--model`` it also times an LSTM of equal parameter count, so the table
compares cells too; ``--int8`` adds an int8 copy of every model (``Recognizer.int8()``).
Machines here are shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from asr.stream import feed_chunks


def random_recognizer(rnn_type: str, hidden: int, layers: int = 4, vocab: int = 256):
    from asr.checkpoint import Recognizer
    from asr.features import FeatureConfig
    from asr.model import CTCModel, ModelConfig
    from asr.tokenizer import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer()
    model = CTCModel(ModelConfig(vocab_size=vocab, rnn_type=rnn_type, rnn_hidden=hidden, rnn_layers=layers))
    # the tokenizer only names outputs; a char tokenizer with a larger output layer is fine for timing
    tok.pieces = tok.pieces + [f"x{i}" for i in range(vocab - len(tok.pieces))]
    return Recognizer(model, tok, FeatureConfig(), name=f"random-{rnn_type}-{layers}x{hidden}")


def test_audio(seconds: float, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    env = (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    return (0.2 * env * np.sin(2 * np.pi * 140 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def time_stream(rec, wave: np.ndarray, chunk: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        feed_chunks(rec.stream(16000), wave, chunk, lambda st: st.partial()).finish()
        best = min(best, time.perf_counter() - t0)
    return best / (len(wave) / 16000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint path or bundled name (default: random ~7M GRU vs LSTM)")
    ap.add_argument("--chunks-ms", type=float, nargs="+", default=[40, 160, 640, 0],
                    help="chunk sizes in ms; 0 = whole file (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=30.0, help="audio length (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--int8", action="store_true", help="also time an int8-quantised copy of each model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.model:
        from asr.checkpoint import load_model

        recs = [load_model(args.model)]
    else:
        # 4 x 512 GRU ~ 6.8M parameters; LSTM of equal size: 4 x 444 (4 gates vs 3)
        recs = [random_recognizer("gru", 512), random_recognizer("lstm", 444)]
    if args.int8:
        recs = [r for rec in recs for r in (rec, rec.int8())]
    wave = test_audio(args.seconds)
    print(f"single-stream streaming RTF, {args.seconds:.0f} s of audio, {args.threads} thread(s), best of {args.repeats}")
    header = f"{'model':28s} {'params':>8s} " + " ".join(
        f"{('whole' if c == 0 else f'{c:g} ms'):>10s}" for c in args.chunks_ms)
    print(header)
    print("-" * len(header))
    rows = []
    for rec in recs:
        rtfs = []
        for c in args.chunks_ms:
            chunk = len(wave) if c == 0 else max(1, int(16000 * c / 1000))
            rtfs.append(time_stream(rec, wave, chunk, args.repeats))
        rows.append(rtfs)
        print(f"{rec.name:28s} {rec.model.num_params() / 1e6:7.2f}M " + " ".join(f"{r:10.4f}" for r in rtfs))
    base = rows[0][-1]
    print("\nratio to the first model's largest chunk:")
    for rec, rtfs in zip(recs, rows):
        print(f"{rec.name:28s} {'':8s} " + " ".join(f"{r / base:10.2f}" for r in rtfs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
