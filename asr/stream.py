"""One utterance / connection of streaming recognition.

A :class:`Stream` owns every buffer between audio and text:

* resampler context (input at any rate -> 16 kHz), :class:`asr.features.StreamingResampler`;
* samples of the next incomplete 25 ms frame, :class:`asr.features.StreamingFeatures`;
* feature frames not yet forming a whole subsampling block;
* the model state (conv left context + RNN hidden states);
* the CTC decoder state (tokens, times, segment boundaries);
* with a ``final_decoder`` (beam search, optionally with a word LM), the open segment's
  log-probabilities, decoded again when the segment closes: partial results stay greedy
  (cheap, at every step), each final result is the final decoder's.

The shared :class:`asr.Recognizer` holds none of it. Offline transcription is
"feed everything, then :meth:`Stream.finish`", so streaming and offline share
one code path and give the same output for any chunking.

Typical use::

    rec = asr.load_model("default")
    st = rec.stream(sample_rate=16000)
    for chunk in chunks:            # numpy int16/float32, any length
        st.accept_waveform(chunk)
        print(st.partial().text)
    print(st.finish().text)

or, for audio already in memory, ``feed_chunks(st, samples, chunk_samples(160, sr))`` (160 ms chunks).

Several streams are stepped as one batch (the server does this): :func:`feed_streams`
buffers their audio and extracts the features of all of them in one FFT, and
:func:`decode_streams` runs the model once for all streams with pending frames.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Callable, Iterator, List, Optional

import torch

from .decoding import Decoder, EndpointConfig, GreedyCTCDecoder, Result, Word
from .features import StreamingFeatures, StreamingResampler, to_mono_float
from .model import stack_states, unstack_states

__all__ = ["Stream", "TAIL_PADDING_S", "decode_streams", "feed_streams", "feed_chunks", "audio_chunks", "chunk_samples", "StreamClosedError",
           "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE"]

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000  # Hz of the input audio a stream accepts
# Silence fed after the end of input (sherpa-onnx's "tail paddings"): a causal model emits a
# word's last tokens a little after hearing them, so a clip cut right after its last word
# would lose them.
TAIL_PADDING_S = 0.3

_ids = itertools.count(1)



class StreamClosedError(RuntimeError):
    """Audio fed to, or :meth:`Stream.finish` called on, a finished stream."""


class Stream:
    """Streaming recognition state for one audio stream.

    Args:
        recognizer: the shared model bundle (``asr.load_model(...)``).
        sample_rate: rate of the audio that will be fed, Hz (resampled to 16 kHz).
        endpoint: endpointing rule used by :meth:`pop_endpoint`.
        tail_padding_s: seconds of silence (zeros) :meth:`finish` feeds after the input (none
            after an empty input).
        keep_log_probs: keep every output step's log-probabilities (tests, analysis).
        final_decoder: decodes each segment's ``(steps, vocab)`` log-probabilities into its
            final :class:`Result` when the segment closes (:meth:`pop_endpoint`,
            :meth:`reset_segment`, :meth:`finish`; word times relative to the segment start),
            an :class:`asr.decoding.Decoder` such as :class:`asr.beam.BeamCTCDecoder`, which may be
            shared by many streams used from one thread. None: finals are the greedy hypothesis.
    """

    def __init__(self, recognizer, sample_rate: int = 16000, endpoint: EndpointConfig = EndpointConfig(),
                 keep_log_probs: bool = False, final_decoder: Optional[Decoder] = None,
                 tail_padding_s: float = TAIL_PADDING_S):
        if not isinstance(sample_rate, int) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be an integer between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, "
                             f"got {sample_rate!r}")
        if not 0 <= tail_padding_s <= 10:
            raise ValueError(f"tail_padding_s must be between 0 and 10 s, got {tail_padding_s!r}")
        self.id = next(_ids)
        self.tail_padding_s = tail_padding_s
        self.rec = recognizer
        self.sample_rate = sample_rate
        self.endpoint_cfg = endpoint
        fcfg = recognizer.features
        self.resampler = StreamingResampler(sample_rate, fcfg.sample_rate)
        self.features = StreamingFeatures(recognizer.logmel)
        self.sub = recognizer.model.cfg.subsampling
        self._frames = torch.zeros(0, fcfg.n_mels)  # frames not yet given to the model
        self.state = recognizer.model.init_state(1)
        self.decoder = GreedyCTCDecoder(recognizer.tokenizer, recognizer.step_s)
        self.samples_in = 0  # input samples received (at self.sample_rate)
        self.finished = False
        self.keep_log_probs = keep_log_probs
        self.log_probs: List[torch.Tensor] = []
        self.final_decoder = final_decoder
        self._seg_log_probs: List[torch.Tensor] = []  # the open segment's (final_decoder only)
        self._seg_skipped = 0  # steps at the segment's start that belong to the previous one's last token
        self._continues: Optional[int] = None  # that token's id while its run may still go on
        self._final_words: List[Word] = []  # words of the closed segments' finals (final_decoder only)

    # ---- input ---------------------------------------------------------------------
    @property
    def seconds_in(self) -> float:
        return self.samples_in / self.sample_rate

    def feed(self, samples) -> None:
        """Buffer audio and extract its features; runs no model (see :func:`decode_streams`;
        :func:`feed_streams` feeds many streams at once, with the same result).

        samples: 1-D PCM (int16, int32, float32 in [-1, 1]) or ``(samples, channels)``.
        """
        feed_streams([self], [samples])

    def _windows(self, samples) -> torch.Tensor:
        """Check and resample ``samples``: the analysis windows ``(frames, win_length)`` they complete."""
        if self.finished:
            raise StreamClosedError("stream already finished")
        wave = to_mono_float(samples)
        if wave.numel() == 0:
            return wave.new_zeros(0, self.features.cfg.win_length)
        self.samples_in += wave.numel()
        return self.features.windows(self.resampler.accept(wave))

    def _add_frames(self, frames: torch.Tensor) -> None:
        if frames.numel():
            self._frames = torch.cat([self._frames, frames]) if self._frames.numel() else frames

    @property
    def ready_frames(self) -> int:
        """Frames the model can consume now (whole subsampling blocks)."""
        return (self._frames.shape[0] // self.sub) * self.sub

    def _take_frames(self) -> torch.Tensor:
        n = self.ready_frames
        out, self._frames = self._frames[:n], self._frames[n:]
        return out

    def _accept_output(self, log_probs: torch.Tensor, state, best=None) -> None:
        """``best``: ``(ids, probs)`` lists, each step's arg-max and its posterior, if known."""
        self.state = state
        if self.keep_log_probs and log_probs.numel():
            self.log_probs.append(log_probs)
        if self.final_decoder is not None and log_probs.numel():
            self._keep_segment_log_probs(log_probs)
        if best is None:
            self.decoder.accept(log_probs)
        else:
            self.decoder.accept_best(*best)

    def _keep_segment_log_probs(self, log_probs: torch.Tensor) -> None:
        """Keep the open segment's log-probs for the final decoder. A segment closed in the
        middle of a token (a client reset) leaves that token's run to the closed segment, as
        the greedy decoder does, so no token is decoded twice."""
        if self._continues is not None:
            ids = log_probs.max(dim=-1).indices.tolist()
            n = next((k for k, i in enumerate(ids) if i != self._continues), len(ids))
            self._seg_skipped += n
            if n < len(ids):
                self._continues = None
            log_probs = log_probs[n:]
        if log_probs.numel():
            self._seg_log_probs.append(log_probs)

    def accept_waveform(self, samples) -> None:
        """Feed audio and decode everything it completes (single-stream use)."""
        self.feed(samples)
        decode_streams([self])

    def hypothesis_key(self) -> tuple:
        """Changes whenever the words of :meth:`partial` may have (not with its ``end`` alone):
        a server skips assembling a partial result that would repeat the previous one."""
        d = self.decoder
        return len(d.tokens), d.seg_bounds[-1], d.tokens[-1].last if d.tokens else -1, self.finished

    # ---- output --------------------------------------------------------------------
    def partial(self) -> Result:
        """Current hypothesis of the open segment; changes nothing. ``stable``: its leading words
        that no later partial or final will change (none while a final decoder re-decodes segments)."""
        res = self.decoder.result()
        if self.final_decoder is not None:
            res.stable = 0
        return res

    def pop_endpoint(self) -> Optional[Result]:
        """If the endpoint rule fires, close the segment and return its final result."""
        if self.decoder.endpoint(self.endpoint_cfg):
            return self._close_segment()
        return None

    def reset_segment(self) -> Result:
        """Close the open segment now (client "reset") and return its final result."""
        return self._close_segment()

    def _close_segment(self) -> Result:
        res = self._final(self.decoder.result())
        self.decoder.close_segment()
        self._seg_log_probs, self._seg_skipped = [], 0
        if self.final_decoder is not None:
            self._continues = self.decoder.prev or None  # the greedy path ends inside a token
            self._final_words += res.words
        return res

    def _final(self, greedy: Result) -> Result:
        """The open segment's final result: ``greedy``, or the final decoder's over its log-probs."""
        if self.final_decoder is None:
            return greedy
        if not self._seg_log_probs:
            return Result("", [], greedy.start, greedy.end)
        res = self.final_decoder.decode(torch.cat(self._seg_log_probs))
        t0 = greedy.start + self._seg_skipped * self.rec.step_s  # stream time of the first kept step
        words = [Word(w.word, w.start + t0, w.end + t0, w.conf) for w in res.words]
        out = Result.of_words(words, greedy.start, greedy.end)
        out.alternatives = [a.shifted(t0) for a in res.alternatives]  # n-best decoders
        return out

    def finish(self) -> Result:
        """End of input: flush every buffer, feed ``tail_padding_s`` of silence, decode, and
        return the last segment's result.

        Frames that do not fill a whole subsampling block (< 40 ms) are dropped, as in
        whole-utterance training. For the whole stream's text use :meth:`full_result`.
        """
        if self.finished:
            raise StreamClosedError("stream already finished")
        tail = self.resampler.flush()
        pad = int(round(self.tail_padding_s * self.rec.features.sample_rate)) if self.samples_in else 0
        if pad:
            tail = torch.cat([tail, torch.zeros(pad, dtype=tail.dtype)])
        if tail.numel():
            self._add_frames(self.features.accept(tail))
        decode_streams([self])
        self.finished = True
        return self._within_input(self._close_segment() if self.final_decoder is not None else self.decoder.result())

    def full_result(self) -> Result:
        """Hypothesis over the whole stream, all segments joined (with a final decoder: the
        closed segments' finals and the open segment decoded by it)."""
        greedy = self.decoder.full_result()
        if self.final_decoder is None:
            return self._within_input(greedy)
        words = self._final_words + (self._final(self.decoder.result()).words if not self.finished else [])
        return self._within_input(Result.of_words(words, greedy.start, greedy.end))

    def _within_input(self, res: Result) -> Result:
        """After :meth:`finish`, ``res`` with no time past the end of the input: a word the
        model ends in the tail padding ends with the audio."""
        if not self.finished:
            return res
        t, step = self.seconds_in, self.rec.step_s

        def clip(words: List[Word]) -> List[Word]:
            out = []
            for w in words:
                end = min(w.end, t)
                out.append(Word(w.word, max(min(w.start, end - step), 0.0), end, w.conf))
            return out

        res.words = clip(res.words)
        res.end = min(res.end, t)
        res.start = min(res.start, res.end)
        for a in res.alternatives:
            a.words = clip(a.words)
        return res

    def all_log_probs(self) -> torch.Tensor:
        """``(steps, vocab)``; needs ``keep_log_probs=True``."""
        if not self.log_probs:
            return torch.zeros(0, self.rec.model.cfg.vocab_size)
        return torch.cat(self.log_probs)


