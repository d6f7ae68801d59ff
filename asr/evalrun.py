"""Evaluation runs: a test set through the streaming path, several streams as one batch.

Every utterance goes through a :class:`asr.stream.Stream`, fed whole or in ``chunk_ms``
chunks (the output is the same for any chunking); ``batch_size`` streams are stepped together
with :func:`asr.stream.decode_streams`. With ``EvalOptions.beam`` each stream's final result
comes from :class:`asr.beam.BeamCTCDecoder` over the log-probabilities the stream produced, with
``EvalOptions.grammar`` from :class:`asr.grammar.GrammarDecoder`.
Run time is measured twice: wall clock, and CPU time (the decoding thread's on 1 thread,
the process's on more), which stays meaningful when other jobs share the cores.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .beam import BeamOptions
from .data import Utterance

__all__ = ["EvalOptions", "Timing", "all_cores", "torch_threads", "run_streams", "read_waves", "beam_decoder",
           "transcribe_utterances"]


@dataclass(frozen=True)
class EvalOptions:
    chunk_ms: Optional[float] = None  # feed audio in chunks of this many ms (None: whole utterance); same output
    beam: Optional[BeamOptions] = None  # beam search (asr.beam, needs flashlight-text) over each stream's
    #                                     log-probabilities, with an LM if beam.lm; None: greedy decoding
    grammar: Optional[Tuple[str, ...]] = None  # phrases (asr.grammar, "[unk]" allowed): each stream's final result
    #                                            is one of them; None: no grammar. Not with beam.
    batch_size: int = 16  # streams stepped together by decode_streams
    threads: int = 1  # torch CPU threads for the run (0: all cores); batching, not threads, is what pays on a busy CPU

    @property
    def decoder(self) -> str:
        """``"greedy"``, ``"beam"`` (as ``--decoder`` says it) or ``"grammar"`` (``--grammar``)."""
        return "grammar" if self.grammar is not None else "greedy" if self.beam is None else "beam"

    def describe_decoder(self) -> str:
        """One line, e.g. ``greedy`` or ``beam 128 (8 tokens/step, threshold 50) + LM (weight 1, word score 1)``."""
        if self.grammar is not None:
            from .grammar import describe_grammar

            return describe_grammar(self.grammar)
        return "greedy" if self.beam is None else self.beam.describe()

    def check(self) -> None:
        if self.chunk_ms is not None and not (math.isfinite(self.chunk_ms) and self.chunk_ms > 0):
            raise ValueError(f"--chunk-ms must be positive and finite, got {self.chunk_ms}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.threads < 0:
            raise ValueError(f"--threads must be 0 (all cores) or more, got {self.threads}")
        if self.grammar is not None and self.beam is not None:
            raise ValueError("--grammar replaces the decoder: drop --decoder beam / --lm")


@dataclass
class Timing:
    wall_s: float = 0.0  # wall-clock seconds of model + decoding
    cpu_s: float = 0.0  # CPU seconds of the same (thread CPU time on 1 thread, process CPU time on more)


def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch intra-op threads (0: all cores), then restore."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n or all_cores())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def run_streams(rec, waves: Sequence[Tuple["object", int]], chunk_ms: Optional[float], **stream_kwargs) -> list:
    """Feed a batch of ``(samples, sample_rate)`` utterances through streams stepped together
    (``rec.stream(sr, **stream_kwargs)``), whole or in ``chunk_ms`` chunks, and finish them -> the streams."""
    from .stream import audio_chunks, chunk_samples, decode_streams

    streams = [rec.stream(sr, **stream_kwargs) for _, sr in waves]
    pieces = [list(audio_chunks(w, chunk_samples(chunk_ms, sr))) for w, sr in waves]
    for k in range(max((len(p) for p in pieces), default=0)):
        for st, p in zip(streams, pieces):
            if k < len(p):
                st.feed(p[k])
        decode_streams(streams)
    for st in streams:
        st.finish()
    return streams


def read_waves(utts: Sequence[Utterance], idx: Sequence[int]) -> list:
    """``(samples, sample_rate)`` of ``utts[i]`` for each ``i`` in ``idx``."""
    from .audio import read_audio

    return [read_audio(utts[i].audio) for i in idx]


def beam_decoder(rec, opts: EvalOptions, decoder=None):
    """The final-result decoder ``opts`` asks for: None for greedy, else ``decoder`` if given
    (built once by the caller, so a word LM is read once) or a new
    :class:`asr.beam.BeamCTCDecoder` for ``opts.beam`` / :class:`asr.grammar.GrammarDecoder`
    for ``opts.grammar``."""
    if opts.beam is None and opts.grammar is None:
        return None
    if decoder is not None:
        return decoder
    if opts.grammar is not None:
        from .grammar import GrammarDecoder

        return GrammarDecoder(opts.grammar, rec)
    from .beam import BeamCTCDecoder

    return BeamCTCDecoder(rec.tokenizer, rec.step_s, opts.beam)


def transcribe_utterances(rec, utts: Sequence[Utterance], opts: EvalOptions = EvalOptions(),
                          progress: bool = False, desc: str = "eval", decoder=None) -> Tuple[list, List[float], Timing]:
    """Transcribe ``utts`` -> (results in input order, audio durations in s, :class:`Timing`).

    Utterances are sorted by duration and decoded ``opts.batch_size`` at a time; audio of
    the next batch is read in a background thread meanwhile (not counted as compute).
    ``decoder``: a beam decoder already built for ``opts.beam`` (see :func:`beam_decoder`);
    each result is the stream's whole-utterance result, as ``Recognizer.transcribe`` gives.
    """
    import torch  # noqa: F401  (torch before soundfile, as elsewhere)
    from tqdm import tqdm

    opts.check()
    beam = beam_decoder(rec, opts, decoder)
    order = sorted(range(len(utts)), key=lambda i: utts[i].duration)
    batches = [order[i : i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
    results: list = [None] * len(utts)
    durations = [0.0] * len(utts)
    timing = Timing()
    bar = tqdm(total=len(utts), desc=desc, unit="utt", file=sys.stderr, disable=not progress, mininterval=1.0)
    with torch_threads(opts.threads) as n_threads, ThreadPoolExecutor(1) as pool:
        # one thread: the model runs in this thread, so its CPU clock excludes the file reader
        cpu_clock = time.thread_time if n_threads == 1 else time.process_time
        nxt = pool.submit(read_waves, utts, batches[0]) if batches else None
        for k, batch in enumerate(batches):
            waves = nxt.result()
            if k + 1 < len(batches):
                nxt = pool.submit(read_waves, utts, batches[k + 1])
            t0, c0 = time.perf_counter(), cpu_clock()
            res = [st.full_result() for st in run_streams(rec, waves, opts.chunk_ms, final_decoder=beam)]
            timing.wall_s += time.perf_counter() - t0
            timing.cpu_s += cpu_clock() - c0
            for i, r, (w, sr) in zip(batch, res, waves):
                results[i] = r
                durations[i] = len(w) / sr
            bar.update(len(batch))
    bar.close()
    return results, durations, timing
