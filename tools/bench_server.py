"""Load benchmark for ``asr serve``: N concurrent clients streaming in real time.

Reports how long each client waits for its last final after sending ``end`` (the latency a
user feels at the end of an utterance), partial-update rates, and the server's batch sizes and
step times (from ``/metrics``). Traffic goes to loopback only; the run is bounded by
``--clients`` x ``--seconds``.

Usage::

    python tools/bench_server.py --clients 50 --seconds 5                  # in-process server, random
                                                                          # weights of the default size
    python tools/bench_server.py --model exp/ckpt.pt --clients 100 --audio speech.wav
    python tools/bench_server.py --url ws://127.0.0.1:2700/asr --clients 20  # a running server

With no ``--model`` and no ``--url`` the model has random weights (``ModelConfig()`` sizes):
the text is meaningless but the compute, and so the load, is that of a real model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streaming.client import file_chunks, run_session  # noqa: E402


def synthetic_audio(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Amplitude-modulated harmonics + noise: speech-like energy, different per client."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 110 + 40 * rng.random() + 25 * np.sin(2 * np.pi * 0.6 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 10))
    env = (0.5 + 0.5 * np.sin(2 * np.pi * (2.5 + rng.random()) * t)) ** 2
    return (0.2 * env * voiced + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def random_recognizer():
    import torch

    from asr.checkpoint import Recognizer
    from asr.features import FeatureConfig
    from asr.model import CTCModel, ModelConfig
    from asr.tokenizer import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer()
    return Recognizer(CTCModel(ModelConfig(vocab_size=tok.vocab_size)), tok, FeatureConfig(), name="random-default-size")


def scrape(metrics_url: str) -> dict:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


async def one_client(url, wave, sr, chunk_s, realtime):
    t_end = None
    stamps = []

    def on_event(ev):
        stamps.append((time.monotonic(), ev["type"]))

    async def chunks():
        nonlocal t_end
        async for c in file_chunks(wave, sr, chunk_s, realtime):
            yield c
        t_end = time.monotonic()

    t0 = time.monotonic()
    events = await run_session(url, chunks(), sr, on_event=on_event)
    t_final = max(t for t, k in stamps if k == "final")
    partials = sum(1 for _, k in stamps if k == "partial")
    return {"final_after_end": t_final - t_end, "wall": time.monotonic() - t0, "partials": partials,
            "text": " ".join(e["text"] for e in events if e["type"] == "final" and e["text"])}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def bench(url, args, wave_for):
    tasks = [one_client(url, wave_for(i), args.rate, args.chunk_ms / 1000, not args.fast) for i in range(args.clients)]
    t0 = time.monotonic()
    results = await asyncio.gather(*tasks)
    return results, time.monotonic() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="benchmark a running server (ws://HOST:PORT/asr); default: start one in-process")
    p.add_argument("--model", help="checkpoint for the in-process server (default: random weights, default size)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=5.0, help="audio per client (synthetic), s")
    p.add_argument("--audio", help="a file every client sends instead of synthetic audio")
    p.add_argument("--rate", type=int, default=16000, help="sample rate of synthetic audio, Hz")
    p.add_argument("--chunk-ms", type=float, default=100.0)
    p.add_argument("--fast", action="store_true", help="send as fast as possible instead of in real time")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the in-process server")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    if args.clients < 1 or args.clients > 1000 or args.seconds <= 0:
        p.error("--clients must be 1..1000 and --seconds positive")

    if args.audio:
        from asr.audio import read_audio

        wav, args.rate = read_audio(args.audio)
        wave_for = lambda i: wav  # noqa: E731
    else:
        wave_for = lambda i: synthetic_audio(args.seconds, args.rate, seed=i)  # noqa: E731

    srv = None
    url = args.url
    if url is None:
        import torch

        from asr.checkpoint import load_model
        from streaming.server import BackgroundServer, ServerConfig

        torch.set_num_threads(args.threads)
        rec = load_model(args.model) if args.model else random_recognizer()
        srv = BackgroundServer(rec, ServerConfig(port=0, max_connections=max(100, args.clients + 1)))
        url = srv.url + "/asr"
    metrics_url = url.replace("wss://", "https://").replace("ws://", "http://").rsplit("/", 1)[0] + "/metrics"
    try:
        before = scrape(metrics_url)
        results, wall = asyncio.run(bench(url, args, wave_for))
        after = scrape(metrics_url)
    finally:
        if srv is not None:
            srv.stop()

    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    lat = [r["final_after_end"] for r in results]
    audio_s = sum(len(wave_for(i)) for i in range(args.clients)) / args.rate
    steps = d.get("asr_batch_size_count", 0)
    summary = {
        "clients": args.clients, "audio_s_per_client": round(audio_s / args.clients, 2),
        "realtime": not args.fast, "wall_s": round(wall, 2),
        "final_after_end_s": {"p50": round(pct(lat, 0.5), 3), "p90": round(pct(lat, 0.9), 3), "max": round(max(lat), 3)},
        "partials_per_client": round(statistics.mean(r["partials"] for r in results), 1),
        "model_steps": int(steps),
        "mean_batch": round(d.get("asr_batch_size_sum", 0) / steps, 1) if steps else 0,
        "mean_step_ms": round(1000 * d.get("asr_step_seconds_sum", 0) / steps, 1) if steps else 0,
        "server_compute_share": round(d.get("asr_step_seconds_sum", 0) / wall, 3),
        "mean_event_latency_ms": round(1000 * d.get("asr_result_latency_seconds_sum", 0)
                                       / max(1, d.get("asr_result_latency_seconds_count", 0)), 1),
        "errors": {k: v for k, v in d.items() if k.startswith("asr_errors_total") and v},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:24s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
