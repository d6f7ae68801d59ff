"""WebSocket server end to end on loopback: equivalence with offline transcription, every
protocol error path, limits, auth, HTTP routes, 50 concurrent clients, Vosk clients,
backpressure, keepalive under load, and graceful SIGTERM (subprocess).

Each test builds its audio with ``speechlike`` and compares against ``rec.transcribe`` /
``Stream`` on the same samples, using a random-model checkpoint written to a temp dir.
"""

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from asr.checkpoint import load_model
from asr.decoding import EndpointConfig
from asr.stream import audio_chunks
from streaming.client import ServerError, file_chunks, run_session, to_format
from streaming.scheduler import Scheduler
from streaming.server import BackgroundServer, ServerConfig

from conftest import ShoutingGreedy, make_recognizer, speechlike

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random-gru.pt"
    make_recognizer("gru").save(path)
    return path


@pytest.fixture(scope="module")
def rec(ckpt):
    return load_model(str(ckpt))


@pytest.fixture(scope="module")
def server(rec):
    with BackgroundServer(rec, ServerConfig(host="127.0.0.1", port=0)) as srv:
        yield srv


def session(url, samples, sr, fmt="s16le", chunk_s=0.1, **kw):
    return asyncio.run(run_session(url, file_chunks(samples, sr, chunk_s), sr, fmt, **kw))


def finals(events):
    return [e for e in events if e["type"] == "final"]


def joined(events):
    return " ".join(e["text"] for e in finals(events) if e["text"])


def wire(samples, fmt):
    """The samples exactly as the server decodes them from the wire."""
    return np.frombuffer(to_format(samples, fmt), dtype="<i2" if fmt == "s16le" else "<f4").copy()


def noise(seconds, sr=16000, amp=0.1, seed=0):
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def with_pauses(sr=16000):
    """Speech-like bursts separated by noise the random model maps to blanks: endpoints fire."""
    return np.concatenate([speechlike(1.0, sr, 1), noise(1.5, sr, seed=1), speechlike(1.0, sr, 2),
                           noise(1.5, sr, seed=2), speechlike(0.8, sr, 3)])


# ---- equivalence with offline transcription ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
@pytest.mark.parametrize("sr,chunk_s", [(16000, 0.1), (8000, 0.037), (44100, 0.25)])
def test_final_text_equals_transcribe(server, rec, fmt, sr, chunk_s):
    wave = speechlike(2.0, sr, seed=sr % 97)
    ref = rec.transcribe(wire(wave, fmt), sr).text
    assert ref
    events = session(server.url + "/asr", wave, sr, fmt, chunk_s)
    ready = events[0]
    assert ready["type"] == "ready" and ready["sample_rate"] == sr and ready["format"] == fmt
    assert ready["model"] == rec.name and ready["protocol"] == "1.2" and ready["session"]
    assert events[-1] == {"type": "done"}
    assert joined(events) == ref
    fin = finals(events)[-1]
    assert fin["reason"] == "end"
    assert " ".join(w["word"] for w in fin["words"]) == fin["text"]
    assert all(0 <= w["start"] < w["end"] <= 2.0 + 1e-6 and 0 < w["conf"] <= 1 for w in fin["words"])
    parts = [e for e in events if e["type"] == "partial"]
    assert parts and all(p["text"] for p in parts)
    assert len({p["text"] for p in parts}) == len(parts)  # sent only when the text changes


def test_endpoints_split_utterances(server, rec):
    wave = with_pauses()
    ref = rec.transcribe(wire(wave, "s16le")).text
    events = session(server.url + "/asr", wave, 16000, endpoint={"trailing_silence_s": 0.5})
    assert events[0]["endpoint"] == {"trailing_silence_s": 0.5, "max_segment_s": 20.0, "enabled": True}
    fins = finals(events)
    assert [f["reason"] for f in fins][-1] == "end"
    assert sum(f["reason"] == "endpoint" for f in fins) >= 2
    # endpoints only cut the token sequence: the same characters, in order (a segment that does
    # not start with a word-start token is glued to the previous word in the whole-file text)
    assert "".join(f["text"] for f in fins).replace(" ", "") == ref.replace(" ", "")
    for a, b in zip(fins, fins[1:]):
        assert a["end"] == b["start"]  # utterances tile the stream
    for f in fins:
        assert all(f["start"] <= w["start"] < w["end"] <= f["end"] + 1e-6 for w in f["words"])
    # with endpointing off the same audio gives one final equal to the whole-file text
    events = session(server.url + "/asr", wave, 16000, endpoint=False)
    assert [f["reason"] for f in finals(events)] == ["end"] and joined(events) == ref


