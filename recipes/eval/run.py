#!/usr/bin/env python3
"""Compare the project model with PocketSphinx 5 on the same test sets: one table.

Usage:
    python3 recipes/eval/run.py [--model default] [--data-dir /work/data/synth] [--out exp/eval]
                                [--sets test_heldout asterisk_letters [MANIFEST_OR_DIR ...]]
                                [--limit N] [--chunk-ms 160] [--decoder greedy [beam]] [--beam-size 128]
                                [--beam-size-token 8] [--beam-threshold 50] [--lm ARPA] [--lm-weight 1.0] [--word-score 0.0]
                                [--threads 1] [--speed-utts 20] [--latency-utts 20] [--latency-chunk-ms 160]
                                [--stage 1] [--stop-stage 3] [--force]

A set is a name in ``--data-dir`` (``NAME.jsonl``), or any manifest path or LibriSpeech-layout
directory. ``--limit N`` keeps N utterances of every set, spread evenly over it (manifests are
often ordered by voice, so the first N would be one voice); both systems see the same ones.

Stages (finished work is cached under ``--out`` with a key of its inputs, and skipped on
reruns while the key matches; ``--force`` redoes it):

    1  PocketSphinx 5 (recipes/eval/pocketsphinx_baseline.py: default en-us model, 1 thread)
       on each set -> ``OUT/pocketsphinx/SET/{hyps.jsonl,summary.json}``; rescored with
       ``asr.evaluate.score`` so both systems are scored by the same code. A complete earlier
       run of that script in ``DATA_DIR/baseline/`` (same manifest, newer) is reused.
    2  project model on each set with each ``--decoder`` (``asr.evaluate``: streaming path,
       WER/CER, RTF on 1 thread and all cores, latency at real-time pace)
       -> ``OUT/MODEL/SET/{report.md,summary.json,...}`` (greedy), ``OUT/MODEL+beam[-lm]/SET/...``
       (beam search, with ``--lm`` a word n-gram LM from ``asr lm``)
    3  comparison table -> ``OUT/comparison.md`` + ``OUT/comparison.json``

Latency is measured for the project model only (PocketSphinx decodes whole utterances here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script (python3 recipes/eval/run.py): `recipes` is in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DEFAULT_SETS = ["test_heldout", "asterisk_letters"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- sets
def resolve_sets(names, data_dir: str, out: Path, limit: int = 0):
    """-> list of (set name, manifest path, source path).

    ``limit``: keep N utterances spread evenly over each set (manifests are often
    ordered by voice, so the first N would be one voice); both systems read this subset.

    Every set is rewritten as ``OUT/manifests/SET.jsonl`` with absolute audio paths (the
    PocketSphinx script resolves paths against its working directory), LibriSpeech
    directories included; a file is only rewritten when its content changes, so cache
    keys stay valid.
    """
    from asr.corpora import load_inputs

    sets = []
    for name in names:
        p = Path(name)
        cand = [p, Path(data_dir) / name, Path(data_dir) / f"{name}.jsonl"]
        path = next((c for c in cand if c.exists()), None)
        if path is None:
            log(f"WARNING: set {name!r} not found (looked for {', '.join(map(str, cand[1:]))}); skipped. "
                "Is the corpus recipe (recipes/synth/prepare.py) finished?")
            continue
        utts = load_inputs([str(path)])
        set_name = utts[0].extra["set"]
        if limit and limit < len(utts):
            utts = [utts[i * len(utts) // limit] for i in range(limit)]
        if any(s == set_name for s, _, _ in sets):
            raise SystemExit(f"run.py: error: two sets are named {set_name!r}")
        manifest = out / "manifests" / f"{set_name}.jsonl"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({**u.to_dict(), "audio": os.path.abspath(u.audio)}, ensure_ascii=False) + "\n"
                       for u in utts)
        if not manifest.exists() or manifest.read_text(encoding="utf-8") != text:
            manifest.write_text(text, encoding="utf-8")
        sets.append((set_name, str(manifest.resolve()), str(path.resolve())))
    if not sets:
        raise SystemExit("run.py: error: no test set found")
    return sets


def file_key(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime": int(st.st_mtime)}


def cached(dirpath: Path, key: dict, force: bool) -> bool:
    kf = dirpath / "key.json"
    if force or not kf.exists() or not (dirpath / "summary.json").exists():
        return False
    return json.loads(kf.read_text()) == json.loads(json.dumps(key))


def mark_done(dirpath: Path, key: dict) -> None:
    (dirpath / "key.json").write_text(json.dumps(key, indent=1))


# ---------------------------------------------------------------------------- stages
def stage_pocketsphinx(sets, args, out: Path) -> None:
    try:
        from recipes.eval import pocketsphinx_baseline as psb
    except ImportError as e:
        log(f"stage 1: PocketSphinx baseline unavailable ({e}); skipped")
        return
    from asr.scoring import Score, score_pairs

    for name, manifest, source in sets:
        d = out / "pocketsphinx" / name
        key = {"manifest": file_key(manifest), "limit": args.limit, "decoder": psb._version()}
        if cached(d, key, args.force):
            log(f"stage 1: pocketsphinx {name}: cached")
            continue
        d.mkdir(parents=True, exist_ok=True)
        summ = reuse_baseline(name, manifest, source, args, d)
        if summ is None:
            log(f"stage 1: pocketsphinx on {name}")
            argv = [manifest, "--out", str(d / "hyps.jsonl"), "--summary", str(d / "baseline_summary.json")]
            try:
                summ = psb.main(argv)
            except (Exception, SystemExit) as e:  # noqa: BLE001  (a peer script: report, keep going)
                log(f"stage 1: pocketsphinx failed on {name}: {e.__class__.__name__}: {e}")
                continue
        rows = [json.loads(line) for line in open(d / "hyps.jsonl")]
        sc = sum(score_pairs([r["ref"] for r in rows], [r["hyp"] for r in rows]), Score())
        summary = {"system": "pocketsphinx", "decoder": summ.get("decoder"), "set": name,
                   "audio_s": round(sum(json.loads(x)["duration"] for x in open(manifest)), 2), **sc.to_dict(),
                   "rtf_1_thread": summ["rtf"], "cpu_rtf_1_thread": summ.get("cpu_rtf"),
                   "baseline_wer": summ["wer"]}
        (d / "summary.json").write_text(json.dumps(summary, indent=1))
        mark_done(d, key)


def reuse_baseline(name: str, manifest: str, source: str, args, d: Path):
    """Summary of an earlier full run of pocketsphinx_baseline.py on the same manifest, or None.

    Looks for ``DATA_DIR/baseline/SET.summary.json`` + ``SET.pocketsphinx.jsonl`` (where the
    corpus work keeps its baseline runs) that cover every utterance of ``source`` and are newer
    than it; the hypotheses are copied to ``d/hyps.jsonl``.
    """
    base = Path(args.data_dir) / "baseline"
    sf, hf = base / f"{name}.summary.json", base / f"{name}.pocketsphinx.jsonl"
    if args.limit or args.force or not (sf.exists() and hf.exists()):
        return None
    try:
        summ = json.loads(sf.read_text())
        rows = [json.loads(x) for x in open(hf)]
        ours = [json.loads(x) for x in open(manifest)]
    except (OSError, ValueError):
        return None
    if (os.path.abspath(summ.get("manifest", "")) != os.path.abspath(source) or len(rows) != len(ours)
            or [r["audio"] for r in rows] != [u["audio"] for u in ours]
            or min(sf.stat().st_mtime, hf.stat().st_mtime) < os.stat(source).st_mtime):
        return None
    import shutil

    shutil.copyfile(hf, d / "hyps.jsonl")
    shutil.copyfile(sf, d / "baseline_summary.json")
    log(f"stage 1: pocketsphinx {name}: reusing {hf}")
    return summ


def model_tag(model: str, int8: bool = False) -> str:
    p = Path(model)
    if p.is_file():
        tag = f"{p.parent.name}-{p.stem}" if p.parent.name else p.stem
    else:
        tag = model
    return tag + ("-int8" if int8 else "")


def system_tag(model: str, decoder: str, lm, int8: bool = False) -> str:
    """Result directory of one model + decoder: greedy keeps the model's own name."""
    tag = model_tag(model, int8)
    return tag if decoder == "greedy" else f"{tag}+beam" + ("-lm" if lm else "")


