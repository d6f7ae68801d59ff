"""Batching scheduler: every stream's model compute, off the event loop, in one batch per step.

The event loop only parses messages and queues work; one worker thread repeatedly

1. takes every stream with queued input (up to ``max_batch``, oldest first),
2. feeds each stream the audio it took (:meth:`Stream.feed`: resampling and features),
3. runs the model ONCE for all of them (:func:`asr.stream.decode_streams`: states stacked,
   stepped, unstacked; equal to stepping each stream alone),
4. checks endpoints, applies queued ``reset`` / ``end`` controls, and
5. posts one :class:`StepOutput` per stream back to the event loop with
   ``loop.call_soon_threadsafe``.

So a client's decoding never blocks the loop: keepalive pings, handshakes and other
clients' messages are served while the model runs, and the more clients are active
the larger (and cheaper per stream) each batch gets.

Work is queued per stream in arrival order. Audio is cut into pieces of at most
``step_s`` seconds so endpoints are checked at least that often; a step takes pieces
up to ``step_s`` of audio, plus a control message if one follows them. Streams made
with ``per_message=True`` (the Vosk endpoint, which answers every message exactly
once) take exactly one message per step. Queues are bounded by the caller
(``streaming.connection`` stops reading a connection while its queued audio or item count
is over its limit), so this module never drops or refuses input.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, List, Optional, Tuple

import numpy as np

from asr.decoding import Result
from asr.stream import Stream, audio_chunks, decode_streams

__all__ = ["Scheduler", "Job", "StepOutput"]

log = logging.getLogger(__name__)

AUDIO, RESET, END = "audio", "reset", "end"


@dataclass
class StepOutput:
    """What one step did for one stream; delivered on the event loop."""

    samples: int = 0  # input samples consumed (at the stream's rate)
    messages: int = 0  # queued items consumed (audio pieces + controls)
    enqueued: float = 0.0  # time.monotonic() when the newest consumed item was queued
    finals: List[Tuple[Result, str]] = field(default_factory=list)  # (result, "endpoint"|"reset"|"end")
    partial: Optional[Result] = None  # the open segment after this step (None once finished)
    done: bool = False  # the stream is finished ("end" applied)
    error: Optional[str] = None  # unexpected failure: the connection should end with "internal"


class Job:
    """One stream registered with the scheduler. Queue methods are called from the event loop."""

    def __init__(self, scheduler: "Scheduler", stream: Stream, deliver: Callable[[StepOutput], None],
                 per_message: bool):
        self.scheduler = scheduler
        self.stream = stream
        self.deliver = deliver
        self.per_message = per_message
        self.items: Deque[Tuple[str, Optional[np.ndarray], float]] = deque()  # guarded by scheduler lock
        self.queued = False  # in the scheduler's ready queue
        self.removed = False
        self.ended = False  # "end" queued: nothing more is accepted

    def put_audio(self, samples: np.ndarray) -> int:
        """Queue 1-D PCM at the stream's rate (an empty array still gets its own step).

        Returns the number of items queued (``StepOutput.messages`` counts them back).
        """
        if self.ended:
            raise RuntimeError("stream already ended")
        piece = self.scheduler.step_samples(self.stream.sample_rate)
        now = time.monotonic()
        if self.per_message or len(samples) <= piece:
            items = [(AUDIO, samples, now)]
        else:
            items = [(AUDIO, chunk, now) for chunk in audio_chunks(samples, piece)]
        self.scheduler._put(self, items)
        return len(items)

    def reset(self) -> int:
        """Close the open segment after the audio queued so far. Returns the items queued."""
        if self.ended:
            return 0
        self.scheduler._put(self, [(RESET, None, time.monotonic())])
        return 1

    def end(self) -> int:
        """Finish the stream after the audio queued so far (final result, then done). Returns the items queued."""
        if self.ended:
            return 0
        self.ended = True
        self.scheduler._put(self, [(END, None, time.monotonic())])
        return 1

    def remove(self) -> None:
        """Forget the stream: queued items are dropped, no more outputs are delivered."""
        self.scheduler._remove(self)

    def _take(self, max_samples: int) -> Tuple[List[np.ndarray], Optional[str], StepOutput]:
        """Pop this step's items (scheduler lock held): audio pieces, then maybe one control."""
        audio: List[np.ndarray] = []
        control = None
        out = StepOutput()
        while self.items:
            kind, samples, t = self.items[0]
            if kind == AUDIO:
                if audio and (self.per_message or out.samples + len(samples) > max_samples):
                    break
                audio.append(samples)
                out.samples += len(samples)
            else:
                control = kind
            self.items.popleft()
            out.messages += 1
            out.enqueued = t
            if control is not None or self.per_message:
                break
        return audio, control, out


