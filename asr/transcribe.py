"""``asr transcribe``: files -> text, through the streaming path.

Each file is fed to a :class:`asr.stream.Stream` in chunks of ``--chunk-ms``
(default: the whole file at once) and finished; the result is the same for any
chunk size.
"""

from __future__ import annotations

import json
import math
import sys
import time

__all__ = ["transcribe_file", "register"]


def transcribe_file(rec, path: str, chunk_ms=None, decoder=None) -> dict:
    """Transcribe one file -> dict with audio, text, words, duration (s), rtf.

    ``decoder``: see :meth:`asr.checkpoint.Recognizer.transcribe` (None: greedy)."""
    from .audio import read_audio
    from .stream import chunk_samples

    if chunk_ms is not None and not (math.isfinite(chunk_ms) and chunk_ms > 0):
        raise ValueError(f"chunk_ms must be a positive, finite number of milliseconds, got {chunk_ms}")
    samples, sr = read_audio(path)
    t0 = time.perf_counter()
    res = rec.transcribe(samples, sr, chunk_samples=chunk_samples(chunk_ms, sr), decoder=decoder)
    elapsed = time.perf_counter() - t0
    duration = len(samples) / sr
    return {
        "audio": path,
        "text": res.text,
        "words": [w.to_dict() for w in res.words],
        "duration": round(duration, 3),
        "rtf": round(elapsed / duration, 4),
    }


def _main(args) -> int:
    import torch

    from .audio import AudioError
    from .beam import check_decoder_arguments, decoder_from_arguments
    from .checkpoint import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    check_decoder_arguments(args)
    rec = load_model(args.model, int8=args.int8)
    decoder = decoder_from_arguments(args, rec)
    failures = 0
    for path in args.files:
        try:
            out = transcribe_file(rec, path, args.chunk_ms, decoder)
        except AudioError as e:
            print(f"asr transcribe: error: {e}", file=sys.stderr)
            failures += 1
            continue
        if args.json:
            print(json.dumps(out), flush=True)
        elif len(args.files) > 1:
            print(f"{path}\t{out['text']}", flush=True)
        else:
            print(out["text"], flush=True)
    return 1 if failures else 0


def register(sub) -> None:
    from .argtypes import non_negative_int, positive_float
    from .beam import add_decoder_arguments
    from .checkpoint import add_int8_argument

    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio files (any sample rate, mono or multi-channel) through the streaming decoder.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, OGG, ...)")
    p.add_argument("--model", default="default", help="bundled model name or checkpoint path (default: %(default)s)")
    p.add_argument("--chunk-ms", type=positive_float, default=None, metavar="N",
                   help="feed the audio through the stream in chunks of N ms (default: whole file; output is identical)")
    p.add_argument("--json", action="store_true",
                   help='one JSON object per file: {"audio", "text", "words": [{"word","start","end","conf"}], "duration", "rtf"}')
    p.add_argument("--threads", type=non_negative_int, default=0, metavar="N",
                   help="torch CPU threads (default: 0, torch's choice)")
    add_int8_argument(p)
    add_decoder_arguments(p)
    p.set_defaults(func=_main)