def decoder_label(args, decoder: str) -> str:
    return eval_options(args, decoder).describe_decoder()


def eval_options(args, decoder: str):
    from asr.beam import beam_options
    from asr.evalrun import EvalOptions

    opts = EvalOptions(chunk_ms=args.chunk_ms, beam=beam_options(args) if decoder == "beam" else None,
                       batch_size=args.batch_size, threads=args.threads)
    opts.check()
    return opts


def stage_project(sets, args, out: Path) -> None:
    for decoder in args.decoder:
        stage_project_decoder(sets, args, out, decoder)


def stage_project_decoder(sets, args, out: Path, decoder: str) -> None:
    from asr.checkpoint import load_model
    from asr.corpora import load_inputs
    from asr.evalreport import write_outputs
    from asr.evalrun import beam_decoder
    from asr.evaluate import evaluate

    rec = load_model(args.model, int8=args.int8)  # fails with a clear message before any work
    opts = eval_options(args, decoder)
    beam = None  # built on first use (the LM is read once for all sets; not at all when all are cached)
    tag = system_tag(args.model, decoder, args.lm, args.int8)
    mkey = file_key(args.model) if Path(args.model).is_file() else {"name": args.model, "meta": rec.meta}
    for name, manifest, _ in sets:
        d = out / tag / name
        key = {"manifest": file_key(manifest), "model": mkey, "limit": args.limit, "options": asdict(opts),
               "lm": file_key(opts.beam.lm) if opts.beam is not None and opts.beam.lm else None,
               "speed_utts": args.speed_utts, "latency_utts": args.latency_utts,
               "latency_chunk_ms": args.latency_chunk_ms}
        if cached(d, key, args.force):
            log(f"stage 2: {tag} {name}: cached")
            continue
        log(f"stage 2: {tag} on {name}")
        utts = load_inputs([manifest])
        beam = beam_decoder(rec, opts, beam)
        report = evaluate(rec, utts, opts, model=args.model + ("-int8" if args.int8 else ""), inputs=[manifest],
                          speed_utts=args.speed_utts,
                          latency_utts=args.latency_utts, latency_chunk_ms=args.latency_chunk_ms, progress=True,
                          decoder=beam)
        write_outputs(report, d)
        s = report.score
        log(f"stage 2: {name}: WER {100 * s.wer:.2f}% CER {100 * s.cer:.2f}% RTF {report.rtf:.4f}")
        mark_done(d, key)