def chunk_samples(chunk_ms: Optional[float], sample_rate: int) -> Optional[int]:
    """Samples in a chunk of ``chunk_ms`` milliseconds at ``sample_rate`` (at least 1); None or 0 ms: None."""
    return max(1, int(round(sample_rate * chunk_ms / 1000))) if chunk_ms else None


def audio_chunks(samples, size: Optional[int]) -> Iterator:
    """Consecutive pieces of ``size`` samples of ``samples`` (the last one may be shorter);
    ``size`` None: the whole array as one piece. Empty audio gives no pieces."""
    step = size or max(len(samples), 1)
    for i in range(0, len(samples), step):
        yield samples[i : i + step]


def feed_chunks(stream: "Stream", samples, size: Optional[int] = None,
                after_each: Optional[Callable[["Stream"], None]] = None) -> "Stream":
    """Feed ``samples`` to ``stream`` in pieces of ``size`` samples (None: all at once), decoding
    after each (:meth:`Stream.accept_waveform`) and then calling ``after_each(stream)`` if given,
    e.g. to read partial results. Does not finish the stream; returns it."""
    for piece in audio_chunks(samples, size):
        stream.accept_waveform(piece)
        if after_each is not None:
            after_each(stream)
    return stream


def feed_streams(streams: List[Stream], samples: list,
                 on_error: Optional[Callable[[int, Exception], None]] = None) -> None:
    """:meth:`Stream.feed` for many streams: ``samples[i]`` to ``streams[i]``, with one FFT and
    one mel product for all their new frames (the values of feeding each alone).

    Input a stream refuses (finished, bad samples) raises; with ``on_error``, that stream is
    skipped and reported as ``on_error(i, exception)`` while the others are fed.
    """
    groups: dict = {}  # streams of one recognizer share its LogMel
    for i, (st, x) in enumerate(zip(streams, samples)):
        try:
            w = st._windows(x)
        except Exception as e:
            if on_error is None:
                raise
            on_error(i, e)
            continue
        if w.shape[0]:
            groups.setdefault(id(st.features.logmel), []).append((st, w))
    for items in groups.values():
        wins = [w for _, w in items]
        feats = items[0][0].features.logmel.of_windows(wins[0] if len(wins) == 1 else torch.cat(wins))
        for (st, _), f in zip(items, torch.split(feats, [w.shape[0] for w in wins])):
            st._add_frames(f)


