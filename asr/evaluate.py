"""``asr eval``: word and character error rates, speed and latency of a model on test sets.

Inputs are JSON-lines manifests (:func:`asr.data.read_manifest`) and LibriSpeech-layout
directories (``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` lines ``UTT-ID TEXT`` next to
``UTT-ID.flac``, found recursively). Every utterance goes through the streaming path:
a :class:`asr.stream.Stream` per utterance, fed whole or in ``--chunk-ms`` chunks (the
output is the same for any chunking), several streams stepped as one batch with
:func:`asr.stream.decode_streams`. ``--decoder beam`` runs :mod:`asr.beam` over the
log-probabilities the streams produced.

Scoring (:func:`score`, :func:`score_pairs`): reference and hypothesis both go through
:func:`asr.text.normalize` (the normalisation training uses), then jiwer aligns them.
WER = (S + D + I) / N over the whole corpus (N = reference words; not a mean of
per-utterance rates), CER likewise over characters (spaces included, as jiwer counts
them).

Empty references (after normalisation) are kept, not dropped: every hypothesis word
counts as an insertion (every hypothesis character as a character error), and the
utterance adds nothing to N. Wherever N would be 0 (an empty-reference utterance on
its own, or a set of them) the rate is computed with N = 1, so it stays finite: 0 for
an empty hypothesis, otherwise the number of inserted words.

Speed: ``rtf`` is the compute time of the evaluation run itself (batched, ``--threads``)
over the audio duration; ``--speed-utts N`` also times single streams on 1 thread and
on all cores (file reading is never timed). Each RTF comes twice: wall clock, and CPU
time (``cpu_rtf``: the decoding thread's CPU time on 1 thread, the process's on more),
which stays meaningful when other jobs share the cores. Latency (``--latency``, on the first
``--latency-utts`` utterances, one at a time): audio is fed at real-time pace in
``--latency-chunk-ms`` chunks; a word's latency is the moment it first appears
(correctly, at its final position) in the running hypothesis, minus the time its
last token ends in the audio (the model's own word end time: it can come out slightly
negative when the token's run of frames goes on after it is first shown); the final
latency is the time from the end of the audio to the final result.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .beam import BeamOptions
from .data import ManifestError, Utterance, read_manifest
from .text import normalize

__all__ = [
    "Score", "UttResult", "EvalOptions", "run_streams", "SpeedResult", "LatencyResult", "EvalReport",
    "Timing", "score", "score_pairs", "alignment_text", "read_librispeech_dir", "load_inputs",
    "transcribe_utterances", "beam_decoder", "measure_speed", "measure_latency", "evaluate", "write_outputs",
    "register", "GROUP_FIELDS",
]

#: manifest fields a report is broken down by (when they take at least two values); "length" is the
#: reference length in words (buckets of ``length_bucket``, per set when there are several sets);
#: "noise" is the added noise kind of sets made by tools/noisy_manifest.py
GROUP_FIELDS = ("set", "voice", "engine", "speaker", "noise", "length")


# ---------------------------------------------------------------------------- scoring
@dataclass
class Score:
    """Edit operations of hypotheses against references; adds up with ``+``.

    Rates are fractions (``wer == 0.5``); :meth:`to_dict` reports them in percent.
    """

    utterances: int = 0
    ref_words: int = 0
    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_chars: int = 0
    char_errors: int = 0  # character substitutions + deletions + insertions
    empty_refs: int = 0  # utterances whose normalised reference is empty

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / max(self.ref_words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.ref_chars, 1)

    def __add__(self, other: "Score") -> "Score":
        return Score(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Score)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["wer"] = round(100 * self.wer, 2)
        d["cer"] = round(100 * self.cer, 2)
        return d


def _counts_from_alignment(chunks) -> Tuple[int, int, int, int]:
    """jiwer alignment chunks -> (hits, substitutions, deletions, insertions)."""
    h = s = d = i = 0
    for c in chunks:
        n_ref, n_hyp = c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx
        if c.type == "equal":
            h += n_ref
        elif c.type == "substitute":
            s += n_ref
        elif c.type == "delete":
            d += n_ref
        elif c.type == "insert":
            i += n_hyp
    return h, s, d, i


def score_pairs(refs: Sequence[str], hyps: Sequence[str], normalise: bool = True) -> List[Score]:
    """Per-utterance :class:`Score` of each (reference, hypothesis) pair.

    ``normalise``: pass both through :func:`asr.text.normalize` first (the default;
    switch it off only for text that is already normalised).
    """
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if normalise:
        refs = [normalize(r) for r in refs]
        hyps = [normalize(h) for h in hyps]
    else:
        refs = [" ".join(r.split()) for r in refs]
        hyps = [" ".join(h.split()) for h in hyps]
    out = [Score(utterances=1) for _ in refs]
    # empty references are scored here, not by jiwer (jiwer 3 rejects them)
    idx = [k for k, r in enumerate(refs) if r]
    for k, (r, h) in enumerate(zip(refs, hyps)):
        if not r:
            out[k].empty_refs = 1
            out[k].insertions = len(h.split())
            out[k].char_errors = len(h)
    if idx:
        R, H = [refs[k] for k in idx], [hyps[k] for k in idx]
        words = jiwer.process_words(R, H)
        chars = jiwer.process_characters(R, H)
        for k, wa, ca in zip(idx, words.alignments, chars.alignments):
            sc = out[k]
            sc.hits, sc.substitutions, sc.deletions, sc.insertions = _counts_from_alignment(wa)
            sc.ref_words = len(refs[k].split())
            sc.ref_chars = len(refs[k])
            sc.char_errors = sum(_counts_from_alignment(ca)[1:])
    return out


def score(refs: Sequence[str], hyps: Sequence[str], normalise: bool = True) -> Score:
    """Corpus score: ``score(["a b c d"], ["a x c"]).wer == 0.5`` (1 substitution + 1 deletion)."""
    return sum(score_pairs(refs, hyps, normalise), Score())


def alignment_text(ref: str, hyp: str) -> str:
    """jiwer's word alignment (REF / HYP / S D I markers) of one normalised pair."""
    import jiwer

    if not ref and not hyp:
        return "REF: \nHYP: "
    try:
        out = jiwer.process_words([ref], [hyp])
        try:
            vis = jiwer.visualize_alignment(out, show_measures=False, skip_correct=False, line_width=100)
        except TypeError:  # jiwer 3: no line_width
            vis = jiwer.visualize_alignment(out, show_measures=False, skip_correct=False)
    except ValueError:  # jiwer 3 refuses an empty reference
        return f"REF: {'*' * max(len(hyp), 1)}\nHYP: {hyp}"
    lines = [ln for ln in vis.splitlines() if not ln.startswith("=== SENTENCE")]
    # wrapped blocks, minus the empty ones jiwer leaves before a word longer than a line
    blocks = "\n".join(lines).split("\n\n")
    blocks = [b.strip("\n") for b in blocks if any(ln.strip() not in ("", "REF:", "HYP:") for ln in b.splitlines())]
    return "\n\n".join(blocks).rstrip()