class Scheduler:
    """One worker thread stepping all streams with pending input as one batch.

    Args:
        loop: the asyncio event loop outputs are delivered on.
        max_batch: most streams in one model call (the rest wait for the next step).
        step_s: audio per stream per step, seconds (endpoint checks happen at least this often).
        on_step: ``(batch_size, seconds, audio_seconds)`` after every step (metrics), worker thread.
    """

    def __init__(self, loop, max_batch: int = 64, step_s: float = 0.5,
                 on_step: Optional[Callable[[int, float, float], None]] = None):
        if max_batch < 1 or step_s <= 0:
            raise ValueError("max_batch must be >= 1 and step_s > 0")
        self.loop = loop
        self.max_batch = max_batch
        self.step_s = step_s
        self.on_step = on_step
        self._cond = threading.Condition()
        self._ready: Deque[Job] = deque()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    def step_samples(self, sample_rate: int) -> int:
        return max(1, int(round(self.step_s * sample_rate)))

    # ---- event-loop side ----------------------------------------------------------------
    def add(self, stream: Stream, deliver: Callable[[StepOutput], None], per_message: bool = False) -> Job:
        return Job(self, stream, deliver, per_message)

    def _put(self, job: Job, items) -> None:
        with self._cond:
            if job.removed:
                return
            job.items.extend(items)
            if not job.queued:
                job.queued = True
                self._ready.append(job)
            self._cond.notify()

    def _remove(self, job: Job) -> None:
        with self._cond:
            job.removed = True
            job.items.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="asr-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued work, then end the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- worker thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return
                batch = []
                again = []
                while self._ready and len(batch) < self.max_batch:
                    job = self._ready.popleft()
                    if job.removed or not job.items:
                        job.queued = False
                        continue
                    batch.append((job, *job._take(self.step_samples(job.stream.sample_rate))))
                    if job.items:
                        again.append(job)
                    else:
                        job.queued = False
                self._ready.extend(again)  # round robin: streams with more input go to the back
            if batch:
                self._step(batch)

    def _step(self, batch) -> None:
        t0 = time.perf_counter()
        fed = []
        audio_s = 0.0
        for job, audio, control, out in batch:
            if audio:
                try:
                    job.stream.feed(audio[0] if len(audio) == 1 else np.concatenate(audio))
                    fed.append(job.stream)
                    audio_s += out.samples / job.stream.sample_rate
                except Exception as e:  # protocol validation should make this unreachable
                    log.exception("feed failed")
                    out.error = f"{e.__class__.__name__}: {e}"
        try:
            decode_streams(fed)
        except Exception as e:
            log.exception("batched decode failed")
            for job, audio, control, out in batch:
                out.error = out.error or f"{e.__class__.__name__}: {e}"
        for job, audio, control, out in batch:
            if out.error:
                continue
            st = job.stream
            try:
                if audio:
                    res = st.pop_endpoint()
                    if res is not None:
                        out.finals.append((res, "endpoint"))
                if control == RESET:
                    out.finals.append((st.reset_segment(), "reset"))
                elif control == END:
                    out.finals.append((st.finish(), "end"))
                    out.done = True
                if not out.done:
                    out.partial = st.partial()
            except Exception as e:
                log.exception("stream step failed")
                out.error = f"{e.__class__.__name__}: {e}"
        if self.on_step is not None:
            self.on_step(len(fed), time.perf_counter() - t0, audio_s)
        for job, audio, control, out in batch:
            if not job.removed:
                try:
                    self.loop.call_soon_threadsafe(job.deliver, out)
                except RuntimeError:  # the loop is closed: nobody is listening any more
                    pass
