"""Speed and latency of a model: real-time factors of single streams, and streaming latency.

``rtf`` values are compute seconds per audio second, each twice: wall clock, and CPU time
(``cpu_rtf``: the decoding thread's CPU time on 1 thread, the process's on more), which stays
meaningful when other jobs share the cores; file reading is never timed.

Latency (:func:`measure_latency`, one utterance at a time): audio is fed at real-time pace
in ``chunk_ms`` chunks; a word's latency is the moment it first appears (correctly, at its
final position) in the running hypothesis, minus the time its last token ends in the audio
(the model's own word end time: it can come out slightly negative when the token's run of
frames goes on after it is first shown); the final latency is the time from the end of the
audio to the final result.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, List, Optional, Sequence, Tuple

from .data import Utterance
from .evalrun import EvalOptions, all_cores, beam_decoder, transcribe_utterances

__all__ = ["SpeedResult", "LatencyResult", "measure_speed", "measure_latency"]


@dataclass
class SpeedResult:
    """Real-time factors (compute seconds per audio second) of single streams: wall clock and CPU."""

    utterances: int
    audio_s: float
    chunk_ms: Optional[float]
    rtf_1_thread: float
    rtf_all_threads: float
    all_threads: int
    cpu_rtf_1_thread: float = 0.0
    cpu_rtf_all_threads: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("audio_s", "rtf_1_thread", "rtf_all_threads", "cpu_rtf_1_thread", "cpu_rtf_all_threads"):
            d[k] = round(d[k], 4)
        return d


def measure_speed(rec, utts: Sequence[Utterance], opts: EvalOptions = EvalOptions(), progress: bool = False,
                  decoder=None) -> SpeedResult:
    """Time one stream at a time (no batching) over ``utts`` on 1 thread, then on all cores."""
    rtf, cpu = {}, {}
    audio = 0.0
    decoder = beam_decoder(rec, opts, decoder)
    for n in (1, all_cores()):
        o = replace(opts, batch_size=1, threads=n)
        _, durs, t = transcribe_utterances(rec, utts, o, progress, desc=f"speed {n} thr", decoder=decoder)
        audio = sum(durs)
        rtf[n], cpu[n] = t.wall_s / max(audio, 1e-9), t.cpu_s / max(audio, 1e-9)
    n = all_cores()
    return SpeedResult(len(utts), audio, opts.chunk_ms, rtf[1], rtf[n], n, cpu[1], cpu[n])


@dataclass
class LatencyResult:
    """Latencies of a stream fed at real-time pace (seconds)."""

    utterances: int
    chunk_ms: float
    word_latency_s: List[float] = field(default_factory=list)  # one per word of the final results
    final_latency_s: List[float] = field(default_factory=list)  # one per utterance: end of audio -> final

    @staticmethod
    def _pct(xs: Sequence[float], q: float) -> Optional[float]:
        import numpy as np

        return round(float(np.percentile(xs, q)), 4) if len(xs) else None

    def to_dict(self) -> dict:
        w, f = self.word_latency_s, self.final_latency_s
        return {
            "utterances": self.utterances, "chunk_ms": self.chunk_ms, "words": len(w),
            "word_median_s": self._pct(w, 50), "word_p95_s": self._pct(w, 95),
            "final_median_s": self._pct(f, 50), "final_p95_s": self._pct(f, 95),
        }


def measure_latency(rec, utts: Sequence[Utterance], chunk_ms: float = 160.0, progress: bool = False,
                    clock: Callable[[], float] = time.perf_counter,
                    sleep: Callable[[float], None] = time.sleep, decoder=None) -> LatencyResult:
    """Feed each utterance at real-time pace (one at a time) and time its words: partial results
    greedy, the final result by ``decoder`` (an :class:`asr.decoding.Decoder`; None: greedy), as
    a live stream gives them.

    The chunk covering audio ``[a, b)`` is given to the stream at ``start + b`` (the
    moment a live source would have it); the hypothesis is read after every chunk.
    Word ``k`` of the final result counts as shown at the first read whose first
    ``k + 1`` words equal the final's (greedy CTC only ever appends, so this is the
    moment the word is complete; a word the final decoder changes counts at the final).
    """
    from tqdm import tqdm

    from .audio import read_audio

    if not (math.isfinite(chunk_ms) and chunk_ms > 0):
        raise ValueError(f"--latency-chunk-ms must be positive and finite, got {chunk_ms}")
    out = LatencyResult(len(utts), chunk_ms)
    for u in tqdm(utts, desc="latency", unit="utt", file=sys.stderr, disable=not progress):
        wave, sr = read_audio(u.audio)
        seen, t_final, final = _paced_run(rec, wave, sr, chunk_ms, clock, sleep, decoder)
        out.final_latency_s.append(max(0.0, t_final - len(wave) / sr))
        names = [w.word for w in final]
        for k, w in enumerate(final):
            t_show = next((t for t, ws in seen if ws[: k + 1] == names[: k + 1]), t_final)
            out.word_latency_s.append(t_show - w.end)
    return out


def _paced_run(rec, wave, sr: int, chunk_ms: float, clock: Callable[[], float], sleep: Callable[[float], None],
               decoder=None):
    """One utterance fed at real-time pace -> (``(time since start, words)`` whenever the partial's
    words change, time of the final result since start, the final words)."""
    from .stream import audio_chunks, chunk_samples

    st = rec.stream(sr, final_decoder=decoder)  # one segment (no endpointing): the partial is the whole
    seen: List[Tuple[float, List[str]]] = []
    start, fed = clock(), 0
    for piece in audio_chunks(wave, chunk_samples(chunk_ms, sr)):
        fed += len(piece)
        wait = start + fed / sr - clock()  # the moment a live source would have this chunk
        if wait > 0:
            sleep(wait)
        st.accept_waveform(piece)
        words = [w.word for w in st.partial().words]
        if not seen or words != seen[-1][1]:
            seen.append((clock() - start, words))
    st.finish()
    t_final = clock() - start
    return seen, t_final, st.full_result().words