# ------------------------------------------------------------------------------ inputs
def read_librispeech_dir(root) -> List[Utterance]:
    """All utterances of a LibriSpeech-layout tree (``*.trans.txt`` + ``.flac``/``.wav``).

    ``speaker`` and ``chapter`` come from ``SPEAKER-CHAPTER-NNNN`` utterance ids. Errors
    name the transcript file and line.
    """
    import soundfile as sf

    root = Path(root)
    trans = sorted(root.rglob("*.trans.txt"))
    if not trans:
        raise ValueError(f"{root}: no *.trans.txt transcripts found (expected a LibriSpeech-layout directory)")
    out: List[Utterance] = []
    for tf in trans:
        with open(tf, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                audio = next((tf.parent / (uid + ext) for ext in (".flac", ".wav") if (tf.parent / (uid + ext)).exists()), None)
                if audio is None:
                    raise ManifestError(f"{tf}:{n}: audio file not found: {tf.parent / (uid + '.flac')}")
                try:
                    duration = sf.info(str(audio)).duration
                except Exception as e:  # noqa: BLE001  (libsndfile error types vary by version)
                    raise ManifestError(f"{tf}:{n}: cannot read audio {audio}: {e}") from None
                extra = {"id": uid}
                parts = uid.split("-")
                if len(parts) == 3:
                    extra.update(speaker=parts[0], chapter=parts[1])
                out.append(Utterance(str(audio), text, float(duration), extra))
    return out


def load_inputs(paths: Sequence[str], limit: int = 0) -> List[Utterance]:
    """Utterances of manifests and LibriSpeech directories, raw (unnormalised) text.

    Each utterance's ``extra`` gains ``id`` (when missing: the audio file's stem) and
    ``set`` (the manifest's file stem / the directory's name). ``limit`` keeps the
    first N utterances of each input.
    """
    utts: List[Utterance] = []
    names: Dict[str, int] = {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            got = read_librispeech_dir(path)
            name = path.resolve().name
        elif path.exists():
            got = read_manifest(path, normalise=False)
            name = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
        else:
            raise FileNotFoundError(f"{p}: no such manifest or directory")
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}#{names[name]}"
        if limit:
            got = got[:limit]
        for u in got:
            u.extra.setdefault("id", Path(u.audio).stem)
            u.extra["id"] = str(u.extra["id"])
            u.extra["set"] = name
        utts += got
    if not utts:
        raise ValueError(f"no utterances to evaluate in {', '.join(map(str, paths))}")
    return utts


# ------------------------------------------------------------------------ transcription
@dataclass(frozen=True)
class EvalOptions:
    chunk_ms: Optional[float] = None  # feed audio in chunks of this many ms (None: whole utterance); same output
    beam: Optional[BeamOptions] = None  # beam search (asr.beam, needs flashlight-text) over each stream's
    #                                     log-probabilities, with an LM if beam.lm; None: greedy decoding
    batch_size: int = 16  # streams stepped together by decode_streams
    threads: int = 1  # torch CPU threads for the run (0: all cores); batching, not threads, is what pays on a busy CPU

    @property
    def decoder(self) -> str:
        """``"greedy"`` or ``"beam"``, as ``--decoder`` says it."""
        return "greedy" if self.beam is None else "beam"

    def describe_decoder(self) -> str:
        """One line, e.g. ``greedy`` or ``beam 128 (8 tokens/step, threshold 50) + LM (weight 1, word score 1)``."""
        return "greedy" if self.beam is None else self.beam.describe()

    def check(self) -> None:
        if self.chunk_ms is not None and not (math.isfinite(self.chunk_ms) and self.chunk_ms > 0):
            raise ValueError(f"--chunk-ms must be positive and finite, got {self.chunk_ms}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.threads < 0:
            raise ValueError(f"--threads must be 0 (all cores) or more, got {self.threads}")


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
    from .stream import decode_streams

    streams = [rec.stream(sr, **stream_kwargs) for _, sr in waves]
    if chunk_ms is None:
        for st, (w, _) in zip(streams, waves):
            st.feed(w)
        decode_streams(streams)
    else:
        steps = [max(1, int(round(sr * chunk_ms / 1000))) for _, sr in waves]
        for k in range(max(math.ceil(len(w) / s) for (w, _), s in zip(waves, steps))):
            for st, (w, _), s in zip(streams, waves, steps):
                if k * s < len(w):
                    st.feed(w[k * s : (k + 1) * s])
            decode_streams(streams)
    for st in streams:
        st.finish()
    return streams


def _decode_batch(rec, waves: Sequence[Tuple["object", int]], chunk_ms: Optional[float], beam) -> list:
    """Transcribe a batch of utterances -> list of Result, as ``Recognizer.transcribe`` does:
    greedy, or ``beam`` decoding the stream's final (whole-utterance) segment."""
    return [st.full_result() for st in run_streams(rec, waves, chunk_ms, final_decoder=beam)]


def _read(utts: Sequence[Utterance], idx: Sequence[int]):
    from .audio import read_audio

    return [read_audio(utts[i].audio) for i in idx]


@dataclass
class Timing:
    wall_s: float = 0.0  # wall-clock seconds of model + decoding
    cpu_s: float = 0.0  # CPU seconds of the same (thread CPU time on 1 thread, process CPU time on more)


def beam_decoder(rec, opts: EvalOptions, decoder=None):
    """The final-result decoder ``opts`` asks for: None for greedy, else ``decoder`` if given
    (built once by the caller, so a word LM is read once) or a new
    :class:`asr.beam.BeamCTCDecoder` for ``opts.beam``."""
    if opts.beam is None:
        return None
    if decoder is not None:
        return decoder
    from .beam import BeamCTCDecoder

    return BeamCTCDecoder(rec.tokenizer, rec.step_s, opts.beam)


def transcribe_utterances(rec, utts: Sequence[Utterance], opts: EvalOptions = EvalOptions(),
                          progress: bool = False, desc: str = "eval", decoder=None) -> Tuple[list, List[float], Timing]:
    """Transcribe ``utts`` -> (results in input order, audio durations in s, :class:`Timing`).

    Utterances are sorted by duration and decoded ``opts.batch_size`` at a time; audio of
    the next batch is read in a background thread meanwhile (not counted as compute).
    ``decoder``: a beam decoder already built for ``opts.beam`` (see :func:`beam_decoder`).
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
        nxt = pool.submit(_read, utts, batches[0]) if batches else None
        for k, batch in enumerate(batches):
            waves = nxt.result()
            if k + 1 < len(batches):
                nxt = pool.submit(_read, utts, batches[k + 1])
            t0, c0 = time.perf_counter(), cpu_clock()
            res = _decode_batch(rec, waves, opts.chunk_ms, beam)
            timing.wall_s += time.perf_counter() - t0
            timing.cpu_s += cpu_clock() - c0
            for i, r, (w, sr) in zip(batch, res, waves):
                results[i] = r
                durations[i] = len(w) / sr
            bar.update(len(batch))
    bar.close()
    return results, durations, timing


# ------------------------------------------------------------------------------- speed
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


# ----------------------------------------------------------------------------- latency
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
                    sleep: Callable[[float], None] = time.sleep) -> LatencyResult:
    """Feed each utterance at real-time pace (one at a time, greedy decoding) and time its words.

    The chunk covering audio ``[a, b)`` is given to the stream at ``start + b`` (the
    moment a live source would have it); the hypothesis is read after every chunk.
    Word ``k`` of the final result counts as shown at the first read whose first
    ``k + 1`` words equal the final's (greedy CTC only ever appends, so this is the
    moment the word is complete).
    """
    from tqdm import tqdm

    from .audio import read_audio

    if not (math.isfinite(chunk_ms) and chunk_ms > 0):
        raise ValueError(f"--latency-chunk-ms must be positive and finite, got {chunk_ms}")
    out = LatencyResult(len(utts), chunk_ms)
    for u in tqdm(utts, desc="latency", unit="utt", file=sys.stderr, disable=not progress):
        wave, sr = read_audio(u.audio)
        step = max(1, int(round(sr * chunk_ms / 1000)))
        st = rec.stream(sr)
        seen: List[Tuple[float, List[str]]] = []  # (time since start, words) whenever they change
        start = clock()
        for i in range(0, len(wave), step):
            available = min(i + step, len(wave)) / sr
            wait = start + available - clock()
            if wait > 0:
                sleep(wait)
            st.accept_waveform(wave[i : i + step])
            words = [w.word for w in st.full_result().words]
            if not seen or words != seen[-1][1]:
                seen.append((clock() - start, words))
        st.finish()
        t_final = clock() - start
        out.final_latency_s.append(max(0.0, t_final - len(wave) / sr))
        final = st.full_result().words
        names = [w.word for w in final]
        for k, w in enumerate(final):
            t_show = next((t for t, ws in seen if ws[: k + 1] == names[: k + 1]), t_final)
            out.word_latency_s.append(t_show - w.end)
    return out


# ------------------------------------------------------------------------------ report
@dataclass
class UttResult:
    id: str
    set: str
    audio: str
    duration: float  # seconds of audio decoded
    ref: str  # normalised reference
    hyp: str  # normalised hypothesis
    score: Score
    fields: dict = field(default_factory=dict)  # other manifest fields (voice, engine, speaker, ...)
    words: list = field(default_factory=list)  # hypothesis words with times and confidences

    def to_dict(self) -> dict:
        s = self.score
        return {
            "id": self.id, "set": self.set, "audio": self.audio, "duration": round(self.duration, 3),
            "ref": self.ref, "hyp": self.hyp, "wer": round(100 * s.wer, 2), "cer": round(100 * s.cer, 2),
            "ref_words": s.ref_words, "substitutions": s.substitutions, "deletions": s.deletions,
            "insertions": s.insertions, "ref_chars": s.ref_chars, "char_errors": s.char_errors,
            **self.fields, "words": self.words,
        }


@dataclass
class EvalReport:
    model: str
    inputs: List[str]
    options: EvalOptions
    score: Score
    utterances: List[UttResult]
    audio_s: float
    compute_s: float  # model + decoding wall-clock time of the run (batched, options.threads)
    threads: int
    cpu_s: float = 0.0  # CPU time of the same
    groups: Dict[str, Dict[str, Score]] = field(default_factory=dict)  # field -> value -> score
    speed: Optional[SpeedResult] = None
    latency: Optional[LatencyResult] = None
    model_meta: dict = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        return self.compute_s / max(self.audio_s, 1e-9)

    @property
    def cpu_rtf(self) -> float:
        return self.cpu_s / max(self.audio_s, 1e-9)

    def worst(self, n: int = 10) -> List[UttResult]:
        """The ``n`` utterances with the highest WER (then most errors); error-free ones never."""
        bad = [u for u in self.utterances if u.score.errors]
        return sorted(bad, key=lambda u: (-u.score.wer, -u.score.errors, u.id))[:n]

    def summary(self, n_worst: int = 10) -> dict:
        return {
            "model": self.model, "model_meta": self.model_meta, "inputs": self.inputs,
            "options": {"decoder": self.options.decoder, **asdict(self.options)}, "audio_s": round(self.audio_s, 2),
            **self.score.to_dict(),
            "rtf": round(self.rtf, 4), "cpu_rtf": round(self.cpu_rtf, 4), "threads": self.threads,
            "groups": {f: {v: s.to_dict() for v, s in g.items()} for f, g in self.groups.items()},
            "speed": self.speed.to_dict() if self.speed else None,
            "latency": self.latency.to_dict() if self.latency else None,
            "worst": [{"id": u.id, "set": u.set, "wer": round(100 * u.score.wer, 2), "ref": u.ref, "hyp": u.hyp}
                      for u in self.worst(n_worst)],
        }


def length_bucket(words: int) -> str:
    """Reference-length bucket: "1 word", "2 words", "3-5 words", "6+ words" ("0 words" for empty)."""
    if words <= 2:
        return f"{words} word" + ("" if words == 1 else "s")
    return "3-5 words" if words <= 5 else "6+ words"


def _group_value(u: UttResult, key: str, several_sets: bool) -> str:
    if key == "set":
        return str(u.set)
    if key == "length":  # isolated words behave unlike sentences (no context, CTC insertions)
        b = length_bucket(u.score.ref_words)
        return f"{u.set}: {b}" if several_sets else b
    return str(u.fields.get(key, "(none)"))


def group_scores(utts: Sequence[UttResult], keys: Iterable[str] = GROUP_FIELDS) -> Dict[str, Dict[str, Score]]:
    """Scores per value of each field in ``keys`` that takes at least two values."""
    out: Dict[str, Dict[str, Score]] = {}
    several_sets = len({u.set for u in utts}) > 1
    for key in keys:
        vals = [_group_value(u, key, several_sets) for u in utts]
        if len(set(vals)) < 2:
            continue
        g: Dict[str, Score] = {}
        for v, u in zip(vals, utts):
            g[v] = g.get(v, Score()) + u.score
        out[key] = dict(sorted(g.items()))
    return out


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}


def evaluate(rec, utts: Sequence[Utterance], opts: EvalOptions = EvalOptions(), *, model: str = "",
             inputs: Sequence[str] = (), speed_utts: int = 0, latency_utts: int = 0,
             latency_chunk_ms: float = 160.0, progress: bool = False, decoder=None) -> EvalReport:
    """Transcribe and score ``utts`` (from :func:`load_inputs`); optionally time speed and latency.
    ``decoder``: a beam decoder already built for ``opts.beam`` (see :func:`beam_decoder`)."""
    opts.check()
    if speed_utts < 0 or latency_utts < 0:
        raise ValueError("--speed-utts and --latency-utts must be 0 or more")
    decoder = beam_decoder(rec, opts, decoder)
    results, durs, timing = transcribe_utterances(rec, utts, opts, progress, decoder=decoder)
    refs = [normalize(u.text) for u in utts]
    hyps = [normalize(r.text) for r in results]
    scores = score_pairs(refs, hyps, normalise=False)
    per_utt = [
        UttResult(
            id=u.extra["id"], set=u.extra.get("set", ""), audio=u.audio, duration=d, ref=ref, hyp=hyp, score=s,
            fields=_jsonable({k: v for k, v in u.extra.items() if k not in ("id", "set")}),
            words=[w.to_dict() for w in r.words],
        )
        for u, r, d, ref, hyp, s in zip(utts, results, durs, refs, hyps, scores)
    ]
    report = EvalReport(
        model=model or rec.name, inputs=[str(p) for p in inputs], options=opts, score=sum(scores, Score()),
        utterances=per_utt, audio_s=sum(durs), compute_s=timing.wall_s, cpu_s=timing.cpu_s,
        threads=opts.threads or all_cores(),
        groups=group_scores(per_utt), model_meta=_jsonable(getattr(rec, "meta", {}) or {}),
    )
    if speed_utts:
        report.speed = measure_speed(rec, list(utts)[:speed_utts], opts, progress, decoder=decoder)
    if latency_utts:
        with torch_threads(opts.threads):
            report.latency = measure_latency(rec, list(utts)[:latency_utts], latency_chunk_ms, progress)
    return report


# ------------------------------------------------------------------------------ output
def _plot_groups(report: EvalReport, out: Path) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for key, g in report.groups.items():
        items = sorted(g.items(), key=lambda kv: kv[1].wer)[-40:]  # at most the 40 worst values
        names = [k for k, _ in items]
        y = range(len(items))
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.3 * len(items)))
        ax.barh([i + 0.2 for i in y], [100 * s.wer for _, s in items], height=0.4, label="WER")
        ax.barh([i - 0.2 for i in y], [100 * s.cer for _, s in items], height=0.4, label="CER")
        ax.set_yticks(list(y), names)
        ax.set_xlabel("error rate (%)")
        ax.set_xlim(0, 1.3 * max([100 * s.wer for _, s in items] + [100 * s.cer for _, s in items] + [1.0]))
        shown = f" ({len(items)} worst of {len(g)})" if len(items) < len(g) else ""
        ax.set_title(f"{Path(report.model).name}: error rate by {key}{shown}")
        ax.legend(loc="lower right")
        fig.tight_layout()
        name = f"wer_by_{key}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        files.append(name)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([min(100 * u.score.wer, 200) for u in report.utterances], bins=40)
    ax.set_xlabel("utterance WER (%, capped at 200)")
    ax.set_ylabel("utterances")
    ax.set_title(f"{Path(report.model).name}: per-utterance WER")
    fig.tight_layout()
    fig.savefig(out / "wer_hist.png", dpi=100)
    plt.close(fig)
    files.append("wer_hist.png")
    if report.latency and report.latency.word_latency_s:
        lat = report.latency
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        axes[0].hist([1000 * x for x in lat.word_latency_s], bins=40)
        axes[0].set_xlabel("word latency (ms): first shown - word end")
        axes[1].hist([1000 * x for x in lat.final_latency_s], bins=20)
        axes[1].set_xlabel("final latency (ms): end of audio -> final result")
        for ax in axes:
            ax.set_ylabel("count")
        fig.suptitle(f"{Path(report.model).name}: latency at real-time pace, {lat.chunk_ms:g} ms chunks")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=100)
        plt.close(fig)
        files.append("latency.png")
    return files


def _threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


def _md_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _score_row(name: str, s: Score) -> list:
    return [name, s.utterances, s.ref_words, f"{100 * s.wer:.2f}", s.substitutions, s.deletions, s.insertions,
            f"{100 * s.cer:.2f}"]


_SCORE_HEADER = ["", "utts", "ref words", "WER %", "sub", "del", "ins", "CER %"]


def render_markdown(report: EvalReport, plots: Sequence[str] = (), n_worst: int = 10) -> str:
    o, s = report.options, report.score
    dec = o.describe_decoder() + (f", LM `{o.beam.lm}`" if o.beam is not None and o.beam.lm else "")
    chunk = f"{o.chunk_ms:g} ms chunks" if o.chunk_ms else "whole utterances"
    md = [
        f"# Evaluation: {report.model}", "",
        f"- inputs: {', '.join(f'`{p}`' for p in report.inputs) or '-'}",
        f"- {s.utterances} utterances, {report.audio_s / 3600:.3f} h of audio",
        f"- decoding: {dec}, streams fed {chunk}, {o.batch_size} streams per batch, {_threads(report.threads)}",
        "- scoring: `asr.text.normalize` on reference and hypothesis, jiwer alignment; WER = (S + D + I) / N "
        "over the corpus",
    ]
    if s.empty_refs:
        md.append(f"- {s.empty_refs} empty references: their hypothesis words count as insertions, "
                  "adding nothing to N")
    if report.model_meta:
        md.append("- model meta: " + ", ".join(f"{k}={v}" for k, v in report.model_meta.items()))
    md += ["", "## Overall", "", _md_table(_SCORE_HEADER, [_score_row("all", s)]), ""]
    for key, g in report.groups.items():
        md += [f"## By {key}", "", _md_table([key] + _SCORE_HEADER[1:], [_score_row(v, sc) for v, sc in g.items()]), ""]
        if f"wer_by_{key}.png" in plots:
            md += [f"![WER by {key}](wer_by_{key}.png)", ""]
    md += ["## Speed", "",
           f"- evaluation run: RTF {report.rtf:.4f} wall clock, {report.cpu_rtf:.4f} CPU ({report.compute_s:.1f} s "
           f"for {report.audio_s:.1f} s audio, batched, {_threads(report.threads)})"]
    if report.speed:
        sp = report.speed
        md.append(f"- single stream ({sp.utterances} utterances, {sp.audio_s:.1f} s audio): "
                  f"RTF {sp.rtf_1_thread:.4f} on 1 thread ({sp.cpu_rtf_1_thread:.4f} CPU), "
                  f"{sp.rtf_all_threads:.4f} on {_threads(sp.all_threads)} ({sp.cpu_rtf_all_threads:.4f} CPU)")
    md.append("")
    if report.latency:
        d = report.latency.to_dict()

        def ms(x):
            return "-" if x is None else f"{1000 * x:.0f}"

        md += ["## Latency", "",
               f"Audio fed at real-time pace in {d['chunk_ms']:g} ms chunks, {d['utterances']} utterances, "
               f"{d['words']} words, greedy partial results. Word latency = first time the word is shown minus "
               "the model's end time of the word; final latency = end of audio -> final result.", "",
               _md_table(["", "median (ms)", "p95 (ms)"],
                         [["word", ms(d["word_median_s"]), ms(d["word_p95_s"])],
                          ["final", ms(d["final_median_s"]), ms(d["final_p95_s"])]]), ""]
        if "latency.png" in plots:
            md += ["![latency](latency.png)", ""]
    if "wer_hist.png" in plots:
        md += ["## Per-utterance WER", "", "![per-utterance WER](wer_hist.png)", ""]
    worst = report.worst(n_worst)
    if worst:
        md += [f"## {len(worst)} worst utterances", ""]
        for k, u in enumerate(worst, 1):
            md += [f"### {k}. `{u.id}` ({u.set}): WER {100 * u.score.wer:.1f}% "
                   f"({u.score.errors} errors / {u.score.ref_words} words)", "",
                   f"`{u.audio}`", "", "```", alignment_text(u.ref, u.hyp), "```", ""]
    md.append("Per-utterance results: `utterances.jsonl`.")
    return "\n".join(md) + "\n"


def write_outputs(report: EvalReport, out_dir, n_worst: int = 10) -> Path:
    """Write ``report.md``, ``summary.json``, ``utterances.jsonl`` and PNG plots to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "utterances.jsonl", "w", encoding="utf-8") as f:
        for u in report.utterances:
            f.write(json.dumps(u.to_dict(), ensure_ascii=False) + "\n")
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump(report.summary(n_worst), f, indent=1, ensure_ascii=False)
    plots = _plot_groups(report, out)
    (out / "report.md").write_text(render_markdown(report, plots, n_worst), encoding="utf-8")
    return out / "report.md"


