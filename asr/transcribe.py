"""``asr transcribe``: files -> text or subtitles, through the streaming path.

Each file is fed to a :class:`asr.stream.Stream` in chunks of ``--chunk-ms``
(default: the whole file at once) and finished; the result is the same for any
chunk size. By default the final result is beam search with the model's bundled word LM if it has one
(:mod:`asr.lmbundle`), else greedy; ``--decoder``, ``--grammar`` and ``--hotwords`` choose another final decoder
(:mod:`asr.beam`; :mod:`asr.grammar`: the whole file's result is one phrase; hotwords join the LM's beam search,
:mod:`asr.lmhotwords`, or without an LM a prefix beam search, :mod:`asr.prefixbeam`). The words are cut into segments
by the endpointer's rule (:mod:`asr.subtitles`) and written as text, JSON, SubRip or WebVTT.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

__all__ = ["transcribe_file", "register"]


def transcribe_file(rec, path: str, chunk_ms=None, decoder="default", endpoint=None) -> dict:
    """Transcribe one file (``"-"``: standard input) -> dict with audio, text, words, segments,
    duration (s), rtf.

    ``decoder``: see :meth:`asr.checkpoint.Recognizer.transcribe` (``"default"``: the model's bundled LM
    if it has one, else greedy; None or ``"greedy"``: greedy).
    ``endpoint``: the :class:`asr.decoding.EndpointConfig` that cuts segments (None: defaults)."""
    from .decoding import EndpointConfig
    from .subtitles import segment_words

    from .audio import read_audio
    from .stream import chunk_samples

    if chunk_ms is not None and not (math.isfinite(chunk_ms) and chunk_ms > 0):
        raise ValueError(f"chunk_ms must be a positive, finite number of milliseconds, got {chunk_ms}")
    samples, sr = read_audio(path)
    t0 = time.perf_counter()
    res = rec.transcribe(samples, sr, chunk_samples=chunk_samples(chunk_ms, sr), decoder=decoder)
    elapsed = time.perf_counter() - t0
    duration = len(samples) / sr
    segments = segment_words(res.words, endpoint or EndpointConfig())
    return {
        "audio": path,
        "text": res.text,
        "words": [w.to_dict() for w in res.words],
        "segments": [seg.to_dict() for seg in segments],
        "duration": round(duration, 3),
        "rtf": round(elapsed / duration, 4),
    }


def _render(out: dict, fmt: str, label: bool) -> str:
    """One file's result in ``fmt``; ``label``: prefix text lines with the file name (several files)."""
    from .subtitles import Segment, to_srt, to_vtt

    if fmt == "json":
        return json.dumps(out) + "\n"
    if fmt in ("srt", "vtt"):
        segs = [Segment.from_dict(d) for d in out["segments"]]
        return to_srt(segs) if fmt == "srt" else to_vtt(segs)
    lines = [d["text"] for d in out["segments"]] or [""]
    return "".join((f"{out['audio']}\t{t}" if label else t) + "\n" for t in lines)


def _main(args) -> int:
    import torch

    from .audio import AudioError
    from .beam import check_decoder_arguments, decoder_from_arguments
    from .checkpoint import load_model
    from .decoding import EndpointConfig
    from .errors import CLIError
    from .grammar import check_grammar_arguments
    from .hotwords import check_hotwords_arguments
    from .vocab import vocabulary_decoder

    fmt = "json" if args.json else args.format
    if args.files.count("-") > 1:
        raise CLIError("standard input ('-') can be read only once")
    if fmt in ("srt", "vtt") and len(args.files) > 1 and not args.output_dir:
        raise CLIError(f"--format {fmt} with several files needs --output-dir (one subtitle file per input)")
    if args.threads:
        torch.set_num_threads(args.threads)
    check_decoder_arguments(args)
    check_grammar_arguments(args)
    check_hotwords_arguments(args)
    rec = load_model(args.model, int8=args.int8)
    decoder = vocabulary_decoder(rec, args.grammar, args.hotwords, default=decoder_from_arguments(args, rec))
    endpoint = EndpointConfig(trailing_silence_s=args.trailing_silence, max_segment_s=args.max_segment)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    failures = 0
    for path in args.files:
        try:
            out = transcribe_file(rec, path, args.chunk_ms, decoder, endpoint)
        except AudioError as e:
            print(f"asr transcribe: error: {e}", file=sys.stderr)
            failures += 1
            continue
        text = _render(out, fmt, label=len(args.files) > 1 and not args.output_dir)
        if args.output_dir:
            stem = "stdin" if path == "-" else os.path.splitext(os.path.basename(path))[0]
            dest = os.path.join(args.output_dir, f"{stem}.{fmt}")
            with open(dest, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    return 1 if failures else 0


def register(sub) -> None:
    from .argtypes import non_negative_int, positive_float
    from .subtitles import FORMATS
    from .beam import add_decoder_arguments
    from .checkpoint import add_int8_argument
    from .grammar import add_grammar_argument
    from .hotwords import add_hotwords_argument

    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio files (any sample rate, mono or multi-channel) through the streaming decoder.",
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="audio files (WAV, FLAC, OGG, ...); - reads one file's bytes from standard input")
    p.add_argument("--model", default="default", help="bundled model name or checkpoint path (default: %(default)s)")
    p.add_argument("--chunk-ms", type=positive_float, default=None, metavar="N",
                   help="feed the audio through the stream in chunks of N ms (default: whole file; output is identical)")
    p.add_argument("--format", choices=FORMATS, default="txt",
                   help="txt: one line per segment (with several files: FILE<TAB>segment); json: one object per file "
                        '{"audio", "text", "words": [{"word","start","end","conf"}], "segments": [{"start","end","text"}], '
                        '"duration", "rtf"}; srt / vtt: subtitles, one cue per segment (default: %(default)s)')
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--output-dir", metavar="DIR",
                   help="write DIR/<file name>.<format> per input instead of standard output (stdin: stdin.<format>)")
    p.add_argument("--trailing-silence", type=positive_float, default=0.8, metavar="S",
                   help="a pause of S seconds between words starts a new segment (default: %(default)s)")
    p.add_argument("--max-segment", type=positive_float, default=7.0, metavar="S",
                   help="a segment S seconds long ends at the next word (default: %(default)s, a subtitle's length)")
    p.add_argument("--threads", type=non_negative_int, default=0, metavar="N",
                   help="torch CPU threads (default: 0, torch's choice)")
    add_int8_argument(p)
    add_decoder_arguments(p)
    add_grammar_argument(p)
    add_hotwords_argument(p)
    p.set_defaults(func=_main)
