"""The WebSocket server behind ``asr serve`` (protocol: ``streaming/PROTOCOL.md``).

The server is a thin adapter over :class:`asr.stream.Stream`:

* ``/asr`` speaks the typed JSON protocol, ``/vosk`` the Vosk server protocol; both
  are parsed and validated by the pure functions of :mod:`streaming.protocol`, one
  :mod:`streaming.connection` per WebSocket;
* model compute never runs on the event loop: :class:`streaming.scheduler.Scheduler`
  steps the streams with pending audio in batches in worker threads (one per core by
  default), so pings and other clients are served while they run;
* per-connection queues are bounded: a connection whose queued audio exceeds
  ``max_pending_s`` is not read until the worker catches up (TCP backpressure);
* HTTP routes on the same port: ``/healthz`` (JSON), ``/metrics`` (Prometheus text,
  :mod:`streaming.metrics`; of the whole server when it runs as several processes,
  :mod:`streaming.peers`), ``/`` (browser microphone page from ``streaming/web/``);
* limits: message size, connection count (refused with ``server_busy`` / close 1013; by
  default derived from the model and the cores, :mod:`streaming.capacity`), idle timeout;
  optional bearer token (header or ``?token=``) and TLS;
* SIGTERM / SIGINT (``asr serve``, :mod:`streaming.serve`): stop accepting, finish every
  stream with its final result, exit 0;
* ``asr serve --processes N`` runs N of these servers in processes of their own on one port
  (:mod:`streaming.supervisor`).

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
import ssl
import threading
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from typing import Optional, Set
from urllib.parse import parse_qs, urlsplit

from asr.decoding import EndpointConfig
from asr.errors import OptionError

from . import protocol as P
from .connection import AsrConnection, VoskConnection
from .metrics import Metrics, render
from .capacity import default_max_connections
from .peers import Peers
from .scheduler import Scheduler, default_workers

__all__ = ["ServerConfig", "ASRServer", "BackgroundServer", "tls_context"]

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
    max_message_bytes: int = P.MAX_MESSAGE_BYTES  # larger binary messages end the connection ("too_large")
    max_text_bytes: int = 64 * 1024  # larger control messages end the connection ("too_large")
    # further WebSocket connections get "server_busy" and close 1013; 0: derived from the model's
    # arithmetic and the cores the workers can use (streaming.capacity: ~250 for the default
    # model on 2 cores)
    max_connections: int = 0
    idle_timeout_s: float = 60.0  # no client message for this long ends the connection ("idle_timeout")
    max_pending_s: float = 10.0  # queued, unanswered audio per connection before reading pauses (s)
    max_batch: int = 64  # most streams per model call
    workers: int = 0  # scheduler worker threads stepping streams in parallel; 0: one per CPU core
    step_s: float = 0.5  # most audio per stream per model step (endpoint check granularity), s
    # a scheduler worker waits until the oldest queued input is this old before stepping fewer than
    # max_batch streams, so the streams arriving meanwhile share its model call (streaming.scheduler)
    batch_wait_s: float = 0.05  # chosen by tools/bench_server.py (README "Capacity and reliability")
    vosk_sample_rate: int = 8000  # /vosk rate when the client sends no config (vosk-server's default)
    token: Optional[str] = None  # require "Authorization: Bearer TOKEN" or ?token=TOKEN on /asr, /vosk, /metrics
    certfile: Optional[str] = None  # TLS certificate chain (PEM): serve wss:// and https://
    keyfile: Optional[str] = None  # TLS private key (PEM); defaults to certfile
    ping_interval_s: Optional[float] = 20.0  # WebSocket keepalive ping interval
    ping_timeout_s: Optional[float] = 20.0  # close a connection whose pong is this late
    shutdown_timeout_s: float = 10.0  # SIGTERM: longest wait for streams to finish before closing anyway
    web: bool = True  # serve the browser page at /

    def __post_init__(self):
        """The checks ``asr serve`` applies to its flags, for every user of :class:`ASRServer`
        (:class:`asr.errors.OptionError` naming the field; ``endpoint`` checks its own)."""
        checks = [(name, getattr(self, name) > 0, "must be positive")  # NaN fails too
                  for name in ("idle_timeout_s", "max_pending_s", "step_s", "shutdown_timeout_s")]
        checks += [(name, getattr(self, name) is None or getattr(self, name) > 0, "must be positive or None")
                   for name in ("ping_interval_s", "ping_timeout_s")]
        checks += [(name, getattr(self, name) >= 1, "must be at least 1")
                   for name in ("max_message_bytes", "max_text_bytes", "max_batch")]
        checks += [("batch_wait_s", 0 <= self.batch_wait_s <= 1, "must be 0..1 s")]
        checks += [(name, getattr(self, name) >= 0, "must be 0 (derived) or more")
                   for name in ("max_connections", "workers")]
        checks += [("port", 0 <= self.port <= 65535, "must be 0..65535"),
                   ("vosk_sample_rate", P.MIN_RATE <= self.vosk_sample_rate <= P.MAX_RATE,
                    f"must be {P.MIN_RATE}..{P.MAX_RATE} Hz")]
        for name, ok, problem in checks:
            if not ok:
                raise OptionError(name, f"{problem}, got {getattr(self, name)}")
        if self.keyfile and not self.certfile:
            raise OptionError("keyfile", "needs certfile")

    @property
    def hard_max_size(self) -> int:
        """websockets' own frame limit: bigger messages are cut off with a bare 1009 close.

        Between ``max_message_bytes`` and this, the server still reads the message and
        answers with a ``too_large`` error event first.
        """
        return 2 * max(self.max_message_bytes, self.max_text_bytes)


# ---- server --------------------------------------------------------------------------------


class ASRServer:
    """The WebSocket + HTTP server around one shared :class:`asr.Recognizer`.

    ``await start()`` binds and starts the scheduler; ``await shutdown()`` is the graceful
    stop (also run on SIGTERM by ``asr serve``); ``await wait_stopped()`` returns after it.
    ``final_decoder`` (e.g. :class:`asr.beam.BeamCTCDecoder` with a word LM) decodes every
    final result again from its segment's log-probabilities, in the scheduler thread;
    partial results stay greedy (see :class:`asr.stream.Stream`).

    With ``peers`` (:class:`streaming.peers.Peers`) the server is one process of several
    sharing its port (``SO_REUSEPORT``; :mod:`streaming.supervisor`), and ``/metrics`` sums
    all of them.
    """

    def __init__(self, rec, cfg: ServerConfig = ServerConfig(), final_decoder=None, peers: Optional[Peers] = None):
        self.rec = rec
        self.peers = peers
        workers = cfg.workers or default_workers()
        # the derived values are set in cfg, so every user of it (connections, /metrics) sees them
        self.cfg = cfg = replace(cfg, workers=workers, max_connections=cfg.max_connections
                                 or default_max_connections(rec, min(workers, default_workers())))
        self.final_decoder = final_decoder
        self.metrics = Metrics()
        self.connections: Set[AsrConnection | VoskConnection] = set()
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
        self.scheduler = Scheduler(loop, self.cfg.max_batch, self.cfg.step_s, on_step=self.metrics.on_step,
                                   workers=self.cfg.workers, batch_wait_s=self.cfg.batch_wait_s)
        self.scheduler.start()
        ctx = tls_context(self.cfg.certfile, self.cfg.keyfile) if self.cfg.certfile else None
        if self.peers is not None:
            await self.peers.start(self.snapshot)
        self._server = await serve(
            self._handler, self.cfg.host, self.cfg.port,
            process_request=self._process_request,
            max_size=self.cfg.hard_max_size,
            max_queue=8,  # frames buffered per connection before TCP backpressure
            compression=None,  # PCM barely compresses; deflate would only cost CPU
            ping_interval=self.cfg.ping_interval_s, ping_timeout=self.cfg.ping_timeout_s,
            ssl=ctx, server_header=None,
            reuse_port=self.peers is not None,  # the other processes of this server bind the port too
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
            return self._metrics_response()
        f = self.static.get(path)
        if f is not None:
            return _http(HTTPStatus.OK, f.read_bytes(), _CONTENT_TYPES[f.suffix])
        return _http(HTTPStatus.NOT_FOUND, b"not found\n")

    async def _metrics_response(self):
        snapshots = [self.snapshot()] + (await self.peers.gather() if self.peers is not None else [])
        return _http(HTTPStatus.OK, render(snapshots).encode(), "text/plain; version=0.0.4; charset=utf-8")

    def render_metrics(self) -> str:
        """This process's ``/metrics`` text (of the whole server if it is its only process)."""
        return render([self.snapshot()])

    def snapshot(self) -> dict:
        """This process's metrics now (:meth:`streaming.metrics.Metrics.snapshot`)."""
        index = self.peers.index if self.peers is not None else 0
        return self.metrics.snapshot(self._gauges(), process=index, pid=os.getpid())

    def _gauges(self) -> dict:
        streams = sum(1 for c in self.connections if c.job is not None and not c.job.removed)
        pending = sum(c.pending / c.job.stream.sample_rate for c in self.connections if c.job is not None)
        return {
            "asr_active_connections": ("Open WebSocket connections.", len(self.connections)),
            "asr_active_streams": ("Connections with a recognition stream not yet finished (a stream is "
                                   "let go before its last event, done or error, is sent).", streams),
            "asr_pending_audio_seconds": ("Audio queued and not yet answered, all connections.", pending),
            "asr_peak_pending_audio_seconds": ("Largest queued audio of one connection so far.", self.peak_pending_s),
            "asr_peak_pending_items": ("Most queued messages of one connection so far (audio pieces and controls; "
                                       "bounded by streaming.connection.MAX_PENDING_ITEMS).", self.peak_pending_items),
            "asr_scheduler_streams": ("Streams registered with the scheduler (0 once every stream has finished or "
                                      "its connection closed; more would be leaked streams).", self.scheduler.jobs if self.scheduler else 0),
            "asr_max_connections": ("The connection limit, all processes (ServerConfig.max_connections, derived if 0).",
                                    self.cfg.max_connections),
            "asr_workers": ("Scheduler worker threads (all processes).", self.cfg.workers),
        }

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
            await asyncio.wait_for(self.wait_idle(), self.cfg.shutdown_timeout_s)
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
        if self.peers is not None:
            await self.peers.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def wait_idle(self) -> None:
        """Returns once no WebSocket connection is open (at once if none is); shutdown waits
        on this for the streams it finishes."""
        await self._idle.wait()


def tls_context(certfile: str, keyfile: Optional[str] = None) -> ssl.SSLContext:
    """A server TLS context; the errors name the file at fault (ssl's own do not)."""
    for what, path in (("certificate", certfile), ("key", keyfile)):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"TLS {what} file not found: {path}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(certfile, keyfile or None)
    except (ssl.SSLError, OSError) as e:
        files = certfile + (f" and {keyfile}" if keyfile else "")
        raise ValueError(f"cannot load the TLS certificate and key from {files}: {getattr(e, 'reason', None) or e}") from None
    return ctx


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

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Blocks until no WebSocket connection is open, e.g. until the server has let go of
        connections its clients closed (their slots count against ``max_connections`` until then)."""
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(self.server.wait_idle(), timeout), self.loop).result()

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(60)
            self._thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
