"""How many real-time streams a server can take: the default connection limit of ``asr serve``.

A stream costs about the arithmetic of its model per second of audio
(:func:`stream_gflops`: the 4 x 384 GRU default model is ~0.2 GFLOP per audio second), plus
per-stream Python work that the batched scheduler keeps small. The default limit is

    cores x SERVING_GFLOPS_PER_CORE / stream_gflops(model)

with ``cores`` the CPU cores the server's workers can use. ``SERVING_GFLOPS_PER_CORE`` is
the model arithmetic one core sustains while serving real-time streams with a 95th
percentile partial latency within 150 ms: a calibration constant, measured with
``tools/bench_server.py``, which prints this derived limit beside the largest N it found
holding that latency. Past the limit, connections are refused with ``server_busy`` and
close code 1013 (``streaming/PROTOCOL.md``); ``asr serve --max-connections`` overrides it.
"""

from __future__ import annotations

__all__ = ["SERVING_GFLOPS_PER_CORE", "stream_gflops", "default_max_connections"]

# fp32 model GFLOP/s per core while serving at p95 <= 150 ms: ~85 GFLOP/s of GEMM on one
# core of the reference machine, at most half of it spent in model arithmetic (the rest:
# features, search, WebSocket traffic, scheduling) and ~60 % load for latency headroom
SERVING_GFLOPS_PER_CORE = 25.0
MIN_CONNECTIONS, MAX_CONNECTIONS = 8, 4096  # bounds of the derived limit


def stream_gflops(model_cfg, frame_shift_s: float = 0.01) -> float:
    """Multiply-adds x 2 of one stream per second of audio, in GFLOP, for a
    :class:`asr.model.ModelConfig` (convs, projection, recurrent layers, output layer)."""
    c = model_cfg
    rate = 1.0 / frame_shift_s  # feature frames per second
    flops = 0.0
    c_in = c.n_mels
    for stride in c.conv_strides:
        rate /= stride
        flops += rate * 2 * c_in * c.conv_channels * c.conv_kernel
        c_in = c.conv_channels
    gates = 3 if c.rnn_type == "gru" else 4
    flops += rate * 2 * c.conv_channels * c.rnn_hidden  # projection
    flops += rate * c.rnn_layers * 2 * gates * 2 * c.rnn_hidden * c.rnn_hidden  # input + recurrent weights
    flops += rate * 2 * c.rnn_hidden * c.vocab_size
    return flops / 1e9


def default_max_connections(rec, cores: int) -> int:
    """The derived connection limit for recognizer ``rec`` on ``cores`` cores (module docstring)."""
    per_stream = stream_gflops(rec.model.cfg, rec.features.frame_shift_s)
    n = int(max(1, cores) * SERVING_GFLOPS_PER_CORE / max(per_stream, 1e-9))
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, n))
