"""Fuzzed protocol sessions: random sequences of valid, malformed and hostile messages on /asr and
/vosk. Whatever a client sends, the server answers only with documented events, ends an error
session with a documented close code, leaks no stream, and keeps serving."""

import json
import random
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asr.checkpoint import load_model
from streaming.client import file_chunks, run_session
from streaming.server import BackgroundServer, ServerConfig

from conftest import make_recognizer, speechlike

EVENTS = {"ready", "partial", "final", "error", "done"}
CLOSE_CODES = {1000, 1007, 1008, 1009}  # streaming/PROTOCOL.md: done, bad data, policy, too large
SESSIONS = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random-gru.pt"
    make_recognizer("gru").save(path)
    cfg = ServerConfig(host="127.0.0.1", port=0, max_message_bytes=64 * 1024)
    with BackgroundServer(load_model(str(path)), cfg) as srv:
        yield srv


def _start(rng: random.Random) -> str:
    """A start message: valid, or with one option wrong in type, range or name."""
    msg = {"type": "start"}
    options = [("sample_rate", [8000, 16000, 44100, 0, -5, "16k", 1e12]), ("format", ["s16le", "f32le", "opus", 3]),
               ("grammar", [["yes", "no"], ["yes", "[unk]"], [], "yes", [1, 2]]),
               ("hotwords", [["kaldi"], [{"phrase": "new york", "boost": 3}], [{"phrase": "x", "boost": 1e9}], "x"]),
               ("nbest", [1, 3, 0, 99, "2"]), ("partials", [True, False, "yes"]), ("bogus", [1])]
    for name, values in rng.sample(options, rng.randint(0, 3)):
        msg[name] = rng.choice(values)
    return json.dumps(msg)


def _audio(rng: random.Random) -> bytes:
    """Audio: whole 16-bit samples (mostly), an odd byte count, NaN floats, or nothing."""
    n = rng.choice([0, 1, 3, 320, 1600, 3200, 7])
    if rng.random() < 0.05:
        return np.array([np.nan] * max(n // 2, 1), "<f4").tobytes()
    pcm = (np.random.default_rng(rng.randrange(1 << 30)).standard_normal(n) * 3000).astype("<i2").tobytes()
    return pcm[:-1] if pcm and rng.random() < 0.05 else pcm


def _message(rng: random.Random):
    """One message of a fuzzed session."""
    kind = rng.random()
    if kind < 0.25:
        return _start(rng)
    if kind < 0.55:
        return _audio(rng)
    if kind < 0.7:
        return json.dumps({"type": rng.choice(["end", "reset", "eof", "start", "", None, 7])})
    if kind < 0.8:
        return rng.choice(['{"type": "end"', "[]", "null", '"start"', "{}", "\u0000", "not json at all"])
    if kind < 0.9:
        return json.dumps({"eof": 1}) if rng.random() < 0.5 else json.dumps({"config": {"sample_rate": rng.choice([16000, -1, "x"])}})
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def _fuzz_session(url: str, rng: random.Random) -> tuple:
    """Send a random session; return (events received, close code or None if we hung up first)."""
    events = []
    with connect(url, max_size=None, open_timeout=10) as ws:
        try:
            if rng.random() < 0.6:  # most sessions get past the handshake, to fuzz the later states too
                ws.send(json.dumps({"type": "start", "partials": rng.random() < 0.5}) if url.endswith("/asr")
                        else json.dumps({"config": {"sample_rate": 16000}}))
            for _ in range(rng.randint(1, 12)):
                ws.send(_message(rng) if rng.random() < 0.5 else _audio(rng))
            if rng.random() < 0.7:  # else hang up without ending
                ws.send(json.dumps({"type": "end"}) if url.endswith("/asr") else json.dumps({"eof": 1}))
                while True:
                    events.append(ws.recv(timeout=20))
        except ConnectionClosed:
            pass
        return events, ws.close_code  # None: we hung up first


@pytest.mark.parametrize("endpoint", ["/asr", "/vosk"])
def test_fuzzed_sessions_get_documented_answers(server, endpoint):
    rng = random.Random(f"fuzz{endpoint}")
    closes = set()
    for _ in range(SESSIONS // 2):
        events, code = _fuzz_session(server.url + endpoint, rng)
        if code is not None:
            closes.add(code)
            assert code in CLOSE_CODES, (code, events[-3:])
        for raw in events:
            assert isinstance(raw, str), "the server sends text events only"
            e = json.loads(raw)
            if endpoint == "/asr":
                assert e["type"] in EVENTS, e
                if e["type"] == "error":
                    assert e["code"] and e["message"] and raw is events[-1], e
            else:  # Vosk: partial / result objects, or an error
                assert isinstance(e, dict) and ({"partial", "text", "result", "alternatives", "error"} & e.keys()), e
    assert closes & {1007, 1008}, "the fuzzer should have produced protocol errors"
    server.wait_idle()  # every connection's stream is gone
    metrics = urllib.request.urlopen(server.url.replace("ws://", "http://") + "/metrics").read().decode()
    assert "asr_scheduler_streams 0" in metrics and "asr_active_streams 0" in metrics
    # and the server still transcribes
    import asyncio

    wave = speechlike(0.6, seed=3)
    events = asyncio.run(run_session(server.url + "/asr", file_chunks(wave, 16000, 0.1), 16000, "s16le"))
    assert events[0]["type"] == "ready" and any(e["type"] == "final" for e in events)
