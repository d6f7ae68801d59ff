"""Capacity benchmark for ``asr serve``: N concurrent real-time streams of real speech.

For each N in ``--streams``, N clients on ONE asyncio loop each open ``/asr`` and send speech
files (joined, from ``--audio``) in 100 ms chunks at real-time pace for ``--seconds``, then
``end``. The server is ``asr serve`` (``--processes``: that many server processes under a
supervisor) in processes of its own (or ``--url`` + ``--server-pid``), so its CPU (cores used)
and memory are read from ``/proc``, apart from the client's: CPU and RSS summed over the server
process and all its descendants (children that exited count through their parent's ``cutime``),
and PSS beside RSS (a page shared by several processes counts once). Reported per N:

* partial latency p50/p95/p99: a partial says how much audio it covers (``end``); its latency
  is its arrival time minus the time the client sent the chunk that completed that audio
  (including the 15 ms a 25 ms frame reaches past its 10 ms hop);
* final latency p50/p95: from sending ``end`` to the final result;
* server cores, CPU per stream-second (server CPU / N, all streams being real-time) and its ratio
  to the model's arithmetic per stream-second (``streaming/capacity.py``) at the fp32 GEMM rate
  of one core of this machine, measured in the same run (1 thread, 384 x 1152 x 64 products,
  the shape of a batched GRU step);
* RSS and PSS, client cores, errors (error events, refusals, closes other than
  1000, missing ``done``, server ``asr_errors_total``), and leaked streams after the clients
  are gone (``asr_active_streams`` / ``asr_scheduler_streams`` of ``/metrics``);

then the largest N with p95 partial latency <= ``--target-ms`` and no errors. ``--int8`` runs
the same sweep against an int8 server, side by side. ``--churn MINUTES`` then keeps ~80 %
of that N connected for MINUTES: each client streams 2-15 s and leaves (one in seven
drops the connection without ``end``), a new one takes its place; reported: sessions, RSS
after warm-up (first minute) and its drift to the end, errors, leaked streams.

Usage (measure on an otherwise idle machine)::

    python tools/bench_server.py --streams 50,100,150,200,250 --seconds 30 --int8
    python tools/bench_server.py --streams 200,250,300 --seconds 30 --processes 2
    python tools/bench_server.py --streams 200 --churn 10 --audio DATA/real/real_dev.jsonl
    python tools/bench_server.py --url ws://127.0.0.1:2700/asr --server-pid 1234 --streams 100

``--audio``: WAV/FLAC files, directories of them, or JSON-lines manifests (``audio`` paths
relative to the manifest); default: the repository's test speech. Everything is resampled
to 16 kHz and cut into chunks before any client starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_clients import CHUNK_S, Tally, audio_paths, load_chunks, session  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


# ---- the server process --------------------------------------------------------------------
class Server:
    """``asr serve`` in a child process on a free port (or an already running one)."""

    def __init__(self, args, int8: bool):
        self.proc = None
        if args.url:
            self.url, self.pid = args.url, args.server_pid
            return
        cmd = [sys.executable, "-m", "asr", "serve", "--model", args.model, "--port", "0", "--no-web",
               "--max-connections", str(max(args.streams + [args.churn_streams or 0]) + 50), "--idle-timeout", "600",
               *(["--processes", str(args.processes)] if args.processes is not None else []), *args.server_arg]
        if int8:
            cmd.append("--int8")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (ws://\S+/asr)", line)
        if not m:
            raise SystemExit(f"asr serve did not start: {line!r}")
        self.url, self.pid, self.banner = m.group(1), self.proc.pid, line.strip()

    @property
    def metrics_url(self) -> str:
        return self.url.replace("ws://", "http://").rsplit("/", 1)[0] + "/metrics"

    def metrics(self) -> dict:
        text = urllib.request.urlopen(self.metrics_url, timeout=30).read().decode()
        return {m.group(1): float(m.group(3)) for m in
                (re.match(r"^([a-z_]+(\{[^}]*\})?) ([0-9.e+-]+)$", line) for line in text.splitlines()) if m}

    def cpu_s(self) -> float:
        """CPU seconds of the server so far: its processes' own and their exited children's."""
        return sum((f[11] + f[12] + f[13] + f[14]) / CLK for f in _stats(process_tree(self.pid)).values()) \
            if self.pid else float("nan")

    def rss_mb(self) -> float:
        return sum(_kb(f"/proc/{p}/status", "VmRSS") for p in process_tree(self.pid)) / 1024 if self.pid else float("nan")

    def pss_mb(self) -> float:
        return sum(_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in process_tree(self.pid)) / 1024 if self.pid else float("nan")

    async def wait_idle(self, timeout: float = 60.0) -> dict:
        t = time.monotonic()
        while True:
            m = await asyncio.to_thread(self.metrics)
            if m.get("asr_active_connections", 0) == 0 or time.monotonic() - t > timeout:
                return m
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)


def _stats(pids) -> dict:
    """pid -> the numbers of /proc/PID/stat after the command name (index 1: parent pid,
    11-14: utime, stime, cutime, cstime in clock ticks), for the processes still there."""
    out = {}
    for pid in pids:
        try:
            out[pid] = [int(x) if x.lstrip("-").isdigit() else 0
                        for x in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()]
        except (OSError, IndexError):
            pass  # exited meanwhile
    return out


def process_tree(pid: int) -> List[int]:
    """``pid`` and all its descendants (a supervisor and its server processes)."""
    children: dict = {}
    for p, f in _stats(int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()).items():
        children.setdefault(f[1], []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _kb(path: str, key: str) -> int:
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", Path(path).read_text(), re.M)
    except OSError:
        return 0  # exited meanwhile
    return int(m.group(1)) if m else 0


# ---- runs ----------------------------------------------------------------------------------
def pct(xs: List[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def server_errors(before: dict, after: dict) -> float:
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith("asr_errors_total"))


async def measure(srv: Server, n: int, seconds: float, ring: List[bytes]) -> dict:
    """One point of the sweep: n clients, started over one chunk interval, for ``seconds``."""
    tally = Tally()
    rng = random.Random(n)
    before = await asyncio.to_thread(srv.metrics)
    n_chunks = int(seconds / CHUNK_S)

    async def client(i: int):
        await asyncio.sleep(CHUNK_S * i / n)  # phases spread over one chunk, like independent sources
        await session(srv.url, ring, rng.randrange(len(ring)), n_chunks, tally)

    cpu0, c0, t0 = srv.cpu_s(), time.process_time(), time.monotonic()
    await asyncio.gather(*(client(i) for i in range(n)))
    wall = time.monotonic() - t0
    cpu, ccpu, rss, pss = srv.cpu_s() - cpu0, time.process_time() - c0, srv.rss_mb(), srv.pss_mb()
    after = await srv.wait_idle()
    errors = len(tally.errors) + server_errors(before, after)
    return {"streams": n, "partial_p50": pct(tally.partial_ms, 50), "partial_p95": pct(tally.partial_ms, 95),
            "partial_p99": pct(tally.partial_ms, 99), "final_p50": pct(tally.final_ms, 50),
            "final_p95": pct(tally.final_ms, 95), "server_cores": cpu / wall, "server_rss_mb": rss, "server_pss_mb": pss,
            "client_cores": ccpu / wall, "partials": len(tally.partial_ms), "errors": errors,
            "leaked": after.get("asr_active_streams", 0) + after.get("asr_scheduler_streams", 0),
            "error_kinds": sorted(set(tally.errors))[:5]}


async def churn(srv: Server, n: int, minutes: float, ring: List[bytes], warmup_s: float = 60.0) -> dict:
    """n clients at all times for ``minutes``; RSS sampled every 5 s."""
    tally, rng = Tally(), random.Random(1)
    before = await asyncio.to_thread(srv.metrics)
    t_stop = time.monotonic() + 60 * minutes
    rss: List[tuple] = []

    async def client(i: int):
        await asyncio.sleep(CHUNK_S * i / n)
        while time.monotonic() < t_stop:
            k = rng.randrange(20, 150)
            await session(srv.url, ring, rng.randrange(len(ring)), k, tally,
                          abort_after=rng.randrange(1, k) if rng.random() < 1 / 7 else None)

    async def sample():
        t0 = time.monotonic()
        while time.monotonic() < t_stop:
            rss.append((time.monotonic() - t0, srv.rss_mb()))
            await asyncio.sleep(5.0)

    cpu0, c0, t0 = srv.cpu_s(), time.process_time(), time.monotonic()
    await asyncio.gather(sample(), *(client(i) for i in range(n)))
    wall = time.monotonic() - t0
    after = await srv.wait_idle()
    warm = [r for t, r in rss if t >= min(warmup_s, 0.2 * 60 * minutes)] or [r for _, r in rss]
    return {"streams": n, "minutes": minutes, "sessions": tally.sessions, "aborted": tally.aborted,
            "partial_p95": pct(tally.partial_ms, 95), "final_p95": pct(tally.final_ms, 95),
            "server_cores": (srv.cpu_s() - cpu0) / wall, "client_cores": (time.process_time() - c0) / wall,
            "rss_warm_mb": warm[0], "rss_end_mb": warm[-1], "rss_max_mb": max(warm),
            "rss_drift_pct": 100 * (warm[-1] - warm[0]) / warm[0],
            "errors": len(tally.errors) + server_errors(before, after), "error_kinds": sorted(set(tally.errors))[:5],
            "leaked": after.get("asr_active_streams", 0) + after.get("asr_scheduler_streams", 0),
            "open_connections_after": after.get("asr_active_connections", 0)}


# ---- report --------------------------------------------------------------------------------
def gemm_gflops(seconds: float = 2.0) -> float:
    """fp32 GEMM rate of one thread here, GFLOP/s: (64 x 384) @ (384 x 1152) products, the shape of
    one GRU layer's step for a batch of 64 streams (the best of three timings)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(64, 384), torch.randn(384, 1152)
        best = 0.0
        for _ in range(3):
            n, t0 = 0, time.process_time()
            while time.process_time() - t0 < seconds / 3:
                torch.mm(a, b)
                n += 1
            best = max(best, n * 2 * 64 * 384 * 1152 / (time.process_time() - t0) / 1e9)
        return best
    finally:
        torch.set_num_threads(threads)


