#!/usr/bin/env python3
"""Peer baseline: CMU PocketSphinx 5 (PyPI ``pocketsphinx``, bundled en-us model, default config).

Usage:
    python3 recipes/eval/pocketsphinx_baseline.py MANIFEST.jsonl [--out hyps.jsonl] [--limit N]
                                                  [--summary summary.json] [--grammar PHRASES]

Decodes every utterance of a manifest (JSON lines with ``audio``, ``text``, ``duration``;
16 kHz mono WAV) with ``pocketsphinx.Decoder()`` in one thread, writes one JSON line per
utterance ``{"audio", "ref", "hyp", "seconds"}`` (``seconds`` = decoding time) and prints
WER and CER (jiwer, on ``asr.text.normalize``d reference and hypothesis) and the
real-time factor (total decoding time / total audio duration; wall clock, and CPU time of
the decoding thread, which stays meaningful when other jobs share the cores).

``--grammar`` (the same values as ``asr eval --grammar``: ``zero,one,two``, a JSON list or a JSON
file) replaces the bundled n-gram LM with a JSGF grammar of those alternatives,
``public <g> = zero | one | two;``, so every hypothesis is one phrase (or empty). PocketSphinx's
JSGF has no ``[unk]``: it is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: `asr` from this checkout, even if not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from asr.grammar import grammar_argument, normalize_phrases  # noqa: E402
from asr.text import normalize  # noqa: E402


def jsgf_alternatives(phrases) -> str:
    """A JSGF grammar whose only sentences are ``phrases`` (normalised: lower-case words)."""
    return "#JSGF V1.0;\ngrammar g;\npublic <g> = " + " | ".join(phrases) + ";\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="PocketSphinx 5 baseline on a manifest")
    ap.add_argument("manifest")
    ap.add_argument("--out", help="per-utterance JSON lines (default: <manifest>.pocketsphinx.jsonl)")
    ap.add_argument("--summary", help="write the figures as JSON here too")
    ap.add_argument("--limit", type=int, default=0, help="decode only the first N utterances")
    ap.add_argument("--grammar", type=grammar_argument, metavar="PHRASES",
                    help="decode with a JSGF grammar of these alternatives instead of the LM (as asr eval --grammar)")
    args = ap.parse_args(argv)
    jsgf = None
    if args.grammar:
        phrases, unk = normalize_phrases(list(args.grammar))
        if unk:
            ap.error("--grammar: PocketSphinx's JSGF has no [unk]; drop it")
        jsgf = jsgf_alternatives(phrases)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import jiwer
    import numpy as np
    import soundfile as sf
    from pocketsphinx import Decoder

    with open(args.manifest) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    if args.limit:
        recs = recs[: args.limit]
    base = os.path.dirname(os.path.abspath(args.manifest))  # relative audio paths, as in asr.data
    out_path = args.out or os.path.splitext(args.manifest)[0] + ".pocketsphinx.jsonl"

    dec = Decoder()  # default config: bundled en-us acoustic model, LM and dictionary, 16 kHz
    if jsgf is not None:
        dec.add_jsgf_string("grammar", jsgf)  # ValueError: a word not in the dictionary
        dec.activate_search("grammar")
    refs, hyps, dec_time, cpu_time, audio_time = [], [], 0.0, 0.0, 0.0
    try:
        from tqdm import tqdm
        it = tqdm(recs, desc="pocketsphinx", mininterval=10, file=sys.stderr)
    except ImportError:
        it = recs
    tmp = out_path + ".tmp"
    with open(tmp, "w") as fo:
        for r in it:
            path = r["audio"] if os.path.isabs(r["audio"]) else os.path.join(base, r["audio"])
            wave, sr = sf.read(path, dtype="int16")
            if wave.ndim > 1:
                wave = wave.mean(axis=1).astype(np.int16)
            assert sr == 16000, f"{r['audio']}: {sr} Hz, expected 16000"
            t0, c0 = time.perf_counter(), time.thread_time()
            dec.start_utt()
            dec.process_raw(wave.tobytes(), full_utt=True)
            dec.end_utt()
            h = dec.hyp()
            dt = time.perf_counter() - t0
            cpu_time += time.thread_time() - c0
            hyp = normalize(h.hypstr if h is not None else "")
            ref = normalize(r["text"])
            refs.append(ref)
            hyps.append(hyp)
            dec_time += dt
            audio_time += len(wave) / sr
            fo.write(json.dumps({"audio": r["audio"], "ref": ref, "hyp": hyp, "seconds": round(dt, 4)}) + "\n")
    os.replace(tmp, out_path)

    summary = {
        "manifest": os.path.abspath(args.manifest), "utterances": len(recs),
        "audio_hours": round(audio_time / 3600, 4),
        "wer": round(100 * jiwer.wer(refs, hyps), 2), "cer": round(100 * jiwer.cer(refs, hyps), 2),
        "rtf": round(dec_time / max(audio_time, 1e-9), 4),
        "cpu_rtf": round(cpu_time / max(audio_time, 1e-9), 4),
        "decoder": "pocketsphinx " + _version() + " default en-us model, 1 thread"
                   + (f", JSGF grammar of {len(args.grammar)} phrases" if jsgf else ""),
    }
    print(f"{os.path.basename(args.manifest)}: {len(recs)} utts, {audio_time / 60:.1f} min audio | "
          f"WER {summary['wer']:.2f}% | CER {summary['cer']:.2f}% | RTF {summary['rtf']:.3f} wall, "
          f"{summary['cpu_rtf']:.3f} CPU")
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("pocketsphinx")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    main()
