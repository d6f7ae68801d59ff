"""The WebSocket protocols, as pure functions: no sockets, no event loop, no model.

Two endpoints share one engine (see ``streaming/PROTOCOL.md``, which this module
implements and whose version is :data:`PROTOCOL_VERSION`):

* ``/asr``: typed JSON events. ``start`` -> ``ready``; binary PCM; ``partial`` and
  ``final`` events; ``reset``; ``end`` -> last ``final`` + ``done``; ``error`` + close.
* ``/vosk``: the Vosk server protocol, so existing Vosk clients work unchanged:
  optional ``{"config": {...}}``, int16 audio, exactly one reply per audio message,
  ``{"eof": 1}`` -> final result.

Everything here either returns a plain value or raises :class:`ProtocolError`,
which carries the error code, a human-readable message and the WebSocket close
code the server must use. Control messages are parsed as JSON and validated
field by field; nothing is matched as a string.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Tuple, Union

import numpy as np

from asr.decoding import Alternative, EndpointConfig, Result
from asr.grammar import normalize_phrases
from asr.hotwords import Hotword, parse_hotwords
from asr.prefixbeam import MAX_NBEST
from asr.stream import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

__all__ = [
    "PROTOCOL_VERSION", "MAX_MESSAGE_BYTES", "ProtocolError", "ERRORS", "StartOptions", "FORMATS",
    "parse_json", "parse_client_message", "parse_start", "decode_audio",
    "ready_event", "partial_event", "final_event", "done_event", "error_event",
    "VoskConfig", "parse_vosk_message", "vosk_partial", "vosk_final",
]

# Bump the minor version for additions old clients can ignore, the major one for breaking changes.
PROTOCOL_VERSION = "1.2"

# the server's default limit on a binary message (asr serve --max-message-bytes); ready events
# carry the limit in effect, so clients split their audio to fit
MAX_MESSAGE_BYTES = 512 * 1024

# PCM formats: name -> (numpy dtype, bytes per sample). Little-endian, mono.
FORMATS = {"s16le": (np.dtype("<i2"), 2), "f32le": (np.dtype("<f4"), 4)}

# error code -> WebSocket close code (RFC 6455 section 7.4.1 / IANA registry)
ERRORS = {
    "bad_json": 1007,          # text message is not a JSON object
    "bad_message": 1008,       # JSON object without a string "type"
    "unknown_type": 1008,      # "type" is not one this endpoint knows
    "not_started": 1008,       # audio, "reset" or "end" before "start"
    "already_started": 1008,   # a second "start"
    "bad_option": 1008,        # a "start" / "config" option is unknown, unsupported or out of range
    "unsupported_version": 1008,  # client asks for a protocol major version this server does not speak
    "bad_audio": 1007,         # byte count not a whole number of samples, NaN/inf samples
    "too_large": 1009,         # message larger than the server's limit
    "idle_timeout": 1001,      # no message from the client for too long
    "server_busy": 1013,       # connection limit reached ("try again later")
    "shutting_down": 1001,     # server is stopping (SIGTERM)
    "internal": 1011,          # unexpected server failure
}

# per-connection option limits (seconds); the server's defaults come from EndpointConfig
_LIMITS = {"trailing_silence_s": (0.05, 30.0), "max_segment_s": (1.0, 600.0)}
MIN_RATE, MAX_RATE = MIN_SAMPLE_RATE, MAX_SAMPLE_RATE  # Hz, what asr.Stream accepts
MAX_GRAMMAR_PHRASES = 1000  # each phrase is scored on every segment: bounds a connection's decoding cost


class ProtocolError(Exception):
    """A client error; the connection ends with an ``error`` event and ``close_code``."""

    def __init__(self, code: str, message: str):
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def close_code(self) -> int:
        return ERRORS[self.code]


# ---- /asr: client -> server ------------------------------------------------------------


@dataclass(frozen=True)
class StartOptions:
    """Per-connection options of a ``start`` message (defaults in brackets in PROTOCOL.md)."""

    sample_rate: int = 16000  # Hz of the binary audio; the server resamples to the model's rate
    format: str = "s16le"  # "s16le" (int16) or "f32le" (float32 in [-1, 1]), little-endian mono
    partials: bool = True  # send "partial" events while an utterance is open
    words: bool = True  # include word times and confidences in "final" events
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    grammar: Optional[Tuple[str, ...]] = None  # phrases (and maybe "[unk]"): each final is one of them
    hotwords: Optional[Tuple[Hotword, ...]] = None  # (phrase, boost) pairs the decoder prefers
    nbest: int = 1  # alternatives per final (1: none)

    @property
    def custom_decoder(self) -> bool:
        """True when this connection needs its own final decoder."""
        return self.grammar is not None or self.hotwords is not None or self.nbest > 1

    @property
    def bytes_per_sample(self) -> int:
        return FORMATS[self.format][1]


def parse_json(text: Union[str, bytes]) -> dict:
    """A text message -> dict, or ``bad_json``."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, int too long
        raise ProtocolError("bad_json", f"control message is not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", f"control message must be a JSON object, got {type(obj).__name__}")
    return obj