def stream_cost_ms(model: str, gflops: float) -> float:
    """The model's arithmetic per stream-second at ``gflops``, in ms of one core."""
    from asr.checkpoint import load_model
    from streaming.capacity import stream_gflops

    rec = load_model(model)
    return 1e3 * stream_gflops(rec.model.cfg, rec.features.frame_shift_s) / gflops


def table(rows: List[dict], target_ms: float, flop_ms: float = float("nan")) -> str:
    head = ("model", "N", "partial p50/p95/p99 ms", "final p50/p95 ms", "server cores", "CPU ms per stream-s (x FLOP cost)",
            "server RSS / PSS MB",
            "client cores", "partials", "errors", "leaked")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['streams']} | {r['partial_p50']:.0f} / {r['partial_p95']:.0f} / "
                     f"{r['partial_p99']:.0f} | {r['final_p50']:.0f} / {r['final_p95']:.0f} | {r['server_cores']:.2f} | "
                     f"{1e3 * r['server_cores'] / r['streams']:.1f} ({1e3 * r['server_cores'] / r['streams'] / flop_ms:.1f}x) | "
                     f"{r['server_rss_mb']:.0f} / {r['server_pss_mb']:.0f} | {r['client_cores']:.2f} | {r['partials']} | {r['errors']:.0f} | "
                     f"{r['leaked']:.0f} |")
    for model in dict.fromkeys(r["model"] for r in rows):
        ok = [r["streams"] for r in rows if r["model"] == model and r["partial_p95"] <= target_ms and not r["errors"]]
        lines.append(f"{model}: largest N with p95 partial latency <= {target_ms:g} ms and no errors: "
                     f"{max(ok) if ok else 'none'}")
    lines.append(f"model arithmetic per stream-second: {flop_ms:.2f} ms of one core (fp32 GEMM here)")
    return "\n".join(lines)