_onednn_lock = threading.Lock()
_onednn_users = 0  # threads inside _without_onednn()
_onednn_saved = True


@contextlib.contextmanager
def _without_onednn():
    """oneDNN off while any thread steps streams. The flag is process-wide: with nested
    ``torch.backends.mkldnn.flags()`` contexts, worker threads of a server would restore
    each other's settings out of order; here the first thread in turns it off, the last out
    restores it."""
    global _onednn_users, _onednn_saved
    with _onednn_lock:
        if _onednn_users == 0:
            _onednn_saved = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
        _onednn_users += 1
    try:
        yield
    finally:
        with _onednn_lock:
            _onednn_users -= 1
            if _onednn_users == 0:
                torch.backends.mkldnn.enabled = _onednn_saved


@torch.inference_mode()
def decode_streams(streams: List[Stream]) -> None:
    """Run the model once over the whole blocks pending in ``streams``, as one batch.

    Streams sharing one recognizer are stacked (padded to the longest; each keeps its
    own length and state), so the result equals stepping each stream alone.

    oneDNN is switched off for these calls: its RNN kernels pay a large set-up cost per
    call, which dominates streaming's many short calls (measured with tools/bench_rtf.py,
    40 ms chunks, 1 thread: LSTM RTF 0.30 -> 0.065, GRU 0.065 -> 0.059).
    """
    with _without_onednn():
        _decode_streams(streams)


def _decode_streams(streams: List[Stream]) -> None:
    active = [s for s in streams if s.ready_frames > 0]
    if not active:
        return
    model = active[0].rec.model
    if len(active) == 1:
        s = active[0]
        x = s._take_frames()
        lp, lens, st = model.infer(x[None], torch.tensor([x.shape[0]]), s.state)
        s._accept_output(lp[0, : int(lens[0])], st)
        return
    chunks = [s._take_frames() for s in active]
    lengths = torch.tensor([c.shape[0] for c in chunks])
    x = torch.nn.utils.rnn.pad_sequence(chunks, batch_first=True)
    state = stack_states([s.state for s in active])
    lp, lens, st = model.infer(x, lengths, state)
    best, ids = lp.max(dim=-1)  # greedy search's arg-max for the whole batch at once
    ids_l, probs_l, lens_l = ids.tolist(), best.exp().tolist(), lens.tolist()
    for i, (s, sst) in enumerate(zip(active, unstack_states(st))):
        n = lens_l[i]
        s._accept_output(lp[i, :n], sst, (ids_l[i][:n], probs_l[i][:n]))
