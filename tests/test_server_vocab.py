"""Per-connection runtime vocabulary through the WebSocket server: /asr grammar, hotwords, nbest and stable
partials; /vosk phrase_list and max_alternatives. Each connection's decoder is its own; finals equal
offline decoding with the same options."""

import json

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asr.decoding import EndpointConfig
from asr.stream import audio_chunks
from asr.vocab import vocabulary_decoder
from streaming.client import to_format
from streaming.server import BackgroundServer, ServerConfig

from conftest import make_recognizer, speechlike


@pytest.fixture(scope="module")
def rec():
    return make_recognizer("gru")


@pytest.fixture(scope="module")
def server(rec):  # endpointing off: one utterance per connection, comparable with offline decoding
    with BackgroundServer(rec, ServerConfig(port=0, endpoint=EndpointConfig(enabled=False))) as srv:
        yield srv


def asr_session(url, wave, **start):
    """start + 0.1 s chunks + end on /asr -> every event up to the close."""
    events = []
    with connect(url + "/asr") as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 16000, **start}))
        events.append(json.loads(ws.recv(timeout=10)))
        if events[0]["type"] == "ready":
            for piece in audio_chunks(wave, 1600):
                ws.send(to_format(piece, "s16le"))
            ws.send('{"type": "end"}')
        try:
            while True:
                events.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed:
            pass
    return events


def wire(wave):
    return np.frombuffer(to_format(wave, "s16le"), "<i2").copy()


def test_hotwords_and_nbest_final_equals_offline(server, rec):
    wave = speechlike(2.0, seed=11)
    hot = ["one", {"phrase": "two three", "boost": 3}]
    events = asr_session(server.url, wave, hotwords=hot, nbest=3)
    ready, final = events[0], [e for e in events if e["type"] == "final"][-1]
    assert ready["decoder"].startswith("prefix beam") and "2 hotwords" in ready["decoder"] and ready["nbest"] == 3
    ref = rec.transcribe(wire(wave), 16000, decoder=vocabulary_decoder(rec, hotwords=hot, nbest=3))
    assert final["text"] == ref.text
    assert final["alternatives"][0]["text"] == final["text"] and len(final["alternatives"]) <= 3
    assert sum(a["confidence"] for a in final["alternatives"]) == pytest.approx(1.0, abs=1e-3)
    assert all(p["stable"] == 0 for p in events if p["type"] == "partial")  # the final decoder may change them


def test_grammar_final_is_a_phrase(server, rec):
    phrases = ["yes", "no", "stop the music"]
    events = asr_session(server.url, speechlike(1.5, seed=12), grammar=phrases, max_alternatives=2)
    final = [e for e in events if e["type"] == "final"][-1]
    assert events[0]["decoder"].startswith("grammar (3 phrases")
    assert final["text"] in phrases and [a["text"] for a in final["alternatives"]][0] == final["text"]


def test_connections_have_their_own_decoders(server):
    plain = asr_session(server.url, speechlike(1.0, seed=13))
    assert plain[0]["decoder"] == "greedy" and plain[0]["nbest"] == 1
    assert all("alternatives" not in e for e in plain)


@pytest.mark.parametrize("start,needle", [
    ({"hotwords": ["ok"], "grammar": ["yes"]}, "cannot be combined"),
    ({"hotwords": [{"phrase": "x", "boost": 99}]}, "boost"),
    ({"grammar": ["[unk]"]}, "at least one phrase"),
    ({"nbest": 50}, "nbest"),
])
def test_bad_vocabulary_options_are_clear_errors(server, start, needle):
    events = asr_session(server.url, speechlike(0.2), **start)
    assert events[0]["type"] == "error" and events[0]["code"] == "bad_option" and needle in events[0]["message"]


def test_stable_partials_hold_through_the_server():
    """Greedy server with endpointing: each partial's stable words open every later partial of its
    utterance and its final."""
    from test_stable_partials import wordy_recognizer

    wave = np.concatenate([speechlike(1.5, seed=s) for s in (21, 22, 23)])
    with BackgroundServer(wordy_recognizer(), ServerConfig(port=0, endpoint=EndpointConfig(trailing_silence_s=0.2))) as srv:
        events = asr_session(srv.url, wave)
    utterance, saw_stable = [], False
    for ev in events:
        if ev["type"] == "partial":
            for earlier in utterance:
                assert ev["text"].split()[: earlier["stable"]] == earlier["text"].split()[: earlier["stable"]]
            utterance.append(ev)
            saw_stable |= ev["stable"] > 0
        elif ev["type"] == "final":
            for earlier in utterance:
                assert [w["word"] for w in ev["words"]][: earlier["stable"]] == earlier["text"].split()[: earlier["stable"]]
            utterance = []
    assert saw_stable


def test_vosk_phrase_list_and_alternatives(server):
    wave = to_format(speechlike(1.5, seed=14), "s16le")
    with connect(server.url + "/vosk") as ws:
        ws.send(json.dumps({"config": {"sample_rate": 16000, "phrase_list": ["yes", "no", "[unk]"],
                                       "max_alternatives": 2}}))
        for i in range(0, len(wave), 6400):
            ws.send(wave[i : i + 6400])
            assert "partial" in json.loads(ws.recv(timeout=10))  # one reply per audio message
        ws.send('{"eof": 1}')
        final = json.loads(ws.recv(timeout=10))
    assert set(final) == {"alternatives"} and 1 <= len(final["alternatives"]) <= 2
    assert all(set(a) == {"confidence", "result", "text"} for a in final["alternatives"])
    assert final["alternatives"][0]["text"] in ("yes", "no", "[unk]", "")


def test_vosk_max_alternatives_without_grammar(server):
    wave = to_format(speechlike(1.0, seed=15), "s16le")
    with connect(server.url + "/vosk") as ws:
        ws.send(json.dumps({"config": {"sample_rate": 16000, "max_alternatives": 3, "words": False}}))
        ws.send(wave)
        json.loads(ws.recv(timeout=10))
        ws.send('{"eof": 1}')
        final = json.loads(ws.recv(timeout=10))
    assert all(set(a) == {"confidence", "text"} for a in final["alternatives"])


def test_hotwords_join_the_servers_lm_beam_search(rec, tmp_path):
    """A server whose finals come from beam search with a word LM keeps the LM for a hotwords connection."""
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.beam import BeamCTCDecoder, BeamOptions
    from asr.lm import build_arpa

    build_arpa(["one two three", "two one", "three two one"], str(tmp_path / "lm.arpa"), order=2)
    lm = BeamCTCDecoder(rec.tokenizer, rec.step_s, BeamOptions(lm=str(tmp_path / "lm.arpa"), beam_size=16,
                                                               beam_size_token=None, word_score=2.0))
    cfg = ServerConfig(port=0, endpoint=EndpointConfig(enabled=False))
    wave, hot = speechlike(2.0, seed=12), ["zorp", {"phrase": "two three", "boost": 3}]
    with BackgroundServer(rec, cfg, final_decoder=lm) as srv:
        events = asr_session(srv.url, wave, hotwords=hot)
    ready, final = events[0], [e for e in events if e["type"] == "final"][-1]
    assert ready["decoder"] == lm.describe() + " + 2 hotwords"
    ref = rec.transcribe(wire(wave), 16000, decoder=vocabulary_decoder(rec, hotwords=hot, default=lm))
    assert final["text"] == ref.text and set(ref.text.split()) <= {"one", "two", "three", "zorp"}
