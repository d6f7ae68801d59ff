"""Stage 3 of recipes/eval/run.py: one table of both systems on every set (``comparison.md``)
and the same figures as JSON (``comparison.json``), from the result directories of stages 1-2."""

from __future__ import annotations

import json
from pathlib import Path

from recipes.eval.systems import decoder_label, model_tag, pocketsphinx_tag, project_tag, system_tag

HEADER = ["set", "utts", "audio min", "system", "WER %", "CER %", "S/D/I", "RTF 1 thread (wall / CPU)",
          "RTF eval run (wall / CPU)", "word latency median / p95 (ms)", "final latency median / p95 (ms)"]
SUMMARY_KEYS = ("utterances", "audio_s", "wer", "cer", "substitutions", "deletions", "insertions", "ref_words",
                "rtf", "cpu_rtf", "threads", "options")


def fmt(x, pct=False, ms=False, digits=3):
    if x is None:
        return "-"
    if ms:
        return f"{1000 * x:.0f}"
    return f"{x:.2f}" if pct else f"{x:.{digits}f}"


def markdown_table(header: list, rows: list) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def length_scores(sets, systems) -> tuple:
    """``({set: {length bucket: {system label: Score}}}, labels of the systems with a file, in order
    of appearance)`` from the per-utterance files of ``systems`` (``(label, result directory, file
    name)``, each line with the normalised "ref" and "hyp")."""
    from asr.scoring import Score, length_bucket, score_pairs

    per_set, used = {}, []
    for name, _, _ in sets:
        per: dict = {}  # bucket -> system -> Score
        for label, sys_dir, fname in systems:
            f = sys_dir / name / fname
            if not f.exists():
                continue
            recs = [json.loads(line) for line in open(f)]
            for sc in score_pairs([r["ref"] for r in recs], [r["hyp"] for r in recs]):
                b = per.setdefault(length_bucket(sc.ref_words), {})
                b[label] = b.get(label, Score()) + sc
            if label not in used:
                used.append(label)
        if per:
            per_set[name] = per
    return per_set, used


def length_table(sets, args, out: Path, data: dict) -> list:
    """Markdown lines: WER of every system per reference-length bucket (1 word, 2, 3-5, 6+) of each set,
    from the per-utterance files; also stored under ``data["sets"][SET]["by_length"]``."""
    systems = [(f"project ({decoder_label(args, d)})", out / project_tag(args, d), "utterances.jsonl")
               for d in args.decoder] + [("PocketSphinx 5", out / pocketsphinx_tag(args), "hyps.jsonl")]
    per_set, used = length_scores(sets, systems)
    if not per_set:
        return []
    for name, per in per_set.items():
        data["sets"].setdefault(name, {})["by_length"] = {
            b: {n: sc.to_dict() for n, sc in per[b].items()} for b in sorted(per)}
    header = ["set", "reference length", "utts"] + [f"WER % {n}" for n in used]
    rows = [[name, b, max(sc.utterances for sc in per[b].values())]
            + [fmt(100 * per[b][n].wer, pct=True) if n in per[b] else "-" for n in used]
            for name, per in per_set.items() for b in sorted(per)]
    return ["", "## WER by reference length", "",
            "Isolated words give the decoder no context and show CTC insertions most; the synthetic sentence "
            "sets start at 3 words, the Asterisk prompts do not.", ""] + markdown_table(header, rows)


def project_row(name: str, p: dict, tag: str, label: str) -> list:
    sp, lat = p.get("speed") or {}, p.get("latency") or {}
    return [name, p["utterances"], f"{p['audio_s'] / 60:.1f}", f"project ({tag}, {label})",
            fmt(p["wer"], pct=True), fmt(p["cer"], pct=True),
            f"{p['substitutions']}/{p['deletions']}/{p['insertions']}",
            f"{fmt(sp.get('rtf_1_thread'))} / {fmt(sp.get('cpu_rtf_1_thread'))}",
            f"{fmt(p['rtf'])} / {fmt(p.get('cpu_rtf'))} ({p['threads']} thr)",
            f"{fmt(lat.get('word_median_s'), ms=True)} / {fmt(lat.get('word_p95_s'), ms=True)}",
            f"{fmt(lat.get('final_median_s'), ms=True)} / {fmt(lat.get('final_p95_s'), ms=True)}"]


