"""``asr client``: stream an audio file to ``asr serve`` and print what comes back.

Partials are rewritten in place on a terminal, finals are printed one per line;
``--json`` prints every server event as one JSON object per line instead.

Usage::

    asr client speech.wav --url ws://127.0.0.1:2700/asr             # as fast as the server goes
    asr client speech.wav --url ws://127.0.0.1:2700/asr --realtime  # paced like a live source
    asr client speech.flac --json --format f32le --chunk-ms 40

Library use (tests, ``asr mic``): :func:`run_session` sends any sequence of chunks
and returns every event; :class:`Printer` renders events.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from typing import AsyncIterable, Callable, Iterable, List, Optional, Union

import numpy as np

from asr.argtypes import positive_float
from asr.errors import CLIError

from . import protocol as P

__all__ = ["run_session", "file_chunks", "to_format", "Printer", "ServerError", "register"]

DEFAULT_URL = "ws://127.0.0.1:2700/asr"


class ServerError(Exception):
    """The server ended the session with an ``error`` event (or closed it abnormally)."""

    def __init__(self, code: str, message: str, events: Optional[list] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.events = events or []


def to_format(samples: np.ndarray, fmt: str) -> bytes:
    """PCM (int16 or float in [-1, 1]) -> bytes in the protocol format ``s16le`` / ``f32le``."""
    x = np.asarray(samples)
    if fmt == "s16le":
        if x.dtype != np.int16:
            x = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
        return x.astype("<i2", copy=False).tobytes()
    if fmt == "f32le":
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        return x.astype("<f4", copy=False).tobytes()
    raise ValueError(f"unknown format {fmt!r} (s16le or f32le)")


def file_chunks(samples: np.ndarray, sample_rate: int, chunk_s: float = 0.1, realtime: bool = False):
    """An async iterator of ``chunk_s`` pieces of ``samples``; with ``realtime``, no faster than
    they would be recorded. A bad ``chunk_s`` raises ``ValueError`` here, before any connection."""
    if not (math.isfinite(chunk_s) and chunk_s > 0):
        raise ValueError(f"chunk_s must be a positive, finite number of seconds, got {chunk_s}")
    return _file_chunks(samples, sample_rate, max(1, int(round(chunk_s * sample_rate))), realtime)


async def _file_chunks(samples: np.ndarray, sample_rate: int, step: int, realtime: bool):
    t0 = time.monotonic()
    for i in range(0, len(samples), step):
        if realtime:
            delay = t0 + i / sample_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield samples[i : i + step]


async def _aiter(chunks):
    if hasattr(chunks, "__aiter__"):
        async for c in chunks:
            yield c
    else:
        for c in chunks:
            yield c


async def run_session(
    url: str,
    chunks: Union[Iterable[np.ndarray], AsyncIterable[np.ndarray]],
    sample_rate: int,
    fmt: str = "s16le",
    *,
    partials: bool = True,
    words: bool = True,
    endpoint: Optional[dict] = None,
    token: Optional[str] = None,
    ssl=None,
    on_event: Optional[Callable[[dict], None]] = None,
    open_timeout: float = 10.0,
) -> List[dict]:
    """One ``/asr`` session: start, send ``chunks``, end; returns every event received.

    Sending and receiving run concurrently. A chunk larger than the server's message limit
    (``max_message_bytes`` of its ``ready`` event) is sent as several messages. Raises
    :class:`ServerError` on an ``error`` event or when the connection closes before ``done``;
    an exception from ``chunks`` closes the connection and is raised.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    headers = {"Authorization": f"Bearer {token}"} if token else None
    start = {"type": "start", "sample_rate": int(sample_rate), "format": fmt, "partials": partials, "words": words}
    if endpoint is not None:
        start["endpoint"] = endpoint
    events: List[dict] = []
    async with connect(url, additional_headers=headers, ssl=ssl, open_timeout=open_timeout,
                       max_size=2**22, compression=None) as ws:
        await ws.send(json.dumps(start))
        ready = json.loads(await ws.recv())
        events.append(ready)
        if on_event:
            on_event(ready)
        if ready.get("type") != "ready":
            raise ServerError(ready.get("code", "protocol"), ready.get("message", f"expected ready, got {ready}"), events)

        limit = _message_limit(ready, fmt)
        failed: List[BaseException] = []  # the audio source's exception, set before the connection closes

        async def send():
            try:
                async for c in _aiter(chunks):
                    data = to_format(c, fmt)
                    for i in range(0, len(data), limit):
                        await ws.send(data[i : i + limit])
                await ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:
                pass  # the receiver reports why
            except Exception as e:  # the audio source failed: end the session instead of waiting for the server
                failed.append(e)
                await ws.close(1011, "client error")

        sender = asyncio.create_task(send())
        try:
            async for msg in ws:
                ev = json.loads(msg)
                events.append(ev)
                if on_event:
                    on_event(ev)
        except ConnectionClosed:
            pass  # closed with an error code: the error event (or its absence) is reported below
        finally:
            sender.cancel()
        if failed:
            raise failed[0]
        err = next((e for e in events if e.get("type") == "error"), None)
        if err:
            raise ServerError(err.get("code", "error"), err.get("message", ""), events)
        if events[-1].get("type") != "done":
            raise ServerError("closed", f"connection closed before done (code {ws.close_code}: {ws.close_reason})", events)
    return events


