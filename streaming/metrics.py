"""Server metrics in the Prometheus text format, without a dependency (``/metrics``)."""

from __future__ import annotations

import threading
from typing import Dict

__all__ = ["Histogram", "Metrics"]


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

    def render(self):
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            acc = 0
            for b, c in zip(self.buckets, self.counts):
                acc += c
                out.append(f'{self.name}_bucket{{le="{b:g}"}} {acc}')
            out.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
            out.append(f"{self.name}_sum {self.sum:.6f}")
            out.append(f"{self.name}_count {self.count}")
        return out


class Metrics:
    """Prometheus text exposition, no dependency."""

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
        self.labelled = {"asr_connections_total", "asr_errors_total", "asr_finals_total"}
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

    def render(self, gauges: Dict[str, tuple]) -> str:
        out = []
        for name, (help, value) in gauges.items():
            out += [f"# HELP {name} {help}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        with self._lock:
            for name, series in self.counters.items():
                out += [f"# HELP {name} {self.help[name]}", f"# TYPE {name} counter"]
                if not series and name not in self.labelled:
                    out.append(f"{name} 0")
                for labels, v in sorted(series.items()):
                    lab = "{" + ",".join(f'{k}="{val}"' for k, val in labels) + "}" if labels else ""
                    out.append(f"{name}{lab} {v:g}")
        for h in (self.batch_size, self.step_seconds, self.latency):
            out += h.render()
        return "\n".join(out) + "\n"