def pocketsphinx_row(name: str, q: dict) -> list:
    return [name, q["utterances"], f"{q['audio_s'] / 60:.1f}", "PocketSphinx 5",
            fmt(q["wer"], pct=True), fmt(q["cer"], pct=True),
            f"{q['substitutions']}/{q['deletions']}/{q['insertions']}",
            f"{fmt(q['rtf_1_thread'])} / {fmt(q.get('cpu_rtf_1_thread'))}", "-", "-", "-"]


def set_rows(name: str, manifest: str, source: str, args, out: Path) -> tuple:
    """-> (the table rows of one set, its ``comparison.json`` entry)."""
    tag = model_tag(args.model, args.int8)
    rows, entry = [], {"source": source, "manifest": manifest}
    for decoder in args.decoder:
        pf = out / project_tag(args, decoder) / name / "summary.json"
        if not pf.exists():
            continue
        p = json.loads(pf.read_text())
        key = "project" if decoder == "greedy" else "project_" + system_tag("", decoder, args.lm).lstrip("+")
        entry[key] = {k: p[k] for k in SUMMARY_KEYS}
        entry[key].update(speed=p.get("speed") or None, latency=p.get("latency") or None)
        rows.append(project_row(name, p, tag, decoder_label(args, decoder)))
    qf = out / pocketsphinx_tag(args) / name / "summary.json"
    if qf.exists():
        q = json.loads(qf.read_text())
        entry["pocketsphinx"] = q
        rows.append(pocketsphinx_row(name, q))
    return rows, entry


def preamble(args) -> list:
    """The title and the notes above the table: systems, data, scoring, what the columns measure."""
    return ["# Project model vs PocketSphinx 5", "",
            f"- project model: `{args.model}`; decoders: {'; '.join(decoder_label(args, d) for d in args.decoder)}"
            + (f" (LM `{args.lm}`)" if args.lm and "beam" in args.decoder else "")
            + (" (default: the model's bundled decoding)" if "default" in args.decoder else "")
            + (f"; streams fed in {args.chunk_ms:g} ms chunks" if args.chunk_ms else "; whole utterances"),
            "- PocketSphinx 5: default en-us acoustic model, "
            + ("a JSGF grammar of the same phrases" if args.grammar else "language model")
            + " and dictionary, 1 thread (recipes/eval/pocketsphinx_baseline.py)",
            f"- data: `{args.data_dir}`" + (f", {args.limit} utterances spread evenly over each set" if args.limit else ""),
            "- scoring: `asr.text.normalize` on reference and hypothesis, jiwer, corpus WER = (S + D + I) / N",
            "- RTF 1 thread: one stream at a time (project: first --speed-utts utterances); RTF eval run: the "
            "batched evaluation on its --threads; CPU = CPU time / audio time, meaningful when other jobs share "
            "the cores; latency: audio fed at real-time pace "
            f"in {args.latency_chunk_ms:g} ms chunks (project only), word = shown - word end, "
            "final = end of audio -> final result", ""]


def stage_table(sets, args, out: Path) -> Path:
    tag = model_tag(args.model, args.int8)
    rows, data = [], {"model": args.model, "data_dir": args.data_dir, "limit": args.limit, "sets": {}}
    for name, manifest, source in sets:
        set_table_rows, data["sets"][name] = set_rows(name, manifest, source, args, out)
        rows += set_table_rows
    md = preamble(args) + markdown_table(HEADER, rows)
    md += length_table(sets, args, out, data)
    md += ["", f"Per-set reports: `{tag}[+beam[-lm]]/SET/report.md`; PocketSphinx hypotheses: `pocketsphinx/SET/hyps.jsonl`.", ""]
    (out / "comparison.md").write_text("\n".join(md))
    (out / "comparison.json").write_text(json.dumps(data, indent=1))
    return out / "comparison.md"