# --------------------------------------------------------------------------------- CLI
def _main(args) -> int:
    from .checkpoint import load_model

    from .beam import beam_options, check_decoder_arguments

    check_decoder_arguments(args)
    opts = EvalOptions(chunk_ms=args.chunk_ms, beam=beam_options(args) if args.decoder == "beam" else None,
                       batch_size=args.batch_size, threads=args.threads)
    opts.check()
    for name in ("limit", "worst", "speed_utts", "latency_utts"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    utts = load_inputs(args.inputs, args.limit)
    rec = load_model(args.model, int8=args.int8)
    # built (and the LM read) once, before decoding anything: a missing backend or LM fails here
    decoder = beam_decoder(rec, opts)
    report = evaluate(rec, utts, opts, model=str(args.model) + ("-int8" if args.int8 else ""), inputs=args.inputs, speed_utts=args.speed_utts,
                      latency_utts=args.latency_utts if args.latency else 0,
                      latency_chunk_ms=args.latency_chunk_ms, progress=not args.quiet, decoder=decoder)
    path = write_outputs(report, args.out, args.worst) if args.out else None
    if args.json:
        print(json.dumps(report.summary(args.worst), ensure_ascii=False, indent=1), flush=True)
        return 0
    s = report.score
    print(f"{report.model}: {s.utterances} utterances, {report.audio_s / 60:.1f} min audio")
    print(f"WER {100 * s.wer:.2f}% (S {s.substitutions} D {s.deletions} I {s.insertions} / {s.ref_words} words) | "
          f"CER {100 * s.cer:.2f}% | RTF {report.rtf:.4f} wall, {report.cpu_rtf:.4f} CPU ({_threads(report.threads)}, batched)")
    for key, g in report.groups.items():
        items = list(g.items())
        if len(items) > 8 and key != "length":  # length buckets are few (4 per set): all shown
            items = sorted(items, key=lambda kv: -kv[1].wer)[:5]
            print(f"  by {key} ({len(g)} values; worst): " + ", ".join(f"{v} {100 * sc.wer:.1f}%" for v, sc in items))
        else:
            print(f"  by {key}: " + ", ".join(f"{v} {100 * sc.wer:.1f}%" for v, sc in items))
    if report.speed:
        sp = report.speed
        print(f"single-stream RTF (wall/CPU): {sp.rtf_1_thread:.4f}/{sp.cpu_rtf_1_thread:.4f} on 1 thread, "
              f"{sp.rtf_all_threads:.4f}/{sp.cpu_rtf_all_threads:.4f} on {_threads(sp.all_threads)}")
    if report.latency:
        d = report.latency.to_dict()
        if d["words"]:
            print(f"latency: word median {1000 * d['word_median_s']:.0f} ms, p95 {1000 * d['word_p95_s']:.0f} ms; ", end="")
        print(f"final median {1000 * d['final_median_s']:.0f} ms, p95 {1000 * d['final_p95_s']:.0f} ms")
    if path:
        print(f"report: {path}")
    return 0


def register(sub) -> None:
    from .argtypes import non_negative_int, positive_float
    from .beam import add_decoder_arguments
    from .checkpoint import add_int8_argument

    p = sub.add_parser(
        "eval",
        help="word/character error rate, speed and latency on test sets",
        description="Evaluate a model on JSON-lines manifests and LibriSpeech-layout directories: WER/CER "
                    "(normalised reference and hypothesis, jiwer), breakdowns by set/voice/engine/speaker/noise/reference length, "
                    "worst utterances, real-time factor and, with --latency, streaming latency.",
    )
    p.add_argument("inputs", nargs="+", metavar="MANIFEST_OR_DIR",
                   help="JSON-lines manifests ({audio, text, ...}) or LibriSpeech-layout directories")
    p.add_argument("--model", default="default", help="bundled model name or checkpoint path (default: %(default)s)")
    p.add_argument("--chunk-ms", type=positive_float, default=None, metavar="N",
                   help="feed audio to the streams in chunks of N ms (default: whole utterances; same output)")
    add_int8_argument(p)
    add_decoder_arguments(p)
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="streams decoded together (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", help="write report.md, summary.json, utterances.jsonl and PNG plots here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (rates in percent)")
    p.add_argument("--threads", type=non_negative_int, default=1, metavar="N",
                   help="torch CPU threads of the batched run (0: all cores; default: %(default)s: streams are "
                        "batched, and extra threads mostly wait on a busy machine)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N utterances of each input")
    p.add_argument("--worst", type=int, default=10, metavar="N", help="worst utterances to list (default: %(default)s)")
    p.add_argument("--speed-utts", type=int, default=20, metavar="N",
                   help="time single streams on 1 thread and on all cores over the first N utterances "
                        "(default: %(default)s; 0: skip)")
    p.add_argument("--latency", action="store_true", help="measure streaming latency at real-time pace (slow)")
    p.add_argument("--latency-utts", type=int, default=30, metavar="N",
                   help="utterances for --latency (default: %(default)s)")
    p.add_argument("--latency-chunk-ms", type=positive_float, default=160.0, metavar="N",
                   help="chunk size for --latency (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_main)
