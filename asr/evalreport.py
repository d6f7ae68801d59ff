"""Evaluation reports: the record of one ``asr eval`` run, and its outputs.

:class:`EvalReport` holds scores, breakdowns, speed and latency; :func:`write_outputs` writes
``report.md``, ``summary.json``, ``utterances.jsonl`` and PNG plots; :func:`print_summary`
prints the short console version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from .evalrun import EvalOptions
from .scoring import Score, UttResult, alignment_text
from .speed import LatencyResult, SpeedResult

__all__ = ["EvalReport", "render_markdown", "write_outputs", "print_summary"]


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


# ------------------------------------------------------------------------------- plots
def _save(fig, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return name


def _plot_group(report: EvalReport, key: str, g: Dict[str, Score], out: Path) -> str:
    import matplotlib.pyplot as plt

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
    return _save(fig, out, f"wer_by_{key}.png")


def _plot_wer_hist(report: EvalReport, out: Path) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([min(100 * u.score.wer, 200) for u in report.utterances], bins=40)
    ax.set_xlabel("utterance WER (%, capped at 200)")
    ax.set_ylabel("utterances")
    ax.set_title(f"{Path(report.model).name}: per-utterance WER")
    return _save(fig, out, "wer_hist.png")


def _plot_latency(report: EvalReport, out: Path) -> str:
    import matplotlib.pyplot as plt

    lat = report.latency
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].hist([1000 * x for x in lat.word_latency_s], bins=40)
    axes[0].set_xlabel("word latency (ms): first shown - word end")
    axes[1].hist([1000 * x for x in lat.final_latency_s], bins=20)
    axes[1].set_xlabel("final latency (ms): end of audio -> final result")
    for ax in axes:
        ax.set_ylabel("count")
    fig.suptitle(f"{Path(report.model).name}: latency at real-time pace, {lat.chunk_ms:g} ms chunks")
    return _save(fig, out, "latency.png")


def _plot_groups(report: EvalReport, out: Path) -> List[str]:
    """Every plot of ``report`` as a PNG in ``out`` -> the file names."""
    import matplotlib

    matplotlib.use("Agg")
    files = [_plot_group(report, key, g, out) for key, g in report.groups.items()]
    files.append(_plot_wer_hist(report, out))
    if report.latency and report.latency.word_latency_s:
        files.append(_plot_latency(report, out))
    return files


# ---------------------------------------------------------------------------- markdown
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


def _md_head(report: EvalReport) -> List[str]:
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
    return md


def _md_speed(report: EvalReport) -> List[str]:
    md = ["## Speed", "",
          f"- evaluation run: RTF {report.rtf:.4f} wall clock, {report.cpu_rtf:.4f} CPU ({report.compute_s:.1f} s "
          f"for {report.audio_s:.1f} s audio, batched, {_threads(report.threads)})"]
    if report.speed:
        sp = report.speed
        md.append(f"- single stream ({sp.utterances} utterances, {sp.audio_s:.1f} s audio): "
                  f"RTF {sp.rtf_1_thread:.4f} on 1 thread ({sp.cpu_rtf_1_thread:.4f} CPU), "
                  f"{sp.rtf_all_threads:.4f} on {_threads(sp.all_threads)} ({sp.cpu_rtf_all_threads:.4f} CPU)")
    md.append("")
    return md


def _md_latency(d: dict) -> List[str]:
    def ms(x):
        return "-" if x is None else f"{1000 * x:.0f}"

    return ["## Latency", "",
            f"Audio fed at real-time pace in {d['chunk_ms']:g} ms chunks, {d['utterances']} utterances, "
            f"{d['words']} words, greedy partial results. Word latency = first time the word is shown minus "
            "the model's end time of the word; final latency = end of audio -> final result.", "",
            _md_table(["", "median (ms)", "p95 (ms)"],
                      [["word", ms(d["word_median_s"]), ms(d["word_p95_s"])],
                       ["final", ms(d["final_median_s"]), ms(d["final_p95_s"])]]), ""]


def render_markdown(report: EvalReport, plots: Sequence[str] = (), n_worst: int = 10) -> str:
    md = _md_head(report)
    md += ["", "## Overall", "", _md_table(_SCORE_HEADER, [_score_row("all", report.score)]), ""]
    for key, g in report.groups.items():
        md += [f"## By {key}", "", _md_table([key] + _SCORE_HEADER[1:], [_score_row(v, sc) for v, sc in g.items()]), ""]
        if f"wer_by_{key}.png" in plots:
            md += [f"![WER by {key}](wer_by_{key}.png)", ""]
    md += _md_speed(report)
    if report.latency:
        md += _md_latency(report.latency.to_dict())
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


# ----------------------------------------------------------------------------- console
def print_summary(report: EvalReport) -> None:
    """A few lines: overall WER/CER and RTF, the breakdowns (worst values of long ones), speed, latency."""
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
