"""``asr serve --processes 2``: connections spread over both server processes, ``/metrics`` of the
whole server, a killed process replaced, SIGTERM finishing every process's streams; and the
pieces (port reservation, limit shares, summed metrics) on their own."""

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from asr.checkpoint import load_model
from streaming.client import to_format
from streaming.metrics import Metrics, render
from streaming.serverproc import shares
from streaming.supervisor import reserve_port

from conftest import make_recognizer, speechlike

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 16  # all on one of two processes: probability 2 ** -15


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random-gru.pt"
    make_recognizer("gru").save(path)
    return path


class ServeProcess:
    """``asr serve --processes 2`` in a subprocess; stderr lines are collected as they come."""

    def __init__(self, ckpt):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "asr", "serve", "--model", str(ckpt), "--port", "0",
                                      "--processes", "2", "--threads", "1", "--no-web"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.stderr: "queue.Queue[str]" = queue.Queue()
        self.err_lines = []
        threading.Thread(target=lambda: [self.stderr.put(line) for line in self.proc.stderr], daemon=True).start()
        self.banner = self.proc.stdout.readline()
        assert "listening on ws://" in self.banner, self.banner + self.expect("stopped")
        self.base = self.banner.split("listening on ")[1].split("/asr")[0]

    def expect(self, text: str, timeout: float = 60) -> str:
        """Stderr up to and including the first line containing ``text``."""
        while True:
            line = self.stderr.get(timeout=timeout)
            self.err_lines.append(line)
            if text in line:
                return "".join(self.err_lines)

    def metrics(self) -> dict:
        text = urllib.request.urlopen(self.base.replace("ws://", "http://") + "/metrics", timeout=30).read().decode()
        return {m.group(1): float(m.group(2)) for m in
                (re.match(r"^(\S+) ([0-9.e+-]+)$", line) for line in text.splitlines()) if m}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def per_process(metrics: dict) -> dict:
    """{(process, pid): open connections} from ``asr_process_connections``."""
    out = {}
    for k, v in metrics.items():
        m = re.match(r'asr_process_connections\{process="(\d+)",pid="(\d+)"\}', k)
        if m:
            out[int(m.group(1)), int(m.group(2))] = v
    return out


async def open_streams(url: str, n: int):
    """n started /asr streams (``ready`` received: each is registered with its process)."""
    conns = [await connect(url) for _ in range(n)]
    for ws in conns:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "format": "s16le"}))
    for ws in conns:
        assert json.loads(await ws.recv())["type"] == "ready"
    return conns


async def finish(ws, audio: bytes, end: bool = True):
    """Send audio (and end); every event until the server closes."""
    await ws.send(audio)
    if end:
        await ws.send('{"type": "end"}')
    events = []
    try:
        async for msg in ws:
            events.append(json.loads(msg))
    except ConnectionClosed:
        pass
    return events, ws.close_code


def text_of(events):
    return " ".join(e["text"] for e in events if e["type"] == "final" and e["text"])


def test_two_processes_serve_one_port(ckpt):
    rec = load_model(str(ckpt))
    wave = speechlike(1.2, seed=5)
    audio = to_format(wave, "s16le")
    ref = rec.transcribe(np.frombuffer(audio, "<i2").astype(np.float32) / 32768).text
    assert ref
    srv = ServeProcess(ckpt)
    try:
        assert "2 processes x 1 worker(s)" in srv.banner

        async def spread_and_finish():
            conns = await open_streams(srv.base + "/asr", CLIENTS)
            m = srv.metrics()
            results = await asyncio.gather(*(finish(ws, audio) for ws in conns))
            return m, results

        m, results = asyncio.run(spread_and_finish())
        # the kernel spread the connections over both processes; /metrics counted all of them
        assert m["asr_processes"] == 2
        assert m["asr_active_streams"] == CLIENTS and m["asr_active_connections"] == CLIENTS
        assert m["asr_scheduler_streams"] == CLIENTS
        spread = per_process(m)
        assert sorted(k for k, _ in spread) == [0, 1] and all(v > 0 for v in spread.values()), spread
        assert sum(spread.values()) == CLIENTS
        assert m["asr_workers"] == 2
        for events, code in results:
            assert code == 1000 and events[-1] == {"type": "done"} and text_of(events) == ref
        # a stream is let go before its "done": none is left once every client has it
        m = srv.metrics()
        assert m["asr_active_streams"] == 0 and m["asr_scheduler_streams"] == 0
        assert m['asr_connections_total{endpoint="asr"}'] == CLIENTS
        assert m['asr_finals_total{reason="end"}'] == CLIENTS
        assert m["asr_steps_total"] >= 2 and m["asr_batch_size_count"] == m["asr_steps_total"]

        # a process that dies is reported and replaced; the server keeps its two processes
        (index, pid), = [k for k in spread if k[0] == 1]
        os.kill(pid, signal.SIGKILL)
        err = srv.expect(f"process {index} replaced")
        assert f"process {index} (pid {pid}) was killed by SIGKILL; starting a new one" in err
        m = srv.metrics()
        assert m["asr_processes"] == 2 and sorted(k for k, _ in per_process(m)) == [0, 1]
        assert (index, pid) not in per_process(m)

        # SIGTERM: every process finishes its streams (final result, done, 1001), then all exit 0
        async def drain():
            conns = await open_streams(srv.base + "/asr", CLIENTS)
            assert all(v > 0 for v in per_process(srv.metrics()).values())
            for ws in conns:
                await ws.send(audio)  # no end: the server ends the streams
            # an event on each connection: its audio has been read, so SIGTERM leaves none unread
            firsts = [json.loads(await ws.recv()) for ws in conns]
            srv.proc.send_signal(signal.SIGTERM)
            rests = await asyncio.gather(*(finish(ws, b"", end=False) for ws in conns))
            return [([f] + events, code) for f, (events, code) in zip(firsts, rests)]

        for events, code in asyncio.run(drain()):
            assert code == 1001 and events[-1] == {"type": "done"}
            assert [e["reason"] for e in events if e["type"] == "final"][-1] == "end"
            assert text_of(events) == ref
        assert srv.proc.wait(timeout=60) == 0
        err = srv.expect("stopped")
        assert "SIGTERM: finishing streams (2 processes)" in err and "with errors" not in err
        host, port = srv.base.split("//")[1].rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=2)  # nobody listens
    finally:
        srv.stop()