def parse_client_message(text: Union[str, bytes]) -> dict:
    """A text message on ``/asr`` -> its JSON object with a known ``type``."""
    msg = parse_json(text)
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", 'control message needs a string "type"')
    if kind not in ("start", "reset", "end"):
        raise ProtocolError("unknown_type", f"unknown message type {kind!r} (expected start, reset or end)")
    return msg


def _bool(opts: dict, key: str, default: bool) -> bool:
    v = opts.get(key, default)
    if not isinstance(v, bool):
        raise ProtocolError("bad_option", f"{key!r} must be true or false, got {v!r}")
    return v


def _number(opts: dict, key: str, default: float) -> float:
    v = opts.get(key, default)
    lo, hi = _LIMITS[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ProtocolError("bad_option", f"endpoint {key!r} must be a number of seconds in [{lo}, {hi}], got {v!r}")
    return float(v)


def parse_sample_rate(v) -> int:
    """An integer rate in Hz (an integral float such as Vosk's 16000.0 is accepted)."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not MIN_RATE <= v <= MAX_RATE:
        raise ProtocolError("bad_option", f"sample_rate must be an integer in [{MIN_RATE}, {MAX_RATE}] Hz, got {v!r}")
    return v


def parse_endpoint(v, default: EndpointConfig) -> EndpointConfig:
    if v is None:
        return default
    if isinstance(v, bool):  # "endpoint": false turns endpointing off
        return EndpointConfig(default.trailing_silence_s, default.max_segment_s, v)
    if not isinstance(v, dict):
        raise ProtocolError("bad_option", f'"endpoint" must be an object or a boolean, got {v!r}')
    unknown = set(v) - {"enabled", "trailing_silence_s", "max_segment_s"}
    if unknown:
        raise ProtocolError("bad_option", f"unknown endpoint option(s): {', '.join(sorted(unknown))}")
    return EndpointConfig(
        trailing_silence_s=_number(v, "trailing_silence_s", default.trailing_silence_s),
        max_segment_s=_number(v, "max_segment_s", default.max_segment_s),
        enabled=_bool(v, "enabled", default.enabled),
    )


_START_KEYS = {"type", "version", "sample_rate", "format", "partials", "words", "endpoint", "grammar", "hotwords",
               "nbest", "max_alternatives"}
# options other servers offer that this one does not: refused, not ignored
_UNSUPPORTED = {"n_best", "language", "model"}


def parse_grammar(v) -> Tuple[str, ...]:
    """A list of phrases (``"[unk]"`` allowed) -> the phrases as given, validated; or ``bad_option``."""
    if isinstance(v, list) and len(v) > MAX_GRAMMAR_PHRASES:
        raise ProtocolError("bad_option", f"grammar: at most {MAX_GRAMMAR_PHRASES} phrases, got {len(v)}")
    try:
        normalize_phrases(v)
    except ValueError as e:
        raise ProtocolError("bad_option", f"grammar: {e}") from None
    return tuple(v)


def parse_nbest(v, key: str, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_NBEST:
        raise ProtocolError("bad_option", f"{key!r} must be an integer in [{lo}, {MAX_NBEST}], got {v!r}")
    return v


def _parse_vocabulary(msg: dict) -> dict:
    """The start message's grammar / hotwords / nbest options, validated (not yet spelled with the model's tokens)."""
    out = {}
    if "nbest" in msg and "max_alternatives" in msg and msg["nbest"] != msg["max_alternatives"]:
        raise ProtocolError("bad_option", '"nbest" and "max_alternatives" are the same option: give one')
    for key in ("nbest", "max_alternatives"):
        if key in msg:
            out["nbest"] = parse_nbest(msg[key], key)
    if msg.get("grammar") is not None:
        out["grammar"] = parse_grammar(msg["grammar"])
    if msg.get("hotwords") is not None:
        try:
            out["hotwords"] = parse_hotwords(msg["hotwords"])
        except ValueError as e:
            raise ProtocolError("bad_option", f"hotwords: {e}") from None
    if "grammar" in out and "hotwords" in out:
        raise ProtocolError("bad_option", "grammar and hotwords cannot be combined: a grammar allows only its phrases")
    return out


def parse_start(msg: dict, default_endpoint: EndpointConfig = EndpointConfig()) -> StartOptions:
    """Validate a ``start`` message -> :class:`StartOptions`."""
    version = msg.get("version", PROTOCOL_VERSION)
    if not isinstance(version, (str, int)) or str(version).split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
        raise ProtocolError("unsupported_version",
                            f"protocol version {version!r} not supported (server speaks {PROTOCOL_VERSION})")
    for key in msg:
        if key in _UNSUPPORTED:
            why = ("the model is chosen when the server starts" if key == "model"
                   else "not supported by this server's decoder")
            raise ProtocolError("bad_option", f"option {key!r}: {why}")
        if key not in _START_KEYS:
            raise ProtocolError("bad_option", f"unknown start option {key!r} (known: {', '.join(sorted(_START_KEYS - {'type'}))})")
    fmt = msg.get("format", "s16le")
    if fmt not in FORMATS:
        raise ProtocolError("bad_option", f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return StartOptions(
        sample_rate=parse_sample_rate(msg.get("sample_rate", 16000)),
        format=fmt,
        partials=_bool(msg, "partials", True),
        words=_bool(msg, "words", True),
        endpoint=parse_endpoint(msg.get("endpoint"), default_endpoint),
        **_parse_vocabulary(msg),
    )


def decode_audio(data: bytes, fmt: str = "s16le") -> np.ndarray:
    """A binary message -> 1-D samples (int16 or float32), validated."""
    dtype, width = FORMATS[fmt]
    if len(data) % width:
        raise ProtocolError("bad_audio", f"{len(data)} bytes is not a whole number of {fmt} samples ({width} bytes each)")
    samples = np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))  # a writable, native-order copy
    if fmt == "f32le" and not np.isfinite(samples).all():
        raise ProtocolError("bad_audio", "f32le audio contains NaN or infinite samples")
    return samples


# ---- /asr: server -> client ------------------------------------------------------------


def ready_event(session: str, opts: StartOptions, model: str, max_message_bytes: int = MAX_MESSAGE_BYTES,
                decoder: str = "greedy") -> dict:
    """``max_message_bytes``: the server's limit on one binary message (since protocol 1.1);
    ``decoder``: what decodes this connection's finals (since 1.2)."""
    return {
        "type": "ready", "session": session, "protocol": PROTOCOL_VERSION, "model": model,
        "sample_rate": opts.sample_rate, "format": opts.format,
        "partials": opts.partials, "words": opts.words, "endpoint": asdict(opts.endpoint),
        "max_message_bytes": max_message_bytes, "decoder": decoder, "nbest": opts.nbest,
    }


