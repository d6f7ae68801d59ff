"""Batching scheduler: every stream's model compute, off the event loop, in batches.

The event loop only parses messages and queues work; each of ``workers`` threads repeatedly

1. takes every stream with queued input that no other worker holds (up to ``max_batch``,
   oldest first),
2. feeds them the audio they took (:func:`asr.stream.feed_streams`: resampling, then the
   features of all of them in one FFT),
3. runs the model ONCE for all of them (:func:`asr.stream.decode_streams`: states stacked,
   stepped, unstacked, greedy arg-max for the batch at once; equal to stepping each alone),
4. checks endpoints, applies queued ``reset`` / ``end`` controls, and
5. posts the step's :class:`StepOutput` s back to the event loop with ONE
   ``loop.call_soon_threadsafe`` (one wake-up of the loop per step, not per stream).

So a client's decoding never blocks the loop: keepalive pings, handshakes and other
clients' messages are served while the model runs, and the more clients are active
the larger (and cheaper per stream) each batch gets. torch releases the GIL inside its
operators, so several workers keep several cores busy; a stream is held by one worker
at a time, so its steps run, and its outputs arrive, in order. A worker that finds
work while the others are busy takes it at once: under load the streams that arrive
during one worker's step form the other worker's next batch. With ``batch_wait_s`` a
worker that finds fewer than ``max_batch`` streams ready first waits until the oldest
queued input is that old: larger batches cost less CPU per stream (the model's cost is
mostly its weight reads per call), for up to that much more latency when the server is
not busy.

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
from asr.evalrun import all_cores
from asr.stream import Stream, audio_chunks, decode_streams, feed_streams

__all__ = ["Scheduler", "Job", "StepOutput", "default_workers"]

log = logging.getLogger(__name__)

AUDIO, RESET, END = "audio", "reset", "end"


@dataclass
class StepOutput:
    """What one step did for one stream; delivered on the event loop."""

    samples: int = 0  # input samples consumed (at the stream's rate)
    messages: int = 0  # queued items consumed (audio pieces + controls)
    enqueued: float = 0.0  # time.monotonic() when the newest consumed item was queued
    finals: List[Tuple[Result, str]] = field(default_factory=list)  # (result, "endpoint"|"reset"|"end")
    # the open segment after this step; None once finished, and (except per-message streams,
    # which answer every message) when its words are those of this stream's previous partial
    partial: Optional[Result] = None
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
        self.busy = False  # in a worker's step (no other worker takes it meanwhile)
        self.removed = False
        self._words_key = None  # the words of the last partial posted (Scheduler._partial)
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


def default_workers() -> int:
    """One worker per CPU core this process may run on (:func:`asr.evalrun.all_cores`)."""
    return max(1, all_cores())


class Scheduler:
    """Worker threads stepping the streams with pending input in batches.

    Args:
        loop: the asyncio event loop outputs are delivered on.
        max_batch: most streams in one model call (the rest wait for the next step).
        step_s: audio per stream per step, seconds (endpoint checks happen at least this often).
        on_step: ``(batch_size, seconds, audio_seconds)`` after every step (metrics), worker thread.
        workers: worker threads (see the module docstring).
        batch_wait_s: a worker that finds fewer than ``max_batch`` streams ready waits until the
            oldest ready input has been queued this long, so the streams arriving meanwhile join
            its step (see :meth:`_wait_for_batch`); 0: step at once.
    """

    def __init__(self, loop, max_batch: int = 64, step_s: float = 0.5,
                 on_step: Optional[Callable[[int, float, float], None]] = None, workers: int = 1,
                 batch_wait_s: float = 0.0):
        if max_batch < 1 or step_s <= 0 or workers < 1 or not batch_wait_s >= 0:
            raise ValueError("max_batch and workers must be >= 1, step_s > 0 and batch_wait_s >= 0")
        self.batch_wait_s = batch_wait_s
        self.loop = loop
        self.max_batch = max_batch
        self.step_s = step_s
        self.on_step = on_step
        self.workers = workers
        self._cond = threading.Condition()
        self._ready: Deque[Job] = deque()
        self._stopping = False
        self._threads: List[threading.Thread] = []
        self.jobs = 0  # registered and not yet removed (a leak check for /metrics)

    def step_samples(self, sample_rate: int) -> int:
        return max(1, int(round(self.step_s * sample_rate)))

    # ---- event-loop side ----------------------------------------------------------------
    def add(self, stream: Stream, deliver: Callable[[StepOutput], None], per_message: bool = False) -> Job:
        with self._cond:
            self.jobs += 1
        return Job(self, stream, deliver, per_message)

    def _put(self, job: Job, items) -> None:
        with self._cond:
            if job.removed:
                return
            job.items.extend(items)
            if not job.queued and not job.busy:
                job.queued = True
                self._ready.append(job)
                # a worker waiting for its batch to fill (batch_wait_s) needs no wake-up per stream
                if not self.batch_wait_s or len(self._ready) == 1 or len(self._ready) == self.max_batch:
                    self._cond.notify()

    def _remove(self, job: Job) -> None:
        with self._cond:
            if not job.removed:
                self.jobs -= 1
            job.removed = True
            job.items.clear()

    def start(self) -> None:
        for k in range(self.workers):
            t = threading.Thread(target=self._run, name=f"asr-scheduler-{k}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued work, then end the worker threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # ---- worker threads -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return  # stopping; a busy job with more input is re-queued to its own worker
                self._wait_for_batch()
                batch = self._take()
            if batch:
                try:
                    self._step(batch)
                finally:
                    self._release(batch)

    def _wait_for_batch(self) -> None:
        """Lock held, ``_ready`` not empty: wait until its oldest input is ``batch_wait_s`` old
        (or ``max_batch`` streams are ready, or the scheduler stops).

        A model step's cost is mostly reading the weights, once per call and output step
        whatever the batch, so small batches cost much more CPU per stream than large ones
        (README "Capacity and reliability"). A worker that stepped whatever was ready the moment it was idle would step a few streams at a
        time and stay busy at any load. Under load, when a step takes longer than the wait,
        the oldest input is already that old and nothing waits.
        """
        while self.batch_wait_s > 0 and self._ready and not self._stopping and len(self._ready) < self.max_batch:
            head = self._ready[0]
            if not head.items:
                return  # removed meanwhile: _take skips it
            left = head.items[0][2] + self.batch_wait_s - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _take(self) -> list:
        """This step's jobs and their items (lock held); they are busy until released."""
        batch = []
        while self._ready and len(batch) < self.max_batch:
            job = self._ready.popleft()
            job.queued = False
            if job.removed or not job.items:
                continue
            job.busy = True
            batch.append((job, *job._take(self.step_samples(job.stream.sample_rate))))
        if self._ready:
            self._cond.notify()  # more than one batch is waiting: wake another worker
        return batch

    def _release(self, batch) -> None:
        """After a step: jobs with more input go to the back of the queue (round robin)."""
        with self._cond:
            for job, *_ in batch:
                job.busy = False
                if job.items and not job.removed and not job.queued:
                    job.queued = True
                    self._ready.append(job)
                    self._cond.notify()

    def _step(self, batch) -> None:
        t0 = time.perf_counter()
        fed = [b for b in batch if b[1]]  # (job, audio, control, out) with audio
        audio_s = 0.0

        def refused(i: int, e: Exception) -> None:  # protocol validation should make this unreachable
            log.error("feed failed: %s: %s", e.__class__.__name__, e)
            fed[i][3].error = f"{e.__class__.__name__}: {e}"

        feed_streams([job.stream for job, *_ in fed],
                     [a[0] if len(a) == 1 else np.concatenate(a) for _, a, _, _ in fed], on_error=refused)
        try:
            decode_streams([job.stream for job, _, _, out in fed if not out.error])
        except Exception as e:
            log.exception("batched decode failed")
            for job, audio, control, out in batch:
                out.error = out.error or f"{e.__class__.__name__}: {e}"
        for job, audio, control, out in batch:
            if not out.error:
                self._finish_step(job, audio, control, out)
            if audio and not out.error:
                audio_s += out.samples / job.stream.sample_rate
        if self.on_step is not None:
            self.on_step(len(fed), time.perf_counter() - t0, audio_s)
        outs = [(job, out) for job, _, _, out in batch if not job.removed]
        if outs:
            try:
                self.loop.call_soon_threadsafe(_deliver, outs)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

    def _finish_step(self, job: Job, audio, control, out: StepOutput) -> None:
        """Endpoint, control and partial result of one stream after the model step."""
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
                out.partial = self._partial(job, bool(out.finals))
        except Exception as e:
            log.exception("stream step failed")
            out.error = f"{e.__class__.__name__}: {e}"

    @staticmethod
    def _partial(job: Job, closed: bool) -> Optional[Result]:
        """The stream's partial result, or None if its words are the previous partial's
        (assembling words is the largest per-stream cost after the model)."""
        key = job.stream.hypothesis_key()
        if job.per_message or closed or key != job._words_key:
            job._words_key = key
            return job.stream.partial()
        return None


def _deliver(outs) -> None:
    """On the event loop: one step's outputs, in order, to streams still registered."""
    for job, out in outs:
        if not job.removed:
            job.deliver(out)