def test_processes_flags_checked_before_starting(ckpt, capsys, monkeypatch):
    from asr.cli import main

    def execve(*a):
        raise AssertionError("the flags should have failed before the supervisor starts")

    monkeypatch.setattr(os, "execve", execve)
    assert main(["serve", "--model", str(ckpt), "--processes", "3", "--max-connections", "2"]) == 1
    assert "--max-connections must be at least --processes (3), got 2" in capsys.readouterr().err
    assert main(["serve", "--model", str(ckpt.parent / "missing.pt"), "--processes", "2"]) == 1
    assert "error" in capsys.readouterr().err


def test_reserve_port_refuses_a_port_in_use():
    reserved = reserve_port("127.0.0.1", 0)
    try:
        port = reserved[0].getsockname()[1]
        assert port > 0
        with pytest.raises(OSError, match="address already in use"):  # not shared with a second server
            reserve_port("127.0.0.1", port)
        s = socket.socket()  # nor with anyone without SO_REUSEPORT
        with pytest.raises(OSError):
            s.bind(("127.0.0.1", port))
        s.close()
    finally:
        for s in reserved:
            s.close()


def test_limit_shares():
    assert shares(246, 2) == [123, 123] and shares(7, 3) == [3, 2, 2] and sum(shares(4096, 5)) == 4096


def test_metrics_of_processes_add_up():
    a, b = Metrics(), Metrics()
    for m, n in ((a, 2), (b, 3)):
        for _ in range(n):
            m.inc("asr_connections_total", (("endpoint", "asr"),))
            m.on_step(n, 0.01, 0.5)
    a.inc("asr_errors_total", (("code", "server_busy"),))
    gauges = lambda conns, peak: {"asr_active_connections": ("Open.", conns), "asr_peak_pending_items": ("Peak.", peak)}
    snaps = [json.loads(json.dumps(a.snapshot(gauges(1, 7), 0, 11))), b.snapshot(gauges(4, 5), 1, 12)]
    lines = set(render(snaps).splitlines())
    assert {"asr_active_connections 5", "asr_peak_pending_items 7", "asr_processes 2",
            'asr_process_connections{process="0",pid="11"} 1', 'asr_process_connections{process="1",pid="12"} 4',
            'asr_connections_total{endpoint="asr"} 5', 'asr_errors_total{code="server_busy"} 1',
            "asr_steps_total 5", "asr_audio_seconds_total 2.5", "asr_batch_size_count 5", "asr_batch_size_sum 13.000000",
            'asr_batch_size_bucket{le="2"} 2', 'asr_batch_size_bucket{le="4"} 5'} <= lines
    assert a.render(gauges(1, 7)) == render([a.snapshot(gauges(1, 7))])


def test_supervisor_imports_no_torch():
    """The supervisor (streaming.supervisor, what ``asr serve --processes N`` becomes) stays small."""
    code = "import sys, streaming.supervisor; assert 'torch' not in sys.modules and 'asr' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_server_processes_cap_malloc_arenas(monkeypatch):
    from streaming.serve import limit_malloc_arenas
    from streaming.supervisor import python_env

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert python_env()["MALLOC_ARENA_MAX"] == "2"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert python_env()["MALLOC_ARENA_MAX"] == "4"  # a user's setting wins
    if sys.platform.startswith("linux") and os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"):
        assert limit_malloc_arenas()