def test_final_decoder_decodes_the_finals(server, rec):
    """A server with a final decoder: each final is decoded again by it (here: greedy, upper-cased),
    with stream times; nothing is lost or doubled across endpoints; partials stay greedy. /asr and /vosk."""
    wave = with_pauses()
    ref = rec.transcribe(wire(wave, "s16le")).text
    with BackgroundServer(rec, ServerConfig(port=0), final_decoder=ShoutingGreedy(rec)) as srv:
        events = session(srv.url + "/asr", wave, 16000, endpoint={"trailing_silence_s": 0.5})
        with connect(srv.url + "/vosk") as ws:
            ws.send(json.dumps({"config": {"sample_rate": 16000}}))
            ws.send(to_format(wave, "s16le"))
            ws.recv()
            ws.send('{"eof": 1}')
            vosk_final = json.loads(ws.recv())
    fins = finals(events)
    assert sum(f["reason"] == "endpoint" for f in fins) >= 2 and fins[-1]["reason"] == "end"
    assert all(f["text"] == f["text"].upper() for f in fins)
    assert "".join(f["text"] for f in fins).replace(" ", "") == ref.upper().replace(" ", "")
    for a, b in zip(fins, fins[1:]):
        assert a["end"] == b["start"]
    for f in fins:
        assert " ".join(w["word"] for w in f["words"]) == f["text"]
        assert all(f["start"] <= w["start"] < w["end"] <= f["end"] + 1e-6 for w in f["words"])
    parts = [e["text"] for e in events if e["type"] == "partial"]
    assert parts and all(p == p.lower() for p in parts)
    assert vosk_final["text"] == ref.upper()


def test_options_partials_words_off(server, rec):
    wave = speechlike(1.5, seed=21)
    events = session(server.url + "/asr", wave, 16000, partials=False, words=False)
    assert [e["type"] for e in events] == ["ready", "final", "done"]
    assert "words" not in events[1]
    assert events[1]["text"] == rec.transcribe(wire(wave, "s16le")).text


def test_reset_closes_the_utterance(server, rec):
    wave = speechlike(2.0, seed=22)
    ref = rec.transcribe(wire(wave, "s16le")).text

    async def go():
        from websockets.asyncio.client import connect as aconnect

        async with aconnect(server.url + "/asr") as ws:
            await ws.send(json.dumps({"type": "start", "partials": False}))
            await ws.recv()
            await ws.send(to_format(wave[:16000], "s16le"))
            await ws.send('{"type": "reset"}')
            await ws.send(to_format(wave[16000:], "s16le"))
            await ws.send('{"type": "end"}')
            return [json.loads(m) async for m in ws]

    events = asyncio.run(go())
    fins = finals(events)
    assert [f["reason"] for f in fins] == ["reset", "end"]
    assert fins[0]["end"] == pytest.approx(1.0, abs=0.05) and fins[1]["start"] == fins[0]["end"]
    assert "".join(f["text"] for f in fins).replace(" ", "") == ref.replace(" ", "")
    assert events[-1] == {"type": "done"}


