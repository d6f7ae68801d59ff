"""``asr eval``: word and character error rates, speed and latency of a model on test sets.

Inputs are JSON-lines manifests (:func:`asr.data.read_manifest`) and LibriSpeech-layout
directories (``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` lines ``UTT-ID TEXT`` next to
``UTT-ID.flac``, found recursively). Every utterance goes through the streaming path:
a :class:`asr.stream.Stream` per utterance, fed whole or in ``--chunk-ms`` chunks (the
output is the same for any chunking), several streams stepped as one batch with
:func:`asr.stream.decode_streams`. Final results are decoded as ``asr transcribe`` decodes them:
by default beam search (:mod:`asr.beam`) with the model's bundled word LM if it has one, else
greedily (``--decoder``); ``--grammar`` runs :mod:`asr.grammar` (each result one phrase).

The stages live in their own modules, and their names are re-exported here:

* :mod:`asr.corpora`: reading manifests and LibriSpeech directories (:func:`load_inputs`);
* :mod:`asr.evalrun`: :class:`EvalOptions` and the batched streaming run (:func:`transcribe_utterances`);
* :mod:`asr.scoring`: :func:`score` / :func:`score_pairs` (normalised text, jiwer, corpus WER
  = (S + D + I) / N; empty references count their hypothesis words as insertions) and the
  breakdowns by set, voice, engine, speaker, noise and reference length;
* :mod:`asr.speed`: single-stream real-time factors (``--speed-utts``; wall clock and CPU
  time) and latency at real-time pace (``--latency``);
* :mod:`asr.evalreport`: the :class:`EvalReport` and its outputs (report.md, summary.json,
  utterances.jsonl, plots).

``rtf`` of the report is the compute time of the evaluation run itself (batched,
``--threads``) over the audio duration.
"""

from __future__ import annotations

import json
from typing import Sequence

from .corpora import load_inputs, read_librispeech_dir
from .data import Utterance
from .evalreport import EvalReport, print_summary, render_markdown, write_outputs
from .evalrun import (EvalOptions, Timing, all_cores, beam_decoder, read_waves, run_streams, torch_threads,
                      transcribe_utterances)
from .scoring import (GROUP_FIELDS, Score, UttResult, alignment_text, group_scores, length_bucket, score,
                      score_pairs)
from .speed import LatencyResult, SpeedResult, measure_latency, measure_speed
from .text import normalize

__all__ = [
    "Score", "UttResult", "EvalOptions", "run_streams", "SpeedResult", "LatencyResult", "EvalReport",
    "Timing", "score", "score_pairs", "alignment_text", "read_librispeech_dir", "load_inputs",
    "transcribe_utterances", "beam_decoder", "measure_speed", "measure_latency", "evaluate", "write_outputs",
    "render_markdown", "group_scores", "length_bucket", "read_waves", "all_cores", "torch_threads",
    "register", "GROUP_FIELDS",
]


def _jsonable(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}


def evaluate(rec, utts: Sequence[Utterance], opts: EvalOptions = EvalOptions(), *, model: str = "",
             inputs: Sequence[str] = (), speed_utts: int = 0, latency_utts: int = 0,
             latency_chunk_ms: float = 160.0, progress: bool = False, decoder=None) -> EvalReport:
    """Transcribe and score ``utts`` (from :func:`load_inputs`); optionally time speed and latency.
    ``decoder``: a beam or grammar decoder already built for ``opts`` (see :func:`beam_decoder`)."""
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
            report.latency = measure_latency(rec, list(utts)[:latency_utts], latency_chunk_ms, progress,
                                             decoder=decoder)
    return report


# --------------------------------------------------------------------------------- CLI
def _main(args) -> int:
    from dataclasses import replace

    from .beam import beam_options, check_decoder_arguments, decoder_from_arguments
    from .checkpoint import load_model
    from .grammar import check_grammar_arguments

    check_decoder_arguments(args)
    check_grammar_arguments(args)
    opts = EvalOptions(chunk_ms=args.chunk_ms, beam=beam_options(args) if args.decoder == "beam" else None,
                       grammar=args.grammar, batch_size=args.batch_size, threads=args.threads)
    opts.check()  # bad flags fail before the model and the inputs are read
    for name in ("limit", "worst", "speed_utts", "latency_utts"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    utts = load_inputs(args.inputs, args.limit)
    rec = load_model(args.model, int8=args.int8)
    # built (and the LM read) once, before decoding anything: a missing backend or LM fails here
    decoder = None if args.grammar else decoder_from_arguments(args, rec)
    opts = replace(opts, beam=getattr(decoder, "opts", None))  # --decoder default: the bundled LM's, or greedy
    decoder = beam_decoder(rec, opts, decoder)
    report = evaluate(rec, utts, opts, model=str(args.model) + ("-int8" if args.int8 else ""), inputs=args.inputs,
                      speed_utts=args.speed_utts, latency_utts=args.latency_utts if args.latency else 0,
                      latency_chunk_ms=args.latency_chunk_ms, progress=not args.quiet, decoder=decoder)
    path = write_outputs(report, args.out, args.worst) if args.out else None
    if args.json:
        print(json.dumps(report.summary(args.worst), ensure_ascii=False, indent=1), flush=True)
        return 0
    print_summary(report)
    if path:
        print(f"report: {path}")
    return 0


def register(sub) -> None:
    from .argtypes import non_negative_int, positive_float
    from .beam import add_decoder_arguments
    from .checkpoint import add_int8_argument
    from .grammar import add_grammar_argument

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
    add_grammar_argument(p)
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
