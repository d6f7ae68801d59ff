"""One WebSocket connection of :class:`streaming.server.ASRServer`: ``/asr`` or ``/vosk``.

A reader (the handler) parses messages with :mod:`streaming.protocol` and queues audio for
the :class:`streaming.scheduler.Scheduler`; a sender task answers in order. Backpressure is
credit-based: a connection whose queued audio or item count is over its limit is not read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Optional

from . import protocol as P
from .scheduler import StepOutput

__all__ = ["AsrConnection", "VoskConnection", "MAX_PENDING_ITEMS"]

log = logging.getLogger("streaming.server")  # one logger for the whole server (asr serve -v)

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
    def new_stream(self, sample_rate: int, endpoint, grammar=None, hotwords=None, nbest: int = 1):
        """The connection's stream: the server's shared model and decoder, or, with grammar / hotwords /
        n-best options, a final decoder of its own (:func:`asr.vocab.vocabulary_decoder`; hotwords join the
        server's LM beam search if it has one)."""
        decoder = None
        if grammar is not None or hotwords is not None or nbest > 1:
            from asr.vocab import vocabulary_decoder

            try:  # spelling the phrases with the model's tokens can still fail (a char model's alphabet)
                decoder = vocabulary_decoder(self.server.rec, grammar, hotwords, nbest, self.server.final_decoder)
            except ValueError as e:
                raise P.ProtocolError("bad_option", str(e)) from None
        stream = self.server.new_stream(sample_rate, endpoint)
        if decoder is not None:
            stream.final_decoder = decoder  # set before any audio: the stream's own, not the server's
        return stream

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
                if out.done:  # let the finished stream go before the client hears "done" (as fail() does)
                    self.job.remove()
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
        self.last_partial = ("", 0)  # (text, stable) of the last partial sent

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
            stream = self.new_stream(opts.sample_rate, opts.endpoint, opts.grammar, opts.hotwords, opts.nbest)
            self.start_job(stream, per_message=False)
            self.opts = opts
            decoder = stream.final_decoder.describe() if stream.final_decoder is not None else "greedy"
            self.outbox.put_nowait(P.ready_event(self.session, opts, rec.name, self.server.cfg.max_message_bytes,
                                                 decoder))
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
            self.last_partial = ("", 0)  # (text, stable) of the last partial sent
        if self.opts.partials and out.partial is not None and (out.partial.text, out.partial.stable) != self.last_partial:
            self.last_partial = (out.partial.text, out.partial.stable)
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
            v = self.vcfg
            stream = self.new_stream(v.sample_rate, self.server.cfg.endpoint, v.phrase_list, None,
                                     max(1, v.max_alternatives))
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
            return [P.vosk_final(out.finals[-1][0], self.vcfg.words, self.vcfg.max_alternatives)]
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
