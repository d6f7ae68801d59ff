"""``asr serve``: live transcription over WebSocket (protocol: ``streaming/PROTOCOL.md``).

The server is a thin adapter over :class:`streaming.Stream`:

* ``/asr`` speaks the typed JSON protocol, ``/vosk`` the Vosk server protocol; both
  are parsed and validated by the pure functions of :mod:`streaming.protocol`;
* model compute never runs on the event loop: :class:`streaming.scheduler.Scheduler`
  steps all streams with pending audio as one batch in a worker thread, so pings and
  other clients are served while it runs;
* per-connection queues are bounded: a connection whose queued audio exceeds
  ``max_pending_s`` is not read until the worker catches up (TCP backpressure);
* HTTP routes on the same port: ``/healthz`` (JSON), ``/metrics`` (Prometheus text),
  ``/`` (browser microphone page from ``streaming/web/``);
* limits: message size, connection count (refused with ``server_busy`` / close 1013),
  idle timeout; optional bearer token (header or ``?token=``) and TLS;
* SIGTERM / SIGINT: stop accepting, finish every stream with its final result, exit 0.

Usage::

    asr serve --model exp/ckpt.pt --port 2700
    asr client speech.wav --url ws://127.0.0.1:2700/asr
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Dict, Optional, Set
from urllib.parse import parse_qs, urlsplit

from asr.beam import add_decoder_arguments, check_decoder_arguments, decoder_from_arguments
from asr.checkpoint import add_int8_argument
from asr.decoding import EndpointConfig

from . import protocol as P
from .scheduler import Scheduler, StepOutput

__all__ = ["ServerConfig", "ASRServer", "BackgroundServer", "register"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class ServerConfig:
    """Server settings (``asr serve --help`` lists the matching flags)."""

    host: str = "127.0.0.1"  # interface to listen on ("0.0.0.0" for all)
    port: int = 2700  # TCP port (0: any free port; see ASRServer.port)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)  # defaults; clients may override
    max_message_bytes: int = 512 * 1024  # larger binary messages end the connection ("too_large")
    max_text_bytes: int = 64 * 1024  # larger control messages end the connection ("too_large")
    max_connections: int = 100  # further WebSocket connections get "server_busy" and close 1013
    idle_timeout_s: float = 60.0  # no client message for this long ends the connection ("idle_timeout")
    max_pending_s: float = 10.0  # queued, unanswered audio per connection before reading pauses (s)
    max_batch: int = 64  # most streams per model call
    step_s: float = 0.5  # most audio per stream per model step (endpoint check granularity), s
    vosk_sample_rate: int = 8000  # /vosk rate when the client sends no config (vosk-server's default)
    token: Optional[str] = None  # require "Authorization: Bearer TOKEN" or ?token=TOKEN on /asr, /vosk, /metrics
    certfile: Optional[str] = None  # TLS certificate chain (PEM): serve wss:// and https://
    keyfile: Optional[str] = None  # TLS private key (PEM); defaults to certfile
    ping_interval_s: Optional[float] = 20.0  # WebSocket keepalive ping interval
    ping_timeout_s: Optional[float] = 20.0  # close a connection whose pong is this late
    shutdown_timeout_s: float = 10.0  # SIGTERM: longest wait for streams to finish before closing anyway
    web: bool = True  # serve the browser page at /

    @property
    def hard_max_size(self) -> int:
        """websockets' own frame limit: bigger messages are cut off with a bare 1009 close.

        Between ``max_message_bytes`` and this, the server still reads the message and
        answers with a ``too_large`` error event first.
        """
        return 2 * max(self.max_message_bytes, self.max_text_bytes)


# ---- metrics -------------------------------------------------------------------------------


class Histogram:
    def __init__(self, name: str, help: str, buckets):
        self.name, self.help, self.buckets = name, help, list(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, v: float) -> None:
        with self._lock:
            i = next((k for k, b in enumerate(self.buckets) if v <= b), len(self.buckets))
            self.counts[i] += 1
            self.sum += v
            self.count += 1

    def render(self):
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            acc = 0
            for b, c in zip(self.buckets, self.counts):
                acc += c
                out.append(f'{self.name}_bucket{{le="{b:g}"}} {acc}')
            out.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
            out.append(f"{self.name}_sum {self.sum:.6f}")
            out.append(f"{self.name}_count {self.count}")
        return out


class Metrics:
    """Prometheus text exposition, no dependency."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counters: Dict[str, Dict[tuple, float]] = {}
        self.help: Dict[str, str] = {}
        self.batch_size = Histogram("asr_batch_size", "Streams per model step.", [1, 2, 4, 8, 16, 32, 64, 128])
        self.step_seconds = Histogram("asr_step_seconds", "Wall time of one batched model step (features + model + search).",
                                      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        self.latency = Histogram("asr_result_latency_seconds",
                                 "From receiving an audio message to sending the event that covers it.",
                                 [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        self.labelled = {"asr_connections_total", "asr_errors_total", "asr_finals_total"}
        for name, h in [("asr_connections_total", "WebSocket connections accepted, by endpoint."),
                        ("asr_errors_total", "Connections ended by an error, by code."),
                        ("asr_finals_total", "Final results sent, by reason."),
                        ("asr_audio_seconds_total", "Seconds of audio decoded."),
                        ("asr_steps_total", "Batched model steps.")]:
            self.counters[name] = {}
            self.help[name] = h

    def inc(self, name: str, labels: tuple = (), v: float = 1.0) -> None:
        with self._lock:
            c = self.counters[name]
            c[labels] = c.get(labels, 0.0) + v

    def get(self, name: str, labels: tuple = ()) -> float:
        return self.counters[name].get(labels, 0.0)

    def on_step(self, batch: int, seconds: float, audio_s: float) -> None:  # scheduler thread
        self.inc("asr_steps_total")
        self.inc("asr_audio_seconds_total", v=audio_s)
        if batch:
            self.batch_size.observe(batch)
            self.step_seconds.observe(seconds)

    def render(self, gauges: Dict[str, tuple]) -> str:
        out = []
        for name, (help, value) in gauges.items():
            out += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        with self._lock:
            for name, series in self.counters.items():
                out += [f"# HELP {name} {self.help[name]}", f"# TYPE {name} counter"]
                if not series and name not in self.labelled:
                    out.append(f"{name} 0")
                for labels, v in sorted(series.items()):
                    lab = "{" + ",".join(f'{k}="{val}"' for k, val in labels) + "}" if labels else ""
                    out.append(f"{name}{lab} {v:g}")
        for h in (self.batch_size, self.step_seconds, self.latency):
            out += h.render()
        return "\n".join(out) + "\n"


# ---- connections ---------------------------------------------------------------------------

_CLOSE = object()  # outbox marker: close the connection (code, reason follow)
# queued, unanswered items per connection (audio pieces, resets): bounds what costs no audio
# credit, such as a flood of empty Vosk messages or resets
MAX_PENDING_ITEMS = 256


class _Connection:
    """One WebSocket connection. A reader (the handler) queues work; a sender task answers.

    All sends go through ``outbox`` in order. Credit-based backpressure: ``pending``
    counts queued input samples not yet answered, ``pending_items`` queued items; the
    reader waits while either is over its limit, and the sender releases credit after
    sending each step's events.
    """

    endpoint = ""

    def __init__(self, server: "ASRServer", ws):
        self.server = server
        self.ws = ws
        self.session = uuid.uuid4().hex[:16]
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.job = None
        self.pending = 0
        self.pending_limit = 0
        self.pending_items = 0
        self.credit = asyncio.Condition()
        self.closing = False  # no more client input is taken (end, error or shutdown)
        self.shutdown_close = False  # finishing because the server stops: close with 1001
        self.dead = False  # the sender has stopped: nothing more can be sent
        self._sender: Optional[asyncio.Task] = None

    # -- lifecycle
    async def run(self) -> None:
        """The connection handler: returns once the connection is closed."""
        srv = self.server
        self._sender = asyncio.create_task(self._send_loop())
        try:
            if srv.closing:
                self.fail(P.ProtocolError("shutting_down", "server is shutting down"))
            elif len(srv.connections) >= srv.cfg.max_connections:
                self.fail(P.ProtocolError("server_busy", f"server at its limit of {srv.cfg.max_connections} connections; try again later"))
            else:
                srv.connections.add(self)
                srv._changed()
                srv.metrics.inc("asr_connections_total", (("endpoint", self.endpoint),))
            await self._read_loop()
        except Exception:
            log.exception("connection %s failed", self.session)
        finally:
            self._sender.cancel()  # the connection is closed: nothing left can be sent
            if self.job is not None:
                self.job.remove()
            srv.connections.discard(self)
            srv._changed()

    async def _read_loop(self) -> None:
        """Read until the connection closes. Once ``closing`` (end, error, shutdown) input is
        drained and dropped; the sender closes the connection when its last event is out."""
        cfg = self.server.cfg
        while True:
            try:
                msg = await asyncio.wait_for(self.ws.recv(), timeout=cfg.idle_timeout_s)
            except asyncio.TimeoutError:
                if not self.closing:
                    self.fail(P.ProtocolError("idle_timeout", f"no message for {cfg.idle_timeout_s:g} s"))
                continue
            except Exception as e:
                if _is_closed(e):
                    return
                raise
            if self.closing:
                continue
            try:
                if isinstance(msg, bytes):
                    if len(msg) > cfg.max_message_bytes:
                        raise P.ProtocolError("too_large", f"binary message of {len(msg)} bytes exceeds the limit of {cfg.max_message_bytes}")
                    await self.on_audio(msg)
                else:
                    if len(msg) > cfg.max_text_bytes or len(msg.encode("utf-8")) > cfg.max_text_bytes:
                        raise P.ProtocolError("too_large", f"text message exceeds the limit of {cfg.max_text_bytes} bytes")
                    await self.on_text(msg)
            except P.ProtocolError as e:
                self.fail(e)

    def fail(self, err: P.ProtocolError) -> None:
        """End the connection: error (where the protocol has one), then close with its code."""
        self.closing = True
        if self.job is not None:
            self.job.remove()
        self.server.metrics.inc("asr_errors_total", (("code", err.code),))
        log.info("session %s: %s: %s", self.session, err.code, err.message)
        self.send_error(err)
        self.outbox.put_nowait((_CLOSE, err.close_code, _reason(err.message)))

    def send_error(self, err: P.ProtocolError) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Server stopping: finish the stream (final result), then close with 1001."""
        if self.closing and self.job is not None and self.job.ended:
            return  # already finishing; the close code stays normal
        self.closing = True
        self.shutdown_close = True
        if self.job is not None and not self.job.ended:
            self.pending_items += self.job.end()
        elif self.job is None:
            self.outbox.put_nowait((_CLOSE, 1001, "server shutting down"))

    # -- work
    def start_job(self, stream, per_message: bool) -> None:
        self.job = self.server.scheduler.add(stream, self._deliver, per_message=per_message)
        self.pending_limit = max(1, int(self.server.cfg.max_pending_s * stream.sample_rate))
        self.server._changed()

    def _has_credit(self, n: int) -> bool:
        if self.pending_items == 0:
            return True  # an idle connection takes any message, however long
        return self.pending + n <= self.pending_limit and self.pending_items < MAX_PENDING_ITEMS

    async def _wait_credit(self, n: int) -> bool:
        """Wait until ``n`` more samples may be queued; False if the stream can take no more."""
        if not self._has_credit(n):
            async with self.credit:
                await self.credit.wait_for(lambda: self.dead or self._has_credit(n))
        return not (self.dead or self.job.ended or self.job.removed)

    async def submit_audio(self, samples) -> None:
        if await self._wait_credit(len(samples)):
            self.pending += len(samples)
            self.pending_items += self.job.put_audio(samples)
            srv = self.server
            srv.peak_pending_s = max(srv.peak_pending_s, self.pending / self.job.stream.sample_rate)
            srv.peak_pending_items = max(srv.peak_pending_items, self.pending_items)

    async def submit_reset(self) -> None:
        if await self._wait_credit(0):
            self.pending_items += self.job.reset()

    def _deliver(self, out: StepOutput) -> None:  # event loop, from the scheduler
        if not self.dead:
            self.outbox.put_nowait(out)

    async def _send_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                item = await self.outbox.get()
                if isinstance(item, tuple) and item[0] is _CLOSE:
                    await ws.close(item[1], item[2])
                    return
                if isinstance(item, dict):
                    await ws.send(json.dumps(item))
                    continue
                out: StepOutput = item
                if out.error:
                    self.fail(P.ProtocolError("internal", "recognition failed on the server"))
                    continue
                for ev in self.events(out):
                    await ws.send(json.dumps(ev))
                for _, reason in out.finals:
                    self.server.metrics.inc("asr_finals_total", (("reason", reason),))
                if out.samples:
                    self.server.metrics.latency.observe(time.monotonic() - out.enqueued)
                async with self.credit:
                    self.pending -= out.samples
                    self.pending_items -= out.messages
                    self.credit.notify_all()
                if out.done:
                    if self.shutdown_close:
                        await ws.close(1001, "server shutting down")
                    else:
                        await ws.close(1000, "done")
                    return
        except Exception as e:
            if not _is_closed(e):
                log.exception("sender of session %s failed", self.session)
        finally:
            self.dead = True
            self.closing = True
            async with self.credit:
                self.credit.notify_all()

    def events(self, out: StepOutput):
        raise NotImplementedError

    async def on_text(self, text: str) -> None:
        raise NotImplementedError

    async def on_audio(self, data: bytes) -> None:
        raise NotImplementedError


class AsrConnection(_Connection):
    """``/asr``: the typed JSON protocol."""

    endpoint = "asr"

    def __init__(self, server, ws):
        super().__init__(server, ws)
        self.opts: Optional[P.StartOptions] = None
        self.last_partial = ""

    def send_error(self, err):
        self.outbox.put_nowait(P.error_event(err))

    async def on_text(self, text: str) -> None:
        msg = P.parse_client_message(text)
        kind = msg["type"]
        if kind == "start":
            if self.opts is not None:
                raise P.ProtocolError("already_started", "this connection has already started a stream")
            opts = P.parse_start(msg, self.server.cfg.endpoint)
            rec = self.server.rec
            self.start_job(self.server.new_stream(opts.sample_rate, opts.endpoint), per_message=False)
            self.opts = opts
            self.outbox.put_nowait(P.ready_event(self.session, opts, rec.name))
            return
        if self.opts is None:
            raise P.ProtocolError("not_started", f'"{kind}" before "start"')
        if kind == "reset":
            await self.submit_reset()
        else:  # end
            self.closing = True
            self.pending_items += self.job.end()

    async def on_audio(self, data: bytes) -> None:
        if self.opts is None:
            raise P.ProtocolError("not_started", 'audio before "start"')
        samples = P.decode_audio(data, self.opts.format)
        if len(samples):
            await self.submit_audio(samples)

    def events(self, out: StepOutput):
        evs = []
        for res, reason in out.finals:
            evs.append(P.final_event(res, reason, self.opts.words))
            self.last_partial = ""
        if self.opts.partials and out.partial is not None and out.partial.text != self.last_partial:
            self.last_partial = out.partial.text
            if out.partial.text:
                evs.append(P.partial_event(out.partial))
        if out.done:
            evs.append(P.done_event())
        return evs


class VoskConnection(_Connection):
    """``/vosk``: Vosk server protocol; exactly one reply per audio message."""

    endpoint = "vosk"

    def __init__(self, server, ws):
        super().__init__(server, ws)
        self.vcfg = P.VoskConfig(sample_rate=server.cfg.vosk_sample_rate)

    def send_error(self, err):
        pass  # Vosk clients know no error message: the close code and reason carry it

    def _ensure_job(self) -> None:
        if self.job is None:
            stream = self.server.new_stream(self.vcfg.sample_rate, self.server.cfg.endpoint)
            self.start_job(stream, per_message=True)

    async def on_text(self, text: str) -> None:
        kind, cfg = P.parse_vosk_message(text, self.vcfg)
        if kind == "config":
            if self.job is not None:
                raise P.ProtocolError("bad_option", "config must come before the first audio")
            self.vcfg = cfg
            return
        self._ensure_job()
        if kind == "eof":
            self.closing = True
            self.pending_items += self.job.end()
        else:
            await self.submit_reset()

    async def on_audio(self, data: bytes) -> None:
        samples = P.decode_audio(data, "s16le")
        self._ensure_job()
        await self.submit_audio(samples)  # empty messages too: each gets its reply

    def events(self, out: StepOutput):
        if out.finals:
            return [P.vosk_final(out.finals[-1][0], self.vcfg.words)]
        if out.partial is not None:
            return [P.vosk_partial(out.partial)]
        return []


def _reason(msg: str) -> str:
    """Close reasons are limited to 123 bytes of UTF-8."""
    b = msg.encode("utf-8")
    return msg if len(b) <= 123 else b[:120].decode("utf-8", "ignore") + "..."


def _is_closed(e: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(e, (ConnectionClosed, ConnectionError))


# ---- server --------------------------------------------------------------------------------


class ASRServer:
    """The WebSocket + HTTP server around one shared :class:`asr.Recognizer`.

    ``await start()`` binds and starts the scheduler; ``await shutdown()`` is the graceful
    stop (also run on SIGTERM by ``asr serve``); ``await wait_stopped()`` returns after it.
    ``final_decoder`` (e.g. :class:`asr.beam.BeamCTCDecoder` with a word LM) decodes every
    final result again from its segment's log-probabilities, in the scheduler thread;
    partial results stay greedy (see :class:`streaming.Stream`).
    """

    def __init__(self, rec, cfg: ServerConfig = ServerConfig(), final_decoder=None):
        self.rec = rec
        self.cfg = cfg
        self.final_decoder = final_decoder
        self.metrics = Metrics()
        self.connections: Set[_Connection] = set()
        self.closing = False
        self.peak_pending_s = 0.0
        self.peak_pending_items = 0
        self._server = None
        self.scheduler: Optional[Scheduler] = None
        self._stopped: Optional[asyncio.Event] = None
        self._idle: Optional[asyncio.Event] = None
        self.static = {}
        if cfg.web and WEB_DIR.is_dir():
            for p in sorted(WEB_DIR.iterdir()):
                if p.suffix in _CONTENT_TYPES:
                    self.static["/" + p.name] = p
            if "/index.html" in self.static:
                self.static["/"] = self.static["/index.html"]

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    def new_stream(self, sample_rate: int, endpoint):
        """A stream for one connection: the shared model and final decoder, its own state."""
        return self.rec.stream(sample_rate, endpoint=endpoint, final_decoder=self.final_decoder)

    @property
    def url(self) -> str:
        scheme = "wss" if self.cfg.certfile else "ws"
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> "ASRServer":
        from websockets.asyncio.server import serve

        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.scheduler = Scheduler(loop, self.cfg.max_batch, self.cfg.step_s, on_step=self.metrics.on_step)
        self.scheduler.start()
        ctx = None
        if self.cfg.certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.cfg.certfile, self.cfg.keyfile or None)
        self._server = await serve(
            self._handler, self.cfg.host, self.cfg.port,
            process_request=self._process_request,
            max_size=self.cfg.hard_max_size,
            max_queue=8,  # frames buffered per connection before TCP backpressure
            compression=None,  # PCM barely compresses; deflate would only cost CPU
            ping_interval=self.cfg.ping_interval_s, ping_timeout=self.cfg.ping_timeout_s,
            ssl=ctx, server_header=None,
        )
        return self

    def _changed(self) -> None:
        if self._idle is not None:
            (self._idle.set if not self.connections else self._idle.clear)()

    async def _handler(self, ws) -> None:
        path = urlsplit(ws.request.path).path
        conn = (AsrConnection if path == "/asr" else VoskConnection)(self, ws)
        await conn.run()

    # -- HTTP
    def _authorized(self, request) -> bool:
        if not self.cfg.token:
            return True
        supplied = None
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            supplied = auth[7:].strip()
        else:
            q = parse_qs(urlsplit(request.path).query).get("token")
            supplied = q[0] if q else None
        return supplied is not None and hmac.compare_digest(supplied.encode(), self.cfg.token.encode())

    def _process_request(self, connection, request):
        path = urlsplit(request.path).path
        if path in ("/asr", "/vosk"):
            if not self._authorized(request):
                return _http(HTTPStatus.UNAUTHORIZED, b"missing or wrong token\n", extra=[("WWW-Authenticate", "Bearer")])
            if self.closing:
                return _http(HTTPStatus.SERVICE_UNAVAILABLE, b"server shutting down\n")
            return None  # continue the WebSocket handshake
        if path == "/healthz":
            status = HTTPStatus.SERVICE_UNAVAILABLE if self.closing else HTTPStatus.OK
            body = {"status": "stopping" if self.closing else "ok", "model": self.rec.name,
                    "protocol": P.PROTOCOL_VERSION, "connections": len(self.connections)}
            return _http(status, (json.dumps(body) + "\n").encode(), "application/json")
        if path == "/metrics":
            if not self._authorized(request):
                return _http(HTTPStatus.UNAUTHORIZED, b"missing or wrong token\n", extra=[("WWW-Authenticate", "Bearer")])
            return _http(HTTPStatus.OK, self.render_metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        f = self.static.get(path)
        if f is not None:
            return _http(HTTPStatus.OK, f.read_bytes(), _CONTENT_TYPES[f.suffix])
        return _http(HTTPStatus.NOT_FOUND, b"not found\n")

    def render_metrics(self) -> str:
        streams = sum(1 for c in self.connections if c.job is not None)
        pending = sum(c.pending / c.job.stream.sample_rate for c in self.connections if c.job is not None)
        return self.metrics.render({
            "asr_active_connections": ("Open WebSocket connections.", len(self.connections)),
            "asr_active_streams": ("Connections with a recognition stream.", streams),
            "asr_pending_audio_seconds": ("Audio queued and not yet answered, all connections.", pending),
            "asr_peak_pending_audio_seconds": ("Largest queued audio of one connection so far.", self.peak_pending_s),
        })

    # -- shutdown
    async def shutdown(self) -> None:
        """Stop accepting, finish every stream (final result, close 1001), stop the worker."""
        if self.closing:
            await self._stopped.wait()
            return
        self.closing = True
        log.info("shutting down: finishing %d connection(s)", len(self.connections))
        self._server.close(close_connections=False)  # no new connections
        for c in list(self.connections):
            c.shutdown()
        try:
            await asyncio.wait_for(self._idle.wait(), self.cfg.shutdown_timeout_s)
        except asyncio.TimeoutError:
            log.warning("shutdown: %d connection(s) did not finish in time; closing them", len(self.connections))
            await asyncio.gather(*(c.ws.close(1001, "server shutting down") for c in list(self.connections)),
                                 return_exceptions=True)
        try:  # our connections are done; what is left are handshakes that never sent a request
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        except asyncio.TimeoutError:
            # they would hold their handler tasks for the whole open timeout and outlive the
            # event loop (destroyed pending at exit): cancel those handshakes; wait_closed
            # returns once their handler tasks have ended
            for t in getattr(self._server, "handler_tasks", ()):
                t.cancel()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            except asyncio.TimeoutError:
                log.warning("shutdown: the websockets server did not close in time")
        await asyncio.get_running_loop().run_in_executor(None, self.scheduler.stop)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _http(status: HTTPStatus, body: bytes, ctype: str = "text/plain; charset=utf-8", extra=()):
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Connection", "close"), *extra])
    return Response(status.value, status.phrase, headers, body)


class BackgroundServer:
    """An :class:`ASRServer` on its own event loop in a thread (tests, benchmarks, embedding).

    ::

        with BackgroundServer(rec, ServerConfig(port=0)) as srv:
            print(srv.url)   # ws://127.0.0.1:PORT
    """

    def __init__(self, rec, cfg: ServerConfig = ServerConfig(), final_decoder=None):
        self.loop = asyncio.new_event_loop()
        self.server = ASRServer(rec, cfg, final_decoder)
        started = threading.Event()
        self._error = None

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.server.start())
            except BaseException as e:  # bind failure: report it to the caller
                self._error = e
                started.set()
                return
            started.set()
            self.loop.run_until_complete(self.server.wait_stopped())

        self._thread = threading.Thread(target=run, name="asr-server", daemon=True)
        self._thread.start()
        started.wait()
        if self._error:
            raise self._error

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(60)
            self._thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---- CLI -----------------------------------------------------------------------------------


async def run_server(rec, cfg: ServerConfig, final_decoder=None) -> int:
    server = await ASRServer(rec, cfg, final_decoder).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (print(f"asr serve: {signal.Signals(s).name}: finishing streams",
                                                         file=sys.stderr, flush=True),
                                                   asyncio.ensure_future(server.shutdown())))
    http = "https" if cfg.certfile else "http"
    host_port = server.url.split("://", 1)[1]
    opts = getattr(final_decoder, "opts", None)  # BeamOptions of a BeamCTCDecoder
    finals = "greedy" if final_decoder is None else opts.describe() if opts else type(final_decoder).__name__
    print(f"asr serve: model {rec.name}; finals {finals}; listening on {server.url}/asr and {server.url}/vosk"
          + (f"; page {http}://{host_port}/" if server.static else ""), flush=True)
    await server.wait_stopped()
    print("asr serve: stopped", file=sys.stderr, flush=True)
    return 0


def _main(args) -> int:
    import torch

    from asr.checkpoint import load_model

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keyfile and not args.certfile:
        raise ValueError("--keyfile needs --certfile")
    for name in ("trailing_silence", "max_segment", "idle_timeout", "max_pending"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    for name in ("max_connections", "max_message_bytes", "max_batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    if not P.MIN_RATE <= args.vosk_sample_rate <= P.MAX_RATE:
        raise ValueError(f"--vosk-sample-rate must be {P.MIN_RATE}..{P.MAX_RATE} Hz, got {args.vosk_sample_rate}")
    token = args.token if args.token is not None else os.environ.get("ASR_SERVER_TOKEN") or None
    cfg = ServerConfig(
        host=args.host, port=args.port,
        endpoint=EndpointConfig(trailing_silence_s=args.trailing_silence, max_segment_s=args.max_segment,
                                enabled=not args.no_endpoint),
        max_message_bytes=args.max_message_bytes, max_connections=args.max_connections,
        idle_timeout_s=args.idle_timeout, max_pending_s=args.max_pending, max_batch=args.max_batch,
        vosk_sample_rate=args.vosk_sample_rate, token=token, certfile=args.certfile, keyfile=args.keyfile,
        web=not args.no_web,
    )
    check_decoder_arguments(args)
    rec = load_model(args.model, int8=args.int8)
    return asyncio.run(run_server(rec, cfg, decoder_from_arguments(args, rec)))


def register(sub) -> None:
    d = ServerConfig()
    e = d.endpoint
    p = sub.add_parser(
        "serve", help="run the WebSocket transcription server",
        description="Serve live transcription over WebSocket: /asr (JSON protocol, streaming/PROTOCOL.md), "
                    "/vosk (Vosk-compatible), / (browser microphone page), /healthz, /metrics. "
                    "SIGTERM finishes every stream with its final result, then exits.",
    )
    p.add_argument("--model", default="default", help="bundled model name or checkpoint path, fixed at start-up (default: %(default)s)")
    p.add_argument("--host", default=d.host, help="interface to listen on (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=d.port, help="TCP port, 0 for any free one (default: %(default)s)")
    p.add_argument("--trailing-silence", type=float, default=e.trailing_silence_s, metavar="S",
                   help="endpoint: non-speech after speech that ends an utterance, s (default: %(default)s)")
    p.add_argument("--max-segment", type=float, default=e.max_segment_s, metavar="S",
                   help="endpoint: utterance length after which it ends at the next pause, s (default: %(default)s)")
    p.add_argument("--no-endpoint", action="store_true", help="no endpointing by default (clients may still enable it)")
    p.add_argument("--max-connections", type=int, default=d.max_connections, metavar="N",
                   help="more WebSocket connections are refused with close code 1013 (default: %(default)s)")
    p.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, metavar="N",
                   help="largest binary message (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s, metavar="S",
                   help="close connections silent for this long (default: %(default)s)")
    p.add_argument("--max-pending", type=float, default=d.max_pending_s, metavar="S",
                   help="queued audio per connection before the server stops reading it, s (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, metavar="N", help="most streams per model step (default: %(default)s)")
    p.add_argument("--vosk-sample-rate", type=int, default=d.vosk_sample_rate, metavar="HZ",
                   help="/vosk sample rate when a client sends no config (default: %(default)s, as vosk-server)")
    p.add_argument("--token", default=None,
                   help="require this bearer token (Authorization header or ?token=); default: $ASR_SERVER_TOKEN if set")
    p.add_argument("--certfile", help="TLS certificate (PEM): serve wss:// and https://")
    p.add_argument("--keyfile", help="TLS private key (PEM), if not in --certfile")
    p.add_argument("--no-web", action="store_true", help="do not serve the browser page at /")
    add_decoder_arguments(p, finals_only=True)
    add_int8_argument(p)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("-v", "--verbose", action="store_true", help="log connections and errors")
    p.set_defaults(func=_main)