def partial_event(res: Result) -> dict:
    """``stable`` (since 1.2): how many leading words of ``text`` no later partial or final will change."""
    return {"type": "partial", "text": res.text, "start": round(res.start, 3), "end": round(res.end, 3),
            "stable": res.stable}


def final_event(res: Result, reason: str, words: bool = True) -> dict:
    """``reason``: "endpoint" (endpointing fired), "reset" (client asked), "end" (end of input).
    ``alternatives`` (since 1.2) with ``nbest`` > 1."""
    ev = {"type": "final", "text": res.text, "start": round(res.start, 3), "end": round(res.end, 3), "reason": reason}
    if words:
        ev["words"] = [w.to_dict() for w in res.words]
    if res.alternatives:
        ev["alternatives"] = [a.to_dict(words) for a in res.alternatives]
    return ev


def done_event() -> dict:
    return {"type": "done"}


def error_event(err: ProtocolError) -> dict:
    return {"type": "error", "code": err.code, "message": err.message}


# ---- /vosk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoskConfig:
    sample_rate: int = 8000  # vosk-server's default when no config is sent
    words: bool = True  # vosk-server's default: results carry per-word "result" lists
    phrase_list: Optional[Tuple[str, ...]] = None  # grammar: each result is one of these phrases (or "[unk]")
    max_alternatives: int = 0  # > 0: results are {"alternatives": [...]} lists, as Vosk's


