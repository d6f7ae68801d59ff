"""Server metrics in the Prometheus text format, without a dependency (``/metrics``).

A process keeps its own :class:`Metrics`; :meth:`Metrics.snapshot` turns them, with the
server's gauges, into plain data (JSON-able). :func:`render` writes the text of one or more
snapshots: a server of several processes (``asr serve --processes N``) answers a scrape with
the sum over every process's snapshot (:mod:`streaming.peers` collects them), counters and
histograms added up, gauges added up except the peaks (largest), plus ``asr_processes``
(the processes that answered) and ``asr_process_connections`` per process.
"""

from __future__ import annotations

import threading
from typing import Dict, List

__all__ = ["Histogram", "Metrics", "render"]

# counters without a zero line when empty (one series per label value)
LABELLED = ("asr_connections_total", "asr_errors_total", "asr_finals_total")
# gauges combined over processes by their largest value instead of their sum
PEAK_GAUGES = ("asr_peak_pending_audio_seconds", "asr_peak_pending_items")


class Histogram:
    def __init__(self, name: str, help: str, buckets):
        self.name, self.help, self.buckets = name, help, list(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, v: float) -> None:
        with self._lock:
            i = next((k for k, b in enumerate(self.buckets) if v <= b), len(self.buckets))
            self.counts[i] += 1
            self.sum += v
            self.count += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {"name": self.name, "help": self.help, "buckets": self.buckets, "counts": list(self.counts),
                    "sum": self.sum, "count": self.count}


def _render_histogram(h: dict) -> List[str]:
    name = h["name"]
    out = [f"# HELP {name} {h['help']}", f"# TYPE {name} histogram"]
    acc = 0
    for b, c in zip(h["buckets"], h["counts"]):
        acc += c
        out.append(f'{name}_bucket{{le="{b:g}"}} {acc}')
    out.append(f'{name}_bucket{{le="+Inf"}} {h["count"]}')
    out.append(f"{name}_sum {h['sum']:.6f}")
    out.append(f"{name}_count {h['count']}")
    return out


class Metrics:
    """One process's counters and histograms (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counters: Dict[str, Dict[tuple, float]] = {}
        self.help: Dict[str, str] = {}
        self.batch_size = Histogram("asr_batch_size", "Streams per model step.", [1, 2, 4, 8, 16, 32, 64, 128])
        self.step_seconds = Histogram("asr_step_seconds", "Wall time of one batched model step (features + model + search).",
                                      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        self.latency = Histogram("asr_result_latency_seconds",
                                 "From receiving an audio message to sending the event that covers it.",
                                 [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        for name, h in [("asr_connections_total", "WebSocket connections accepted, by endpoint."),
                        ("asr_errors_total", "Connections ended by an error, by code."),
                        ("asr_finals_total", "Final results sent, by reason."),
                        ("asr_audio_seconds_total", "Seconds of audio decoded."),
                        ("asr_steps_total", "Batched model steps.")]:
            self.counters[name] = {}
            self.help[name] = h

    def inc(self, name: str, labels: tuple = (), v: float = 1.0) -> None:
        with self._lock:
            c = self.counters[name]
            c[labels] = c.get(labels, 0.0) + v

    def get(self, name: str, labels: tuple = ()) -> float:
        return self.counters[name].get(labels, 0.0)

    def on_step(self, batch: int, seconds: float, audio_s: float) -> None:  # scheduler thread
        self.inc("asr_steps_total")
        self.inc("asr_audio_seconds_total", v=audio_s)
        if batch:
            self.batch_size.observe(batch)
            self.step_seconds.observe(seconds)

    def snapshot(self, gauges: Dict[str, tuple], process: int = 0, pid: int = 0) -> dict:
        """Gauges (``name -> (help, value)``), counters and histograms of process number
        ``process`` (``pid``) now, as JSON-able data for :func:`render`."""
        with self._lock:
            counters = {name: [self.help[name], [[[list(kv) for kv in labels], v] for labels, v in series.items()]]
                        for name, series in self.counters.items()}
        return {"process": process, "pid": pid, "gauges": {k: list(v) for k, v in gauges.items()},
                "counters": counters,
                "histograms": [h.snapshot() for h in (self.batch_size, self.step_seconds, self.latency)]}

    def render(self, gauges: Dict[str, tuple]) -> str:
        """This process alone, as the text of ``/metrics``."""
        return render([self.snapshot(gauges)])


def render(snapshots: List[dict]) -> str:
    """The Prometheus text of the sum of :meth:`Metrics.snapshot` s (module docstring)."""
    gauges: Dict[str, list] = {}
    for s in snapshots:
        for name, (help, v) in s["gauges"].items():
            if name not in gauges:
                gauges[name] = [help, v]
            else:
                gauges[name][1] = max(gauges[name][1], v) if name in PEAK_GAUGES else gauges[name][1] + v
    gauges["asr_processes"] = ["Server processes that answered this scrape (asr serve --processes).", len(snapshots)]
    out = []
    for name, (help, value) in gauges.items():
        out += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {value:g}"]
    out += ["# HELP asr_process_connections Open WebSocket connections of each server process.",
            "# TYPE asr_process_connections gauge"]
    for s in sorted(snapshots, key=lambda s: s["process"]):
        out.append(f'asr_process_connections{{process="{s["process"]}",pid="{s["pid"]}"}} '
                   f'{s["gauges"].get("asr_active_connections", [0, 0])[1]:g}')
    counters: Dict[str, list] = {}
    for s in snapshots:
        for name, (help, series) in s["counters"].items():
            total = counters.setdefault(name, [help, {}])[1]
            for labels, v in series:
                key = tuple(tuple(kv) for kv in labels)
                total[key] = total.get(key, 0.0) + v
    for name, (help, series) in counters.items():
        out += [f"# HELP {name} {help}", f"# TYPE {name} counter"]
        if not series and name not in LABELLED:
            out.append(f"{name} 0")
        for labels, v in sorted(series.items()):
            lab = "{" + ",".join(f'{k}="{val}"' for k, val in labels) + "}" if labels else ""
            out.append(f"{name}{lab} {v:g}")
    for k, h in enumerate(snapshots[0]["histograms"] if snapshots else []):
        total = dict(h, counts=list(h["counts"]))
        for s in snapshots[1:]:
            other = s["histograms"][k]
            total["counts"] = [a + b for a, b in zip(total["counts"], other["counts"])]
            total["sum"] += other["sum"]
            total["count"] += other["count"]
        out += _render_histogram(total)
    return "\n".join(out) + "\n"
