"""The two systems of recipes/eval/run.py: PocketSphinx 5 (stage 1) and the project model with
each decoder (stage 2), every result directory cached under a key of its inputs."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from recipes.eval.sets import cached, file_key, log, mark_done


# ------------------------------------------------------------------------- names
def model_tag(model: str, int8: bool = False) -> str:
    p = Path(model)
    if p.is_file():
        tag = f"{p.parent.name}-{p.stem}" if p.parent.name else p.stem
    else:
        tag = model
    return tag + ("-int8" if int8 else "")


def system_tag(model: str, decoder: str, lm, int8: bool = False, grammar: bool = False) -> str:
    """Result directory of one model + decoder: greedy keeps the model's own name; ``default``
    (the model's bundled decoding) is ``MODEL+default``."""
    tag = model_tag(model, int8)
    if grammar:
        return f"{tag}+grammar"
    if decoder == "default":
        return f"{tag}+default"
    return tag if decoder == "greedy" else f"{tag}+beam" + ("-lm" if lm else "")


def project_tag(args, decoder: str) -> str:
    """The project's result directory for one ``--decoder`` of this run (:func:`system_tag`)."""
    return system_tag(args.model, decoder, args.lm, args.int8, bool(args.grammar))


def pocketsphinx_tag(args) -> str:
    """PocketSphinx's result directory: its n-gram LM, or with ``--grammar`` a JSGF grammar."""
    return "pocketsphinx+grammar" if args.grammar else "pocketsphinx"


def eval_options(args, decoder: str):
    """``EvalOptions`` of one ``--decoder``: ``default`` is what ``asr transcribe`` does out of the
    box with the model (its bundled LM and settings, ``Recognizer.decoding``; greedy without one),
    ``beam`` the beam flags of this run."""
    from asr.beam import beam_options
    from asr.evalrun import EvalOptions

    if decoder == "default":  # the decoding file next to the checkpoint: no need to load the model
        from asr.checkpoint import model_path
        from asr.lmbundle import lm_options

        beam = lm_options(model_path(args.model))
    else:
        beam = beam_options(args) if decoder == "beam" else None
    opts = EvalOptions(chunk_ms=args.chunk_ms, beam=beam,
                       grammar=args.grammar, batch_size=args.batch_size, threads=args.threads)
    opts.check()
    return opts


def decoder_label(args, decoder: str) -> str:
    return eval_options(args, decoder).describe_decoder()


# -------------------------------------------------------------------- stage 1
def stage_pocketsphinx(sets, args, out: Path) -> None:
    try:
        from recipes.eval import pocketsphinx_baseline as psb
    except ImportError as e:
        log(f"stage 1: PocketSphinx baseline unavailable ({e}); skipped")
        return

    for name, manifest, source in sets:
        d = out / pocketsphinx_tag(args) / name
        key = {"manifest": file_key(manifest), "limit": args.limit, "decoder": psb._version()}
        if args.grammar:
            key["grammar"] = list(args.grammar)
        if cached(d, key, args.force):
            log(f"stage 1: pocketsphinx {name}: cached")
            continue
        d.mkdir(parents=True, exist_ok=True)
        summ = None if args.grammar else reuse_baseline(name, manifest, source, args, d)
        if summ is None:
            log(f"stage 1: pocketsphinx on {name}")
            argv = [manifest, "--out", str(d / "hyps.jsonl"), "--summary", str(d / "baseline_summary.json")]
            if args.grammar:
                argv += ["--grammar", json.dumps(list(args.grammar))]
            try:
                summ = psb.main(argv)
            except (Exception, SystemExit) as e:  # noqa: BLE001  (a peer script: report, keep going)
                log(f"stage 1: pocketsphinx failed on {name}: {e.__class__.__name__}: {e}")
                continue
        summary = pocketsphinx_summary(name, manifest, summ, d / "hyps.jsonl")
        (d / "summary.json").write_text(json.dumps(summary, indent=1))
        mark_done(d, key)


def pocketsphinx_summary(name: str, manifest: str, summ: dict, hyps: Path) -> dict:
    """PocketSphinx's hypotheses rescored by ``asr.scoring`` (both systems scored by the same code),
    with the baseline script's speed figures."""
    from asr.scoring import Score, score_pairs

    rows = [json.loads(line) for line in open(hyps)]
    sc = sum(score_pairs([r["ref"] for r in rows], [r["hyp"] for r in rows]), Score())
    return {"system": "pocketsphinx", "decoder": summ.get("decoder"), "set": name,
            "audio_s": round(sum(json.loads(x)["duration"] for x in open(manifest)), 2), **sc.to_dict(),
            "rtf_1_thread": summ["rtf"], "cpu_rtf_1_thread": summ.get("cpu_rtf"),
            "baseline_wer": summ["wer"]}


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


# -------------------------------------------------------------------- stage 2
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
    tag = project_tag(args, decoder)
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
