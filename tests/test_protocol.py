"""streaming.protocol: pure parsing, validation and event building (no sockets)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from asr.decoding import Alternative, EndpointConfig, Result, Word
from streaming import protocol as P

DOC = Path(__file__).resolve().parents[1] / "streaming" / "PROTOCOL.md"


def code_of(fn, *args):
    with pytest.raises(P.ProtocolError) as e:
        fn(*args)
    return e.value.code


# ---- /asr client messages --------------------------------------------------------------------


def test_start_defaults():
    opts = P.parse_start(P.parse_client_message('{"type": "start"}'))
    assert opts == P.StartOptions()
    assert (opts.sample_rate, opts.format, opts.partials, opts.words) == (16000, "s16le", True, True)
    assert opts.endpoint == EndpointConfig()


def test_start_all_options():
    msg = {"type": "start", "version": "1.3", "sample_rate": 44100, "format": "f32le", "partials": False,
           "words": False, "endpoint": {"trailing_silence_s": 0.3, "max_segment_s": 5, "enabled": True}}
    opts = P.parse_start(msg)
    assert opts.sample_rate == 44100 and opts.format == "f32le" and opts.bytes_per_sample == 4
    assert not opts.partials and not opts.words
    assert opts.endpoint == EndpointConfig(0.3, 5.0, True)
    # endpoint overrides start from the server's defaults, field by field
    server_default = EndpointConfig(1.5, 30.0, True)
    assert P.parse_start({"type": "start", "endpoint": {"max_segment_s": 9}}, server_default).endpoint == EndpointConfig(1.5, 9.0, True)
    assert P.parse_start({"type": "start", "endpoint": False}, server_default).endpoint == EndpointConfig(1.5, 30.0, False)


@pytest.mark.parametrize("msg", [
    {"sample_rate": 0}, {"sample_rate": 999}, {"sample_rate": 400000}, {"sample_rate": "16000"},
    {"sample_rate": 16000.5}, {"sample_rate": True}, {"format": "mp3"}, {"format": None},
    {"partials": "yes"}, {"words": 1}, {"endpoint": "fast"}, {"endpoint": {"trailing_silence_s": -1}},
    {"endpoint": {"trailing_silence_s": float("nan")}}, {"endpoint": {"max_segment_s": 1e9}},
    {"endpoint": {"enabled": "no"}}, {"endpoint": {"silence": 1}}, {"colour": "red"},
    {"model": "/etc/passwd"}, {"n_best": 3}, {"language": "en"},
    {"nbest": 0}, {"nbest": 2.5}, {"nbest": True}, {"max_alternatives": 99}, {"nbest": 2, "max_alternatives": 3},
    {"grammar": "yes,no"}, {"grammar": []}, {"grammar": ["[unk]"]}, {"grammar": [1]}, {"grammar": ["..."]},
    {"grammar": ["w"] * 1001}, {"hotwords": "x"}, {"hotwords": []}, {"hotwords": [{"phrase": "x", "boost": 0}]},
    {"hotwords": [{"phrase": "x", "weight": 1}]}, {"hotwords": ["x"], "grammar": ["y"]},
])
def test_bad_start_options(msg):
    assert code_of(P.parse_start, {"type": "start", **msg}) == "bad_option"


def test_start_vocabulary_options():
    opts = P.parse_start({"type": "start", "grammar": ["Yes", "no", "[unk]"], "max_alternatives": 3})
    assert opts.grammar == ("Yes", "no", "[unk]") and opts.nbest == 3 and opts.hotwords is None
    assert opts.custom_decoder
    opts = P.parse_start({"type": "start", "hotwords": ["Kaldi", {"phrase": "new york", "boost": 4}], "nbest": 2})
    assert opts.hotwords == (("kaldi", None), ("new york", 4.0)) and opts.nbest == 2  # None: the decoder's default
    assert not P.parse_start({"type": "start", "nbest": 1, "grammar": None}).custom_decoder


def test_start_version():
    assert code_of(P.parse_start, {"type": "start", "version": "2.0"}) == "unsupported_version"
    assert code_of(P.parse_start, {"type": "start", "version": [1]}) == "unsupported_version"
    P.parse_start({"type": "start", "version": 1})


def test_model_option_is_refused_with_reason():
    with pytest.raises(P.ProtocolError, match="chosen when the server starts"):
        P.parse_start({"type": "start", "model": "other"})


@pytest.mark.parametrize("text,code", [
    ("not json", "bad_json"), ("", "bad_json"), ("[1, 2]", "bad_json"), ('"start"', "bad_json"),
    ("{\"type\": \"start\"", "bad_json"), ("1" * 5000, "bad_json"),
    ("{}", "bad_message"), ('{"type": 1}', "bad_message"), ('{"kind": "start"}', "bad_message"),
    ('{"type": "stop"}', "unknown_type"), ('{"type": "START"}', "unknown_type"),
])
def test_bad_client_messages(text, code):
    assert code_of(P.parse_client_message, text) == code


def test_control_messages_parse_by_value():
    for text in ['{"type":"end"}', '{ "type" : "end" }', '\n{"type": "end", "extra": 1}\n']:
        assert P.parse_client_message(text)["type"] == "end"
    assert P.parse_client_message('{"type": "reset"}')["type"] == "reset"


def test_decode_audio():
    x = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    got = P.decode_audio(x.tobytes(), "s16le")
    assert got.dtype == np.int16 and np.array_equal(got, x)
    f = np.array([0.0, 0.5, -1.0], dtype="<f4")
    assert np.array_equal(P.decode_audio(f.tobytes(), "f32le"), f)
    assert len(P.decode_audio(b"", "s16le")) == 0
    assert code_of(P.decode_audio, b"\x00\x01\x02", "s16le") == "bad_audio"
    assert code_of(P.decode_audio, b"\x00" * 6, "f32le") == "bad_audio"
    assert code_of(P.decode_audio, np.array([0.0, np.nan], "<f4").tobytes(), "f32le") == "bad_audio"
    assert code_of(P.decode_audio, np.array([np.inf], "<f4").tobytes(), "f32le") == "bad_audio"


# ---- events ---------------------------------------------------------------------------------


RES = Result("hello world", [Word("hello", 0.12, 0.5, 0.91234), Word("world", 0.6, 1.0, 0.8)], 0.0, 1.23456)


def test_events():
    opts = P.StartOptions(sample_rate=8000)
    ready = P.ready_event("abc", opts, "m")
    assert ready["type"] == "ready" and ready["session"] == "abc" and ready["sample_rate"] == 8000
    assert ready["model"] == "m" and ready["protocol"] == P.PROTOCOL_VERSION
    assert ready["endpoint"] == {"trailing_silence_s": 0.8, "max_segment_s": 20.0, "enabled": True}
    assert ready["max_message_bytes"] == P.MAX_MESSAGE_BYTES  # since 1.1: clients split audio to fit
    assert P.ready_event("abc", opts, "m", 4000)["max_message_bytes"] == 4000
    assert P.partial_event(RES) == {"type": "partial", "text": "hello world", "start": 0.0, "end": 1.235, "stable": 0}
    stable = Result("hello world", RES.words, 0.0, 1.0, stable=1)
    assert P.partial_event(stable)["stable"] == 1  # since 1.2: leading words that will not change
    assert ready["decoder"] == "greedy" and ready["nbest"] == 1
    fin = P.final_event(RES, "endpoint")
    assert fin == {"type": "final", "text": "hello world", "start": 0.0, "end": 1.235, "reason": "endpoint",
                   "words": [{"word": "hello", "start": 0.12, "end": 0.5, "conf": 0.912},
                             {"word": "world", "start": 0.6, "end": 1.0, "conf": 0.8}]}
    assert "words" not in P.final_event(RES, "end", words=False) and "alternatives" not in fin
    nb = Result("hello world", RES.words, 0.0, 1.0, alternatives=[
        Alternative("hello world", RES.words, -3.21, 0.7), Alternative("hello word", RES.words[:1], -4.0, 0.3)])
    alts = P.final_event(nb, "end")["alternatives"]
    assert [a["text"] for a in alts] == ["hello world", "hello word"] and alts[0]["confidence"] == 0.7
    assert alts[0]["score"] == -3.21 and len(alts[1]["words"]) == 1
    assert "words" not in P.final_event(nb, "end", words=False)["alternatives"][0]
    err = P.error_event(P.ProtocolError("bad_audio", "odd"))
    assert err == {"type": "error", "code": "bad_audio", "message": "odd"}
    for ev in (ready, fin, err, P.done_event()):
        json.dumps(ev)  # every event is plain JSON


def test_error_codes_have_close_codes():
    assert P.ProtocolError("too_large", "x").close_code == 1009
    assert P.ProtocolError("bad_json", "x").close_code == 1007
    assert P.ProtocolError("server_busy", "x").close_code == 1013
    assert set(P.ERRORS.values()) <= {1001, 1007, 1008, 1009, 1011, 1013}
    with pytest.raises(ValueError):
        P.ProtocolError("no_such_code", "x")


# ---- /vosk ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ['{"eof" : 1}', '{"eof": 1}', '{ "eof":1 }', '\t{"eof"\n:\n1}\n', '{"eof": true}'])
def test_vosk_eof_any_whitespace(text):
    assert P.parse_vosk_message(text, P.VoskConfig()) == ("eof", None)


def test_vosk_config():
    cfg = P.VoskConfig()
    assert cfg.sample_rate == 8000 and cfg.words
    kind, new = P.parse_vosk_message('{ "config" : { "sample_rate" : 16000.0 } }', cfg)
    assert kind == "config" and new == P.VoskConfig(16000, True)
    kind, new = P.parse_vosk_message('{"config": {"sample_rate": 44100, "words": 0, "max_alternatives": 0}}', cfg)
    assert new == P.VoskConfig(44100, False)
    kind, new = P.parse_vosk_message('{"config": {"phrase_list": ["yes", "no", "[unk]"], "max_alternatives": 3}}', cfg)
    assert new.phrase_list == ("yes", "no", "[unk]") and new.max_alternatives == 3
    _, new = P.parse_vosk_message(json.dumps({"config": {"grammar": '["one", "two"]'}}), cfg)  # vosk-api's JSON string
    assert new.phrase_list == ("one", "two")
    assert P.parse_vosk_message('{"config": {"phrase_list": []}}', cfg)[1].phrase_list is None
    assert P.parse_vosk_message('{"reset": 1}', cfg) == ("reset", None)


@pytest.mark.parametrize("text,code", [
    ('{"config": {"model": "/some/path"}}', "bad_option"),
    ('{"config": {"phrase_list": "yes"}}', "bad_option"),
    ('{"config": {"phrase_list": ["[unk]"]}}', "bad_option"),
    ('{"config": {"phrase_list": ["a"], "grammar": ["b"]}}', "bad_option"),
    ('{"config": {"max_alternatives": -1}}', "bad_option"),
    ('{"config": {"max_alternatives": 100}}', "bad_option"),
    ('{"config": {"sample_rate": 8000.5}}', "bad_option"),
    ('{"config": {"sample_rate": "8000"}}', "bad_option"),
    ('{"config": {"speed": 2}}', "bad_option"),
    ('{"config": 5}', "bad_option"),
    ('{"eof": 0}', "bad_message"),
    ('{"hello": 1}', "unknown_type"),
    ("eof", "bad_json"),
    ('["eof"]', "bad_json"),
])
def test_vosk_bad_messages(text, code):
    assert code_of(P.parse_vosk_message, text, P.VoskConfig()) == code


def test_vosk_results():
    assert P.vosk_partial(RES) == {"partial": "hello world"}
    fin = P.vosk_final(RES)
    assert fin["text"] == "hello world"
    assert [set(w) for w in fin["result"]] == [{"word", "start", "end", "conf"}] * 2
    assert P.vosk_final(RES, words=False) == {"text": "hello world"}
    # max_alternatives: Vosk's {"alternatives": [{"confidence", "result", "text"}]}, one even without n-best
    assert P.vosk_final(RES, words=False, max_alternatives=2) == {"alternatives": [{"confidence": 1.0, "text": "hello world"}]}
    nb = Result("a", [], alternatives=[Alternative("a", [], -1.0, 0.6), Alternative("b", [], -2.0, 0.3),
                                        Alternative("c", [], -3.0, 0.1)])
    alts = P.vosk_final(nb, max_alternatives=2)["alternatives"]
    assert [(a["text"], a["confidence"], a["result"]) for a in alts] == [("a", 0.6, []), ("b", 0.3, [])]


# ---- the document and the code agree ------------------------------------------------------


def test_protocol_doc_matches_code():
    doc = DOC.read_text()
    m = re.search(r"Protocol version:\s*`([0-9.]+)`", doc)
    assert m and m.group(1) == P.PROTOCOL_VERSION
    # every error code with its close code appears in the error table
    for code, close in P.ERRORS.items():
        assert re.search(rf"\|\s*`{code}`\s*\|\s*{close}\s*\|", doc), f"{code} ({close}) missing from PROTOCOL.md"
    documented = set(re.findall(r"\|\s*`([a-z_]+)`\s*\|\s*10\d\d\s*\|", doc))
    assert documented == set(P.ERRORS)
    # every start option is documented, and the defaults match
    for key in P._START_KEYS - {"type"}:
        assert f"`{key}`" in doc, key
    d = EndpointConfig()
    assert f"`trailing_silence_s` | {d.trailing_silence_s:g}" in doc
    assert f"`max_segment_s` | {d.max_segment_s:g}" in doc