def _message_limit(ready: dict, fmt: str) -> int:
    """Bytes per binary message: the server's limit from ``ready`` (protocol >= 1.1, else the
    default server's), rounded down to whole samples."""
    limit = ready.get("max_message_bytes")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        limit = P.MAX_MESSAGE_BYTES
    size = P.FORMATS[fmt][1]
    return max(size, limit - limit % size)


class Printer:
    """Render events: partials in place on a terminal, finals line by line, or JSON lines."""

    def __init__(self, out=None, json_lines: bool = False, tty: Optional[bool] = None):
        self.out = out or sys.stdout
        self.json = json_lines
        self.tty = self.out.isatty() if tty is None else tty
        self._partial = False  # a partial is on the current line

    def __call__(self, ev: dict) -> None:
        if self.json:
            print(json.dumps(ev), file=self.out, flush=True)
            return
        kind = ev.get("type")
        if kind == "partial" and self.tty:
            self.out.write("\r\033[K" + ev["text"])
            self.out.flush()
            self._partial = True
        elif kind == "final":
            if self._partial:
                self.out.write("\r\033[K")
                self._partial = False
            if ev["text"]:
                print(ev["text"], file=self.out, flush=True)


def _main(args) -> int:
    from asr.audio import read_audio

    samples, sr = read_audio(args.file)
    token = args.token if args.token is not None else os.environ.get("ASR_SERVER_TOKEN") or None
    ssl_ctx = None
    if args.cafile:
        import ssl

        ssl_ctx = ssl.create_default_context(cafile=args.cafile)
    printer = Printer(json_lines=args.json)
    endpoint = {"enabled": False} if args.no_endpoint else None
    try:
        asyncio.run(run_session(
            args.url, file_chunks(samples, sr, args.chunk_ms / 1000, args.realtime), sr, args.format,
            partials=not args.no_partials, words=not args.no_words, endpoint=endpoint, token=token,
            ssl=ssl_ctx, on_event=printer,
        ))
    except ServerError as e:
        raise CLIError(f"server: {e}") from None
    except Exception as e:
        from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

        if isinstance(e, InvalidStatus):
            raise CLIError(f"{args.url}: server refused the connection: HTTP {e.response.status_code} "
                           f"{e.response.body.decode(errors='replace').strip()}") from None
        if isinstance(e, (InvalidURI, WebSocketException)):
            raise CLIError(f"{args.url}: {e}") from None
        if isinstance(e, OSError):
            raise CLIError(f"{args.url}: cannot connect ({e.strerror or e})") from None
        raise
    return 0


def add_connection_args(p) -> None:
    p.add_argument("--token", default=None, help="bearer token for a server started with --token (default: $ASR_SERVER_TOKEN)")
    p.add_argument("--cafile", help="CA certificate (PEM) to trust for wss:// (e.g. a self-signed server)")
    p.add_argument("--json", action="store_true", help="print every server event as one JSON line")
    p.add_argument("--no-partials", action="store_true", help="ask for finals only")
    p.add_argument("--no-words", action="store_true", help="finals without word times")
    p.add_argument("--no-endpoint", action="store_true", help="no endpointing: one final at the end")


def register(sub) -> None:
    p = sub.add_parser(
        "client", help="stream an audio file to a running server",
        description="Stream an audio file to `asr serve` (/asr protocol) and print partial results in place "
                    "and final results line by line.",
    )
    p.add_argument("file", metavar="FILE", help="audio file (WAV, FLAC, OGG, ...; any rate, sent at its own rate)")
    p.add_argument("--url", default=DEFAULT_URL, help="server endpoint (default: %(default)s)")
    p.add_argument("--realtime", action="store_true", help="send no faster than real time, like a live source")
    p.add_argument("--chunk-ms", type=positive_float, default=100.0, metavar="N",
                   help="audio per message, ms (default: %(default)s; larger chunks are split to the server's "
                        "message limit)")
    p.add_argument("--format", choices=["s16le", "f32le"], default="s16le", help="PCM format on the wire (default: %(default)s)")
    add_connection_args(p)
    p.set_defaults(func=_main)