def test_client_cli_matches_transcribe_cli(server, rec, ckpt, tmp_path, capsys):
    from asr.cli import main
    from asr.transcribe import transcribe_file

    path = tmp_path / "a.wav"
    sf.write(path, speechlike(1.7, 22050, seed=23), 22050, subtype="PCM_16")
    ref = transcribe_file(rec, str(path))["text"]
    assert main(["client", str(path), "--url", server.url + "/asr"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [ref]  # not a terminal: finals only, one per line
    assert main(["client", str(path), "--url", server.url + "/asr", "--json", "--format", "f32le", "--chunk-ms", "30"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["type"] == "ready" and events[-1]["type"] == "done" and joined(events) == ref
    # --realtime paces the audio like a live source
    t = time.monotonic()
    assert main(["client", str(path), "--url", server.url + "/asr", "--realtime"]) == 0
    assert time.monotonic() - t >= 1.5 and capsys.readouterr().out.splitlines() == [ref]
    # server errors, before and after "ready", are reported with their code and message
    with pytest.raises(ServerError, match="bad_option"):
        session(server.url + "/asr", speechlike(0.2), 16000, endpoint={"trailing_silence_s": -1})
    with pytest.raises(ServerError, match="bad_audio: f32le audio contains NaN") as e:
        session(server.url + "/asr", np.full(1600, np.nan, np.float32), 16000, "f32le")
    assert [ev["type"] for ev in e.value.events] == ["ready", "error"]
    # a connection error is one line on stderr, exit status 1
    assert main(["client", str(path), "--url", "ws://127.0.0.1:1/asr"]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_client_splits_audio_to_the_server_message_limit(rec, tmp_path, capsys):
    """`asr client --chunk-ms 20000` used to send one message over the server's limit (too_large):
    chunks are split to the limit the server gives in `ready`."""
    from asr.cli import main

    path = tmp_path / "a.wav"
    wave = speechlike(1.5, seed=41)
    sf.write(path, wave, 16000, subtype="PCM_16")
    ref = rec.transcribe(wire(wave, "s16le")).text
    with BackgroundServer(rec, ServerConfig(port=0, max_message_bytes=4001)) as srv:  # 2000 s16le samples + 1 byte
        assert main(["client", str(path), "--url", srv.url + "/asr", "--chunk-ms", "20000", "--json"]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert events[0]["max_message_bytes"] == 4001 and events[-1]["type"] == "done" and joined(events) == ref
        events = session(srv.url + "/asr", wave, 16000, "f32le", chunk_s=1.5)  # 4 bytes per sample
        assert events[-1]["type"] == "done" and joined(events) == rec.transcribe(wire(wave, "f32le")).text


def test_client_message_limit_without_a_server_limit():
    from streaming import protocol as P
    from streaming.client import _message_limit

    assert _message_limit({"type": "ready"}, "s16le") == P.MAX_MESSAGE_BYTES  # a 1.0 server: its default
    assert _message_limit({"max_message_bytes": 4003}, "f32le") == 4000  # whole samples only
    assert _message_limit({"max_message_bytes": "big"}, "s16le") == P.MAX_MESSAGE_BYTES


def test_failing_audio_source_ends_the_session(server):
    """An exception from the chunks closes the connection and is raised at once, instead of the
    session waiting for the server's idle timeout (`asr client --chunk-ms inf` hung for 60 s)."""
    with pytest.raises(ValueError, match="chunk_s must be a positive, finite number"):
        file_chunks(speechlike(0.5), 16000, float("inf"))

    async def broken():
        yield speechlike(0.2)
        raise RuntimeError("microphone unplugged")

    t = time.monotonic()
    with pytest.raises(RuntimeError, match="microphone unplugged"):
        asyncio.run(run_session(server.url + "/asr", broken(), 16000))
    assert time.monotonic() - t < server.server.cfg.idle_timeout_s / 2


# ---- protocol errors ------------------------------------------------------------------------

START = json.dumps({"type": "start"})
F32 = json.dumps({"type": "start", "format": "f32le"})


def expect_error(url, messages, code, close, recv_ready=None):
    """Send ``messages``; the server must answer with error ``code`` and then close with ``close``."""
    with connect(url, max_size=None) as ws:
        events = []
        for m in messages:
            ws.send(m)
        try:
            while True:
                events.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed:
            pass
        assert ws.close_code == close, (ws.close_code, ws.close_reason, events)
    assert events[-1]["type"] == "error" and events[-1]["code"] == code, events
    assert events[-1]["message"]
    assert all(e["type"] in ("ready", "partial") for e in events[:-1])
    return events


@pytest.mark.parametrize("messages,code,close", [
    (["this is not json"], "bad_json", 1007),
    (["[1, 2, 3]"], "bad_json", 1007),
    (['{"type": 5}'], "bad_message", 1008),
    (['{"typ": "start"}'], "bad_message", 1008),
    (['{"type": "hello"}'], "unknown_type", 1008),
    ([b"\x00\x00" * 100], "not_started", 1008),
    (['{"type": "end"}'], "not_started", 1008),
    (['{"type": "reset"}'], "not_started", 1008),
    ([START, b"\x00\x01\x02"], "bad_audio", 1007),
    ([F32, b"\x00" * 6], "bad_audio", 1007),
    ([F32, np.array([0.1, np.nan], "<f4").tobytes()], "bad_audio", 1007),
    ([START, START], "already_started", 1008),
    (['{"type": "start", "sample_rate": 0}'], "bad_option", 1008),
    (['{"type": "start", "format": "opus"}'], "bad_option", 1008),
    (['{"type": "start", "hotwords": "lights"}'], "bad_option", 1008),
    (['{"type": "start", "model": "../../etc/passwd"}'], "bad_option", 1008),
    (['{"type": "start", "version": "2.0"}'], "unsupported_version", 1008),
    ([START, b"\x00" * (512 * 1024 + 2)], "too_large", 1009),
    (['{"type": "start", "pad": "' + "x" * 70000 + '"}'], "too_large", 1009),
])
def test_protocol_errors(server, messages, code, close):
    expect_error(server.url + "/asr", messages, code, close)


def test_error_after_audio_keeps_earlier_events(server):
    ok = to_format(speechlike(0.5, seed=30), "s16le")
    events = expect_error(server.url + "/asr", [START, ok, b"\x01"], "bad_audio", 1007)
    assert events[0]["type"] == "ready"


def test_message_over_hard_limit_is_cut_by_websockets(server):
    with connect(server.url + "/asr", max_size=None) as ws:
        ws.send(START)
        ws.recv()
        ws.send(b"\x00" * (2 * 512 * 1024 + 2))
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        assert ws.close_code == 1009


def test_idle_timeout_and_connection_limit(rec):
    with BackgroundServer(rec, ServerConfig(port=0, idle_timeout_s=0.5, max_connections=2)) as srv:
        url = srv.url + "/asr"
        t = time.monotonic()
        expect_error(url, [], "idle_timeout", 1001)  # its own recv timeout bounds the wait from above
        assert time.monotonic() - t > 0.4  # not before the configured timeout
        with connect(url) as a, connect(url) as b:
            for ws in (a, b):
                ws.send(START)
                assert json.loads(ws.recv(timeout=5))["type"] == "ready"
            events = expect_error(url, [], "server_busy", 1013)
            assert "try again" in events[-1]["message"]
        srv.wait_idle()  # the server has let go of both connections: their slots are free again
        events = session(url, speechlike(0.5, seed=31), 16000)
        assert events[-1]["type"] == "done"
        assert srv.server.metrics.get("asr_errors_total", (("code", "server_busy"),)) == 1


def test_shutdown_drops_silent_handshakes(rec):
    """A client that connects and never sends its HTTP request must not keep a handler task
    past shutdown (it would be destroyed pending after the loop stopped)."""
    srv = BackgroundServer(rec, ServerConfig(port=0))
    s = socket.create_connection(("127.0.0.1", srv.port))
    try:
        # the server answers a later connection only after accepting this one (accepted in order),
        # so the silent handshake's handler task is running when the server stops
        urllib.request.urlopen(srv.url.replace("ws://", "http://") + "/healthz", timeout=10).read()
        t = time.monotonic()
        srv.stop()
        # it does not wait for the handshake's open timeout (websockets' default: 10 s)
        assert time.monotonic() - t < 10
        assert not [task for task in asyncio.all_tasks(srv.loop) if not task.done()]
    finally:
        s.close()


def test_server_config_checks_itself(capsys):
    """ASRServer users get the checks of `asr serve`: a bad value fails when the config is made,
    named by its field; the command reports it under its flag, before loading any model."""
    from asr.cli import main
    from asr.errors import OptionError

    for kw in [dict(max_batch=0), dict(max_connections=-1), dict(idle_timeout_s=float("nan")), dict(port=70000),
               dict(vosk_sample_rate=100), dict(max_pending_s=0.0), dict(keyfile="key.pem"),
               dict(batch_wait_s=-0.1)]:
        with pytest.raises(OptionError, match=f"^{next(iter(kw))} "):
            ServerConfig(**kw)
    with pytest.raises(OptionError, match="^trailing_silence_s must be positive"):
        ServerConfig(endpoint=EndpointConfig(trailing_silence_s=0.0))
    for argv, message in [(["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
                          (["--idle-timeout", "-1"], "--idle-timeout must be positive, got -1.0"),
                          (["--trailing-silence", "0"], "--trailing-silence must be positive, got 0.0"),
                          (["--port", "70000"], "--port must be 0..65535, got 70000"),
                          (["--batch-wait", "2"], "--batch-wait must be 0..1 s, got 2.0"),
                          (["--vosk-sample-rate", "100"], "--vosk-sample-rate must be 1000..384000 Hz, got 100")]:
        assert main(["serve", "--model", "/nonexistent/model.pt", *argv]) == 1
        assert capsys.readouterr().err.strip() == f"asr serve: error: {message}"


def test_token_auth(rec):
    with BackgroundServer(rec, ServerConfig(port=0, token="s3cret")) as srv:
        http = srv.url.replace("ws://", "http://")
        for url in (srv.url + "/asr", srv.url + "/asr?token=wrong", srv.url + "/vosk"):
            with pytest.raises(InvalidStatus) as e:
                connect(url)
            assert e.value.response.status_code == 401
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(http + "/metrics")
        assert e.value.code == 401
        assert urllib.request.urlopen(http + "/healthz").status == 200  # health checks need no token
        wave = speechlike(0.6, seed=32)
        assert session(srv.url + "/asr", wave, 16000, token="s3cret")[-1]["type"] == "done"
        assert session(srv.url + "/asr?token=s3cret", wave, 16000)[-1]["type"] == "done"
        req = urllib.request.Request(http + "/metrics", headers={"Authorization": "Bearer s3cret"})
        assert b"asr_active_streams" in urllib.request.urlopen(req).read()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed (needed to make a test certificate)")
def test_tls(rec, tmp_path):
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with BackgroundServer(rec, ServerConfig(port=0, certfile=str(cert), keyfile=str(key))) as srv:
        assert srv.url.startswith("wss://")
        ctx = ssl.create_default_context(cafile=str(cert))
        wave = speechlike(0.8, seed=33)
        events = asyncio.run(run_session(srv.url + "/asr", file_chunks(wave, 16000), 16000, ssl=ctx))
        assert joined(events) == rec.transcribe(wire(wave, "s16le")).text
        health = urllib.request.urlopen(srv.url.replace("wss://", "https://") + "/healthz", context=ctx)
        assert json.loads(health.read())["status"] == "ok"
        with pytest.raises((OSError, InvalidMessage)):  # plain ws:// is not served on a TLS port
            connect(srv.url.replace("wss://", "ws://") + "/asr", open_timeout=3)


def test_serve_names_missing_or_bad_tls_files(ckpt, tmp_path, capsys):
    """`asr serve --certfile /nonexistent.pem` said only "[Errno 2] No such file or directory"."""
    from asr.cli import main

    missing = str(tmp_path / "nonexistent.pem")
    assert main(["serve", "--model", str(ckpt), "--port", "0", "--certfile", missing]) == 1
    err = capsys.readouterr().err
    assert err == f"asr serve: error: TLS certificate file not found: {missing}\n"
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("not a certificate\n")
    assert main(["serve", "--model", str(ckpt), "--port", "0", "--certfile", str(not_pem), "--keyfile", missing]) == 1
    assert capsys.readouterr().err == f"asr serve: error: TLS key file not found: {missing}\n"
    assert main(["serve", "--model", str(ckpt), "--port", "0", "--certfile", str(not_pem)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"asr serve: error: cannot load the TLS certificate and key from {not_pem}: ")
    assert len(err.splitlines()) == 1


def test_http_routes(server):
    http = server.url.replace("ws://", "http://")
    r = urllib.request.urlopen(http + "/healthz")
    health = json.loads(r.read())
    assert r.status == 200 and health["status"] == "ok" and health["protocol"] == "1.2"
    page = urllib.request.urlopen(http + "/")
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.read().decode()
    assert "<script" in html and "app.js" in html
    js = urllib.request.urlopen(http + "/app.js")
    assert js.headers["Content-Type"].startswith("text/javascript")
    assert b"audioWorklet" in js.read()
    for path in ("/nope", "/../server.py", "/%2e%2e/server.py", "/web/app.js", "/PROTOCOL.md"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(http + path)
        assert e.value.code == 404
    metrics = urllib.request.urlopen(http + "/metrics").read().decode()
    for name in ("asr_active_streams", "asr_audio_seconds_total", "asr_batch_size_bucket",
                 "asr_result_latency_seconds_bucket", "asr_step_seconds_count"):
        assert name in metrics


# ---- load --------------------------------------------------------------------------------------


def test_50_concurrent_clients(server, rec):
    """50 clients streaming at once, paced like live sources: each gets its own transcript."""
    n = 50
    waves = [speechlike(1.0, seed=100 + i) for i in range(n)]
    refs = [rec.transcribe(wire(w, "s16le")).text for w in waves]
    assert len(set(refs)) > n // 2  # the transcripts differ, so a mix-up would show
    steps0 = server.server.metrics.get("asr_steps_total")
    sizes0 = list(server.server.metrics.batch_size.counts)

    async def all_clients():
        return await asyncio.gather(*(
            run_session(server.url + "/asr", file_chunks(w, 16000, 0.1, realtime=True), 16000) for w in waves))

    t = time.monotonic()
    results = asyncio.run(all_clients())
    wall = time.monotonic() - t
    for events, ref in zip(results, refs):
        assert joined(events) == ref
    steps = server.server.metrics.get("asr_steps_total") - steps0
    h = server.server.metrics.batch_size
    sizes = {f"<={b:g}": c - c0 for b, c, c0 in zip(h.buckets + ["inf"], h.counts, sizes0) if c != c0}
    print(f"\n50 clients x 1.0 s in real time: {wall:.2f} s wall, {steps} model steps for {n * 11} messages, "
          f"batch sizes {sizes}")
    assert wall < 30
    assert steps < n * 10  # far fewer model steps than messages: streams are stepped together
    assert sum(c for b, c in sizes.items() if b not in ("<=1", "<=2")) > 0  # batches of more than 2 streams


def test_backpressure_bounds_queued_audio(rec):
    with BackgroundServer(rec, ServerConfig(port=0, max_pending_s=1.0)) as srv:
        wave = speechlike(20.0, seed=40)
        events = session(srv.url + "/asr", wave, 16000, chunk_s=0.1, partials=False)
        assert joined(events) == rec.transcribe(wire(wave, "s16le")).text
        assert 0 < srv.server.peak_pending_s <= 1.0 + 1e-9


def test_message_floods_are_bounded(rec, monkeypatch):
    """Messages that carry no audio (resets, empty Vosk messages) are bounded by an item count."""
    import streaming.connection

    MAX_PENDING_ITEMS = 8  # lower than the default so a flood from one client reaches it
    monkeypatch.setattr(streaming.connection, "MAX_PENDING_ITEMS", MAX_PENDING_ITEMS)
    with BackgroundServer(rec, ServerConfig(port=0)) as srv:
        n = 300

        async def go():
            from websockets.asyncio.client import connect as aconnect

            async with aconnect(srv.url + "/asr") as ws, aconnect(srv.url + "/vosk") as vs:
                await ws.send(START)
                await ws.recv()

                async def flood():
                    for _ in range(n):
                        await ws.send('{"type": "reset"}')
                        await vs.send(b"")
                    await ws.send('{"type": "end"}')
                    await vs.send('{"eof": 1}')

                sender = asyncio.create_task(flood())
                events = [json.loads(m) async for m in ws]
                replies = [json.loads(m) async for m in vs]
                await sender
                return events, replies

        events, replies = asyncio.run(go())
        assert [f["reason"] for f in finals(events)] == ["reset"] * n + ["end"]
        assert replies == [{"partial": ""}] * n + [{"result": [], "text": ""}]
        print(f"\npeak queued items {srv.server.peak_pending_items} (bound {MAX_PENDING_ITEMS})")
        assert srv.server.peak_pending_items == MAX_PENDING_ITEMS  # reached, never exceeded
        assert f"asr_peak_pending_items {MAX_PENDING_ITEMS}" in srv.server.render_metrics().splitlines()


def test_pings_answered_while_model_runs():
    """Keepalive is never starved: pings are answered while big batched steps run."""
    big = make_recognizer("gru", seed=5, hidden=384, layers=3)  # steps of ~0.1-0.3 s on this machine
    with BackgroundServer(big, ServerConfig(port=0, step_s=8.0)) as srv:
        url = srv.url + "/asr"

        async def go():
            from websockets.asyncio.client import connect as aconnect

            load = [asyncio.create_task(run_session(url, file_chunks(speechlike(24.0, seed=50 + i), 16000, 1.0), 16000,
                                                    partials=False)) for i in range(6)]
            rtts = []
            async with aconnect(url) as ws:
                while not all(t.done() for t in load):
                    t0 = time.monotonic()
                    await (await ws.ping())
                    rtts.append(time.monotonic() - t0)
                    await asyncio.sleep(0.01)
            await asyncio.gather(*load)
            return rtts

        rtts = asyncio.run(go())
        step = srv.server.metrics.step_seconds
        mean_step = step.sum / step.count
        print(f"\nping rtt max {max(rtts) * 1000:.1f} ms over {len(rtts)} pings; "
              f"{step.count} steps, mean {mean_step * 1000:.1f} ms")
        assert len(rtts) >= 3
        # on the event loop, a ping would wait for a whole step; off it, for a GIL switch at most
        assert sorted(rtts)[len(rtts) // 2] < max(0.05, mean_step / 2)


def test_scheduler_batches_and_keeps_order(rec):
    """Streams queued together are decoded in one model call; per-message jobs take one item per step."""
    outs = {}

    class Loop:  # stands in for the event loop: deliver at once
        def call_soon_threadsafe(self, fn, arg):
            fn(arg)

    batch_sizes = []
    sch = Scheduler(Loop(), max_batch=8, step_s=0.5, on_step=lambda batch, seconds, audio_s: batch_sizes.append(batch))
    waves = [speechlike(1.2, seed=60 + i) for i in range(5)]
    jobs = []
    for i, w in enumerate(waves):
        jobs.append(sch.add(rec.stream(16000), lambda o, i=i: outs.setdefault(i, []).append(o), per_message=(i == 4)))
        for piece in audio_chunks(w, 4000):
            jobs[-1].put_audio(piece)
        jobs[-1].end()
    sch.start()
    sch.stop()
    assert max(batch_sizes) == 5
    for i, w in enumerate(waves):
        o = outs[i]
        assert o[-1].done and sum(x.samples for x in o) == len(w)
        assert o[-1].finals[-1][1] == "end"
        assert jobs[i].stream.full_result().text == rec.transcribe(w).text
        if i == 4:
            assert all(x.messages == 1 for x in o)  # one message per step
        else:
            assert all(x.samples <= 8000 for x in o)  # at most step_s of audio per step


# ---- Vosk ------------------------------------------------------------------------------------


# the random model maps the 16 kHz noise gaps to blanks (endpoints fire); at 8 kHz it never emits blanks
@pytest.mark.parametrize("sr,config,endpoints", [(16000, True, True), (8000, True, False), (8000, False, False)])
def test_vosk_lockstep_client(server, rec, sr, config, endpoints):
    """vosk-server's test client: config, 0.2 s chunks each answered before the next, eof."""
    wave = to_format(with_pauses(sr), "s16le")
    ref = rec.transcribe(np.frombuffer(wave, "<i2"), sr).text
    texts = []
    with connect(server.url + "/vosk") as ws:
        if config:
            ws.send('{ "config" : { "sample_rate" : %d } }' % sr)
        step = int(sr * 0.2) * 2
        for i in range(0, len(wave), step):
            ws.send(wave[i : i + step])
            reply = json.loads(ws.recv(timeout=10))  # exactly one reply per audio message
            assert set(reply) in ({"partial"}, {"text", "result"}), reply
            if "text" in reply:
                texts.append(reply["text"])
                assert all(set(w) == {"word", "start", "end", "conf"} for w in reply["result"])
        ws.send('{"eof" : 1}')
        final = json.loads(ws.recv(timeout=10))
        assert set(final) == {"text", "result"}
        texts.append(final["text"])
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)  # nothing more: the server closes after the final result
        assert ws.close_code == 1000
    if endpoints:
        assert len(texts) >= 3  # endpoints fired mid-stream
        assert "".join(texts).replace(" ", "") == ref.replace(" ", "")
    else:
        assert texts == [ref]


def test_vosk_without_endpoints_equals_transcribe(rec):
    with BackgroundServer(rec, ServerConfig(port=0, endpoint=EndpointConfig(enabled=False))) as srv:
        wave = to_format(speechlike(1.6, 16000, seed=70), "s16le")
        with connect(srv.url + "/vosk") as ws:
            ws.send(json.dumps({"config": {"sample_rate": 16000.0, "words": False}}))
            ws.send(b"")  # an empty message is answered too
            assert json.loads(ws.recv(timeout=10)) == {"partial": ""}
            for i in range(0, len(wave), 6400):
                ws.send(wave[i : i + 6400])
                assert "partial" in json.loads(ws.recv(timeout=10))
            ws.send('{"eof": 1}')
            final = json.loads(ws.recv(timeout=10))
        assert final == {"text": rec.transcribe(np.frombuffer(wave, "<i2"), 16000).text}


@pytest.mark.parametrize("messages,close", [
    (['{"config": {"model": "/models/other"}}'], 1008),
    (['{"config": {"phrase_list": "yes"}}'], 1008),
    ([b"\x00\x00", '{"config": {"sample_rate": 16000}}'], 1008),
    (["eof"], 1007),
    ([b"\x00\x00\x00"], 1007),
])
def test_vosk_errors_close_with_reason(server, messages, close):
    with connect(server.url + "/vosk") as ws:
        for m in messages:
            ws.send(m)
        with pytest.raises(ConnectionClosed):
            while True:
                reply = json.loads(ws.recv(timeout=10))
                assert "partial" in reply  # the audio before the bad message is answered
        assert ws.close_code == close and ws.close_reason


# ---- graceful shutdown ------------------------------------------------------------------------


def test_sigterm_finishes_streams_then_exits(ckpt, rec):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "asr", "serve", "--model", str(ckpt), "--port", "0", "--threads", "1",
                             "--processes", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert "listening on ws://" in line, line + proc.stderr.read()
        base = line.split("listening on ")[1].split("/asr")[0]
        wave = speechlike(2.0, seed=80)
        vwave = to_format(wave, "s16le")
        ref = rec.transcribe(wire(wave, "s16le")).text
        with connect(base + "/asr") as ws, connect(base + "/vosk") as vs:
            ws.send(START)
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(to_format(wave, "s16le"))  # all audio, but no "end"
            vs.send('{"config": {"sample_rate": 16000}}')
            vs.send(vwave)
            assert "partial" in json.loads(vs.recv(timeout=10))  # the /vosk audio has been read
            # an event on /asr means the server has read its one audio message (a non-empty
            # transcript guarantees one before the end): SIGTERM then leaves no audio unread
            assert ref
            events = [json.loads(ws.recv(timeout=10))]
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                while True:
                    events.append(json.loads(ws.recv(timeout=15)))
            assert ws.close_code == 1001
            assert events[-1] == {"type": "done"}
            assert finals(events)[-1]["reason"] == "end"
            assert joined(events) == ref  # nothing lost: the stream was finished, not dropped
            vfinal = json.loads(vs.recv(timeout=15))
            assert vfinal["text"] == ref
        assert proc.wait(timeout=20) == 0
        assert "SIGTERM" in proc.stderr.read()
        with pytest.raises(OSError):
            connect(base + "/asr", open_timeout=2)  # no longer listening
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- asr mic (a fake sounddevice stands in for the microphone) --------------------------------


class FakeSoundDevice:
    """The parts of the sounddevice module ``asr mic`` uses; "records" ``wave`` in real blocks."""

    class PortAudioError(Exception):
        pass

    def __init__(self, wave=None, rate=16000, devices=True):
        self.wave, self.rate = wave, rate
        self.devices = [{"name": "Fake Mic", "max_input_channels": 1, "default_samplerate": float(rate)},
                        {"name": "Fake Speaker", "max_input_channels": 0, "default_samplerate": 48000.0}] if devices else []
        self.default = type("D", (), {"device": [0 if devices else -1, 1]})()
        fake = self

        class InputStream:
            def __init__(self, device, channels, samplerate, dtype, blocksize, callback, finished_callback):
                assert device == 0 and channels == 1 and samplerate == fake.rate and dtype == "int16"
                self.args = (blocksize, callback, finished_callback)

            def start(self):
                blocksize, callback, finished = self.args

                def run():
                    pcm = np.frombuffer(to_format(fake.wave, "s16le"), "<i2")
                    for i in range(0, len(pcm), blocksize):
                        callback(pcm[i : i + blocksize, None], blocksize, None, None)
                    finished()  # the device stream ends: the capture ends as on Ctrl-C

                threading.Thread(target=run, daemon=True).start()

            def stop(self):
                pass

            def close(self):
                pass

        self.InputStream = InputStream

    def query_devices(self, device=None):
        return self.devices if device is None else self.devices[device]


def test_mic_through_server_and_in_process(server, rec, ckpt, monkeypatch, capsys):
    from asr.cli import main
    import streaming.mic as mic

    wave = speechlike(1.5, seed=90)
    ref = rec.transcribe(wire(wave, "s16le")).text
    monkeypatch.setattr(mic, "_sd", lambda: FakeSoundDevice(wave))
    assert main(["mic", "--list-devices"]) == 0
    out = capsys.readouterr().out
    assert "Fake Mic" in out and "Fake Speaker" not in out
    assert main(["mic", "--url", server.url + "/asr"]) == 0
    assert capsys.readouterr().out.splitlines() == [ref]
    assert main(["mic", "--model", str(ckpt), "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["type"] == "final" and events[-1]["reason"] == "end" and joined(events) == ref
    # in-process finals by beam search (partials greedy); with --url the decoder is the server's
    if importlib.util.find_spec("flashlight") is not None:
        from asr.beam import BeamCTCDecoder, BeamOptions

        beam = rec.transcribe(wire(wave, "s16le"), decoder=BeamCTCDecoder(rec.tokenizer, rec.step_s,
                                                                            BeamOptions(beam_size_token=None))).text
        assert main(["mic", "--model", str(ckpt), "--json", "--no-endpoint", "--decoder", "beam",
                     "--beam-size-token", "0"]) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [e["type"] for e in events].count("final") == 1 and events[-1]["text"] == beam
    assert main(["mic", "--url", server.url + "/asr", "--decoder", "beam"]) == 1
    assert "the server's decoder is used" in capsys.readouterr().err


def test_mic_without_input_device(monkeypatch, capsys):
    from asr.cli import main
    import streaming.mic as mic

    monkeypatch.setattr(mic, "_sd", lambda: FakeSoundDevice(devices=False))
    assert main(["mic", "--url", "ws://127.0.0.1:1/asr"]) == 1
    assert "no audio input device found" in capsys.readouterr().err
    assert main(["mic", "--list-devices"]) == 1
    assert "no audio input devices" in capsys.readouterr().out