def fmt(x, pct=False, ms=False, digits=3):
    if x is None:
        return "-"
    if ms:
        return f"{1000 * x:.0f}"
    return f"{x:.2f}" if pct else f"{x:.{digits}f}"


def length_table(sets, args, out: Path, data: dict) -> list:
    """Markdown lines: WER of every system per reference-length bucket (1 word, 2, 3-5, 6+) of each set,
    from the per-utterance files; also stored under ``data["sets"][SET]["by_length"]``."""
    from asr.scoring import Score, length_bucket, score_pairs

    # per-utterance files, each line with the normalised "ref" and "hyp"
    systems = [(f"project ({decoder_label(args, d)})", out / system_tag(args.model, d, args.lm, args.int8), "utterances.jsonl")
               for d in args.decoder] + [("PocketSphinx 5", out / "pocketsphinx", "hyps.jsonl")]
    per_set, used = {}, []
    for name, _, _ in sets:
        per: dict = {}  # bucket -> system -> Score
        for label, sys_dir, fname in systems:
            f = sys_dir / name / fname
            if not f.exists():
                continue
            recs = [json.loads(line) for line in open(f)]
            scores = score_pairs([r["ref"] for r in recs], [r["hyp"] for r in recs])
            for sc in scores:
                b = per.setdefault(length_bucket(sc.ref_words), {})
                b[label] = b.get(label, Score()) + sc
            if label not in used:
                used.append(label)
        if per:
            per_set[name] = per
            data["sets"].setdefault(name, {})["by_length"] = {
                b: {n: sc.to_dict() for n, sc in per[b].items()} for b in sorted(per)}
    if not per_set:
        return []
    header = ["set", "reference length", "utts"] + [f"WER % {n}" for n in used]
    rows = [[name, b, max(sc.utterances for sc in per[b].values())]
            + [fmt(100 * per[b][n].wer, pct=True) if n in per[b] else "-" for n in used]
            for name, per in per_set.items() for b in sorted(per)]
    return ["", "## WER by reference length", "",
            "Isolated words give the decoder no context and show CTC insertions most; the synthetic sentence "
            "sets start at 3 words, the Asterisk prompts do not.", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def stage_table(sets, args, out: Path) -> Path:
    tag = model_tag(args.model, args.int8)
    rows, data = [], {"model": args.model, "data_dir": args.data_dir, "limit": args.limit, "sets": {}}
    for name, manifest, source in sets:
        entry = {"source": source, "manifest": manifest}
        for decoder in args.decoder:
            pf = out / system_tag(args.model, decoder, args.lm, args.int8) / name / "summary.json"
            if not pf.exists():
                continue
            p = json.loads(pf.read_text())
            sp, lat = p.get("speed") or {}, p.get("latency") or {}
            key = "project" if decoder == "greedy" else "project_" + system_tag("", decoder, args.lm).lstrip("+")
            entry[key] = {k: p[k] for k in ("utterances", "audio_s", "wer", "cer", "substitutions", "deletions",
                                            "insertions", "ref_words", "rtf", "cpu_rtf", "threads", "options")}
            entry[key].update(speed=sp or None, latency=lat or None)
            rows.append([name, p["utterances"], f"{p['audio_s'] / 60:.1f}",
                         f"project ({tag}, {decoder_label(args, decoder)})",
                         fmt(p["wer"], pct=True), fmt(p["cer"], pct=True),
                         f"{p['substitutions']}/{p['deletions']}/{p['insertions']}",
                         f"{fmt(sp.get('rtf_1_thread'))} / {fmt(sp.get('cpu_rtf_1_thread'))}",
                         f"{fmt(p['rtf'])} / {fmt(p.get('cpu_rtf'))} ({p['threads']} thr)",
                         f"{fmt(lat.get('word_median_s'), ms=True)} / {fmt(lat.get('word_p95_s'), ms=True)}",
                         f"{fmt(lat.get('final_median_s'), ms=True)} / {fmt(lat.get('final_p95_s'), ms=True)}"])
        qf = out / "pocketsphinx" / name / "summary.json"
        if qf.exists():
            q = json.loads(qf.read_text())
            entry["pocketsphinx"] = q
            rows.append([name, q["utterances"], f"{q['audio_s'] / 60:.1f}", "PocketSphinx 5",
                         fmt(q["wer"], pct=True), fmt(q["cer"], pct=True),
                         f"{q['substitutions']}/{q['deletions']}/{q['insertions']}",
                         f"{fmt(q['rtf_1_thread'])} / {fmt(q.get('cpu_rtf_1_thread'))}", "-", "-", "-"])
        data["sets"][name] = entry
    header = ["set", "utts", "audio min", "system", "WER %", "CER %", "S/D/I", "RTF 1 thread (wall / CPU)",
              "RTF eval run (wall / CPU)", "word latency median / p95 (ms)", "final latency median / p95 (ms)"]
    md = ["# Project model vs PocketSphinx 5", "",
          f"- project model: `{args.model}`; decoders: {'; '.join(decoder_label(args, d) for d in args.decoder)}"
          + (f" (LM `{args.lm}`)" if args.lm and "beam" in args.decoder else "")
          + (f"; streams fed in {args.chunk_ms:g} ms chunks" if args.chunk_ms else "; whole utterances"),
          "- PocketSphinx 5: default en-us acoustic model, language model and dictionary, 1 thread "
          "(recipes/eval/pocketsphinx_baseline.py)",
          f"- data: `{args.data_dir}`" + (f", {args.limit} utterances spread evenly over each set" if args.limit else ""),
          "- scoring: `asr.text.normalize` on reference and hypothesis, jiwer, corpus WER = (S + D + I) / N",
          "- RTF 1 thread: one stream at a time (project: first --speed-utts utterances); RTF eval run: the "
          "batched evaluation on its --threads; CPU = CPU time / audio time, meaningful when other jobs share "
          "the cores; latency: audio fed at real-time pace "
          f"in {args.latency_chunk_ms:g} ms chunks (project only), word = shown - word end, "
          "final = end of audio -> final result", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    md += length_table(sets, args, out, data)
    md += ["", f"Per-set reports: `{tag}[+beam[-lm]]/SET/report.md`; PocketSphinx hypotheses: `pocketsphinx/SET/hyps.jsonl`.", ""]
    (out / "comparison.md").write_text("\n".join(md))
    (out / "comparison.json").write_text(json.dumps(data, indent=1))
    return out / "comparison.md"


def main(argv=None) -> int:
    from asr.beam import add_beam_arguments
    from asr.checkpoint import add_int8_argument

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="bundled model name or checkpoint path (default: %(default)s)")
    ap.add_argument("--data-dir", default="/work/data/synth", help="where set names are looked up (default: %(default)s)")
    ap.add_argument("--out", default="exp/eval", help="output directory (default: %(default)s)")
    ap.add_argument("--sets", nargs="+", default=DEFAULT_SETS, metavar="SET",
                    help="set names in --data-dir, manifests or LibriSpeech directories (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=0,
                    help="N utterances spread evenly over each set (default: all)")
    ap.add_argument("--chunk-ms", type=float, default=160.0, help="project: stream chunk size in ms (default: %(default)s)")
    ap.add_argument("--decoder", nargs="+", choices=["greedy", "beam"], default=["greedy"],
                    help="project decoders, each a row of the table (default: greedy)")
    add_beam_arguments(ap)  # --beam-size ... --word-score, as `asr eval`
    add_int8_argument(ap)  # results go to MODEL-int8[+beam...]
    ap.add_argument("--batch-size", type=int, default=16, help="project: streams decoded together")
    ap.add_argument("--threads", type=int, default=1,
                    help="project: torch threads of the batched eval run (0: all cores; default: %(default)s, "
                         "see README)")
    ap.add_argument("--speed-utts", type=int, default=20, help="project: utterances timed on 1 thread / all cores")
    ap.add_argument("--latency-utts", type=int, default=20, help="project: utterances fed at real-time pace (0: skip)")
    ap.add_argument("--latency-chunk-ms", type=float, default=160.0)
    ap.add_argument("--stage", type=int, default=1)
    ap.add_argument("--stop-stage", type=int, default=3)
    ap.add_argument("--force", action="store_true", help="redo cached results")
    args = ap.parse_args(argv)
    if args.limit < 0:
        ap.error("--limit must be 0 or more")
    if args.lm and "beam" not in args.decoder:
        ap.error("--lm needs --decoder beam")
    if args.lm and not Path(args.lm).is_file():
        ap.error(f"no such language model: {args.lm}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = resolve_sets(args.sets, args.data_dir, out, args.limit)
    log("sets: " + ", ".join(f"{n} ({src})" for n, _, src in sets))
    if args.stage <= 2 <= args.stop_stage:
        from asr.checkpoint import load_model

        try:
            load_model(args.model)
        except (FileNotFoundError, ValueError) as e:  # before PocketSphinx spends minutes
            print(f"run.py: error: {e}", file=sys.stderr)
            return 1
    if args.stage <= 1 <= args.stop_stage:
        stage_pocketsphinx(sets, args, out)
    if args.stage <= 2 <= args.stop_stage:
        stage_project(sets, args, out)
    if args.stage <= 3 <= args.stop_stage:
        path = stage_table(sets, args, out)
        print(path.read_text())
        log(f"stage 3: {path} and {out / 'comparison.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