def derived_limit(model: str) -> str:
    """The connection limit ``asr serve`` derives for this model on this machine."""
    from asr.checkpoint import load_model
    from streaming.capacity import default_max_connections
    from streaming.scheduler import default_workers

    return f"{default_max_connections(load_model(model), default_workers())} ({default_workers()} cores)"


def run_variant(args, int8: bool, ring: List[bytes], rows: List[dict]) -> Optional[Server]:
    """The sweep against one server (float or int8); the server is returned still running
    when a churn run follows on it."""
    srv = Server(args, int8)
    name = "int8" if int8 else "float"
    try:
        if srv.proc is not None:
            print(f"# {name}: {srv.banner}", file=sys.stderr, flush=True)
        asyncio.run(measure(srv, min(10, max(args.streams)), min(5.0, args.seconds), ring))  # warm-up, not reported
        for n in args.streams:
            r = asyncio.run(measure(srv, n, args.seconds, ring))
            r["model"] = name
            rows.append(r)
            print(f"# {name} N={n}: p95 {r['partial_p95']:.0f} ms, server {r['server_cores']:.2f} cores, "
                  f"errors {r['errors']:.0f} {r['error_kinds']}", file=sys.stderr, flush=True)
    except BaseException:
        srv.stop()
        raise
    if args.churn and not int8:
        return srv
    srv.stop()
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="50,100,150,200,250", help="comma-separated N (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=30.0, help="audio per client per N, s (default: %(default)s)")
    p.add_argument("--audio", nargs="+", default=[str(ROOT / "tests" / "fixtures")],
                   help="files, directories or JSON-lines manifests of speech (default: tests/fixtures)")
    p.add_argument("--model", default="default", help="model of the server started here (default: %(default)s)")
    p.add_argument("--int8", action="store_true", help="also run the sweep with --int8, side by side")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="asr serve --processes of the server started here (0: one per core; default: the server's default, one per core on Linux)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for asr serve, repeatable (e.g. --server-arg=--workers=2)")
    p.add_argument("--url", help="benchmark a running server (ws://HOST:PORT/asr) instead of starting one")
    p.add_argument("--server-pid", type=int, help="with --url: its process id (with --processes, the supervisor's), "
                   "for CPU and memory, summed over it and its descendants")
    p.add_argument("--target-ms", type=float, default=150.0, help="p95 partial latency target (default: %(default)s)")
    p.add_argument("--churn", type=float, default=0.0, metavar="MINUTES", help="then a churn run of this long")
    p.add_argument("--churn-streams", type=int, help="clients in the churn run (default: 80%% of the largest N "
                   "meeting the target, or of the largest N)")
    p.add_argument("--json", help="also write every result to this file")
    args = p.parse_args(argv)
    args.streams = [int(x) for x in args.streams.split(",") if x.strip()]
    if not args.streams or min(args.streams) < 1 or args.seconds < 1:
        p.error("--streams must list positive numbers and --seconds be at least 1")
    if args.url and (args.int8 or args.processes is not None):
        p.error("--int8 and --processes start a server of their own; not with --url")

    ring = load_chunks(audio_paths(args.audio))
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"# {len(ring) * CHUNK_S:.0f} s of audio in the ring; {os.cpu_count()} CPUs; load average {load} "
          "(measure on an idle machine)", file=sys.stderr, flush=True)
    rows: List[dict] = []
    srv = run_variant(args, False, ring, rows)
    if args.int8:
        run_variant(args, True, ring, rows)
    gflops = gemm_gflops()
    flop_ms = stream_cost_ms(args.model, gflops)
    print(f"# fp32 GEMM on one thread: {gflops:.1f} GFLOP/s", file=sys.stderr)
    print(table(rows, args.target_ms, flop_ms))
    result = {"sweep": rows}
    if srv is not None:
        try:
            ok = [r["streams"] for r in rows if r["model"] == "float" and r["partial_p95"] <= args.target_ms
                  and not r["errors"]]
            n = args.churn_streams or max(1, int(0.8 * (max(ok) if ok else max(args.streams))))
            c = asyncio.run(churn(srv, n, args.churn, ring))
        finally:
            srv.stop()
        result["churn"] = c
        print(f"\nchurn, float, {c['streams']} clients for {c['minutes']:g} min: {c['sessions']} sessions "
              f"({c['aborted']} dropped without end); p95 partial {c['partial_p95']:.0f} ms, final {c['final_p95']:.0f} ms; "
              f"server {c['server_cores']:.2f} cores, client {c['client_cores']:.2f}; RSS after warm-up "
              f"{c['rss_warm_mb']:.0f} MB -> end {c['rss_end_mb']:.0f} MB (drift {c['rss_drift_pct']:+.1f} %, max "
              f"{c['rss_max_mb']:.0f}); errors {c['errors']:.0f} {c['error_kinds']}; leaked streams {c['leaked']:.0f}; "
              f"connections open after {c['open_connections_after']:.0f}")
    if not args.url:
        print(f"derived default connection limit of asr serve here: {derived_limit(args.model)}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