_VOSK_CONFIG_KEYS = {"sample_rate", "words", "max_alternatives", "phrase_list", "grammar", "model", "nlsml"}


def _vosk_phrases(c: dict, cfg: VoskConfig) -> Optional[Tuple[str, ...]]:
    """``phrase_list`` (vosk-server) or ``grammar`` (a list, or vosk-api's JSON string of one)."""
    if "phrase_list" in c and "grammar" in c:
        raise ProtocolError("bad_option", "config 'phrase_list' and 'grammar' are the same option: give one")
    v = c.get("phrase_list", c.get("grammar", cfg.phrase_list))
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise ProtocolError("bad_option", "config 'grammar' must be a list of phrases or a JSON string of one") from None
    return None if v is None or v == [] else parse_grammar(v)


def parse_vosk_message(text: Union[str, bytes], cfg: VoskConfig) -> Tuple[str, Optional[VoskConfig]]:
    """A text message on ``/vosk`` -> ``("config", new_cfg)``, ``("eof", None)`` or ``("reset", None)``.

    ``{"eof" : 1}`` is recognised by value with any whitespace; options Vosk has but
    this server cannot honour (a model path, NLSML output) are refused.
    """
    msg = parse_json(text)
    if "config" in msg:
        c = msg["config"]
        if not isinstance(c, dict):
            raise ProtocolError("bad_option", '"config" must be an object')
        unknown = set(c) - _VOSK_CONFIG_KEYS
        if unknown:
            raise ProtocolError("bad_option", f"unknown config option(s): {', '.join(sorted(unknown))}")
        if "model" in c:
            raise ProtocolError("bad_option", "config 'model': the model is chosen when the server starts")
        if c.get("nlsml", False) not in (0, False):
            raise ProtocolError("bad_option", "config 'nlsml' is not supported")
        words = c.get("words", cfg.words)
        if not isinstance(words, (bool, int)):
            raise ProtocolError("bad_option", f"config 'words' must be a boolean, got {words!r}")
        rate = parse_sample_rate(c["sample_rate"]) if "sample_rate" in c else cfg.sample_rate
        alts = parse_nbest(c["max_alternatives"], "max_alternatives", 0) if "max_alternatives" in c else cfg.max_alternatives
        return "config", VoskConfig(rate, bool(words), _vosk_phrases(c, cfg), alts)
    for key in ("eof", "reset"):
        if key in msg:
            if msg[key] in (1, True):
                return key, None
            raise ProtocolError("bad_message", f'"{key}" must be 1, got {msg[key]!r}')
    raise ProtocolError("unknown_type", "expected a config, eof or reset message")


def vosk_partial(res: Result) -> dict:
    return {"partial": res.text}


def vosk_final(res: Result, words: bool = True, max_alternatives: int = 0) -> dict:
    """Vosk's result format: ``{"result": [{"conf", "end", "start", "word"}], "text"}``; with
    ``max_alternatives`` > 0, ``{"alternatives": [{"confidence", "result", "text"}, ...]}``, best first."""
    if max_alternatives > 0:
        alts = res.alternatives[:max_alternatives] or [Alternative(res.text, res.words, 0.0, 1.0)]
        out_alts = []
        for a in alts:
            d = {"confidence": round(a.confidence, 4)}
            if words:
                d["result"] = [w.to_dict() for w in a.words]
            d["text"] = a.text
            out_alts.append(d)
        return {"alternatives": out_alts}
    out = {}
    if words:
        out["result"] = [w.to_dict() for w in res.words]
    out["text"] = res.text
    return out
