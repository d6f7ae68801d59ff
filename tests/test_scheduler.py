"""Serving capacity pieces: several scheduler workers give each stream exactly its single-stream
output, batched features equal per-stream features, the inference conv path equals the conv,
partials are skipped only when they would repeat, and the derived connection limit.

No test here measures time: workers are made to overlap with a barrier, not with sleeps.
"""

import asyncio
import json
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.decoding import EndpointConfig
from asr.stream import Stream, StreamClosedError, audio_chunks, decode_streams, feed_streams
from streaming.capacity import default_max_connections, stream_gflops
from streaming.client import file_chunks, run_session
from streaming.scheduler import Scheduler
from streaming.server import BackgroundServer, ServerConfig

from conftest import speechlike


class Loop:
    """Stands in for the event loop: delivers at once, in the worker thread."""

    def call_soon_threadsafe(self, fn, arg):
        fn(arg)


def single_log_probs(rec, wave, sr=16000):
    st = Stream(rec, sample_rate=sr, keep_log_probs=True)
    st.accept_waveform(wave)
    st.finish()
    return st


def test_workers_give_every_stream_its_own_output(rec_gru):
    """12 streams on 3 workers in batches of at most 3: each stream's log-probs and text equal
    the stream decoded alone, its outputs arrive in order, and more than one worker stepped."""
    rec, workers = rec_gru, 3
    waves = [speechlike(0.6 + 0.1 * i, seed=200 + i) for i in range(12)]
    outs = {i: [] for i in range(len(waves))}
    met = threading.Barrier(2)
    threads = set()

    def on_step(batch, seconds, audio_s):
        name = threading.current_thread().name
        if name not in threads:
            threads.add(name)
            if len(threads) <= 2:
                met.wait(timeout=30)  # the first two workers to step wait for each other once

    sch = Scheduler(Loop(), max_batch=3, step_s=0.25, on_step=on_step, workers=workers)
    jobs = []
    for i, w in enumerate(waves):
        st = Stream(rec, keep_log_probs=True, endpoint=EndpointConfig(enabled=False))
        jobs.append(sch.add(st, outs[i].append))
        for piece in audio_chunks(w, 1600):
            jobs[-1].put_audio(piece)
        jobs[-1].end()
    sch.start()
    sch.stop()
    assert len(threads) >= 2
    for i, w in enumerate(waves):
        o = outs[i]
        assert [x.done for x in o] == [False] * (len(o) - 1) + [True]
        assert sum(x.samples for x in o) == len(w)
        ref = single_log_probs(rec, w)
        got = jobs[i].stream.all_log_probs()
        assert got.shape == ref.all_log_probs().shape
        assert (got - ref.all_log_probs()).abs().max().item() < 1e-5
        assert jobs[i].stream.full_result().text == ref.full_result().text
        jobs[i].remove()
    assert sch.jobs == 0


def test_batch_wait_gathers_the_streams_arriving_meanwhile(rec_gru):
    """With ``batch_wait_s``, a worker that finds one stream ready waits for more: streams queued
    one after another (the last one filling ``max_batch``) share one step, each still gets
    exactly its single-stream output; stopping ends the wait."""
    rec = rec_gru
    sizes = []
    sch = Scheduler(Loop(), max_batch=3, step_s=0.25, on_step=lambda batch, seconds, audio_s: sizes.append(batch),
                    batch_wait_s=60.0)  # never reached: a full batch or stop() ends every wait
    sch.start()
    waves = [speechlike(0.5, seed=300 + i) for i in range(3)]
    outs = {i: [] for i in range(3)}
    jobs = []
    for i, w in enumerate(waves):  # the worker wakes for the first stream and waits for the others
        st = Stream(rec, keep_log_probs=True, endpoint=EndpointConfig(enabled=False))
        jobs.append(sch.add(st, outs[i].append))
        jobs[-1].put_audio(w)
    for job in jobs:
        job.end()
    sch.stop()
    assert sizes[:2] == [3, 3]  # each stream's two 0.25 s pieces, all three streams per step
    for i, w in enumerate(waves):
        assert outs[i][-1].done and sum(x.samples for x in outs[i]) == len(w)
        ref = single_log_probs(rec, w)
        assert (jobs[i].stream.all_log_probs() - ref.all_log_probs()).abs().max().item() < 1e-5
    with pytest.raises(ValueError):
        Scheduler(Loop(), batch_wait_s=-1.0)


def test_server_with_several_workers_equals_transcribe(rec_gru):
    waves = [speechlike(1.0, seed=300 + i) for i in range(8)]
    with BackgroundServer(rec_gru, ServerConfig(port=0, workers=3)) as srv:
        async def all_clients():
            return await asyncio.gather(*(run_session(srv.url + "/asr", file_chunks(w, 16000, 0.1), 16000)
                                          for w in waves))

        results = asyncio.run(all_clients())
        srv.wait_idle()
        metrics = srv.server.render_metrics().splitlines()
    for events, w in zip(results, waves):
        pcm = (np.clip(np.round(w * 32768.0), -32768, 32767).astype(np.int16))
        text = " ".join(e["text"] for e in events if e["type"] == "final" and e["text"])
        assert text == rec_gru.transcribe(pcm).text
    assert "asr_workers 3" in metrics and "asr_scheduler_streams 0" in metrics


@pytest.mark.parametrize("sr", [16000, 8000, 44100])
def test_feed_streams_equals_feeding_each(rec_gru, sr):
    waves = [speechlike(0.5 + 0.2 * i, sr=sr, seed=20 + i) for i in range(4)]
    alone = [Stream(rec_gru, sample_rate=sr) for _ in waves]
    together = [Stream(rec_gru, sample_rate=sr) for _ in waves]
    for k in range(0, max(len(w) for w in waves), 777):
        pieces = [w[k : k + 777] for w in waves]
        for st, p in zip(alone, pieces):
            st.feed(p)
        feed_streams(together, pieces)
    for a, b in zip(alone, together):
        assert a._frames.shape == b._frames.shape and a._frames.shape[0] > 0
        assert (a._frames - b._frames).abs().max().item() < 1e-5  # float rounding of one mel product


def test_feed_streams_reports_a_refused_stream_and_feeds_the_others(rec_gru):
    done, ok = Stream(rec_gru), Stream(rec_gru)
    done.finish()
    errors = []
    feed_streams([done, ok], [speechlike(0.1), speechlike(0.1)], on_error=lambda i, e: errors.append((i, type(e))))
    assert errors == [(0, StreamClosedError)] and ok.samples_in == 1600
    with pytest.raises(StreamClosedError):
        feed_streams([done], [speechlike(0.1)])


def test_onednn_is_restored_after_concurrent_steps(rec_gru):
    """Worker threads switch oneDNN off while they step and leave it as they found it."""
    before = torch.backends.mkldnn.enabled
    streams = [Stream(rec_gru) for _ in range(4)]
    for st in streams:
        st.feed(speechlike(0.3, seed=st.id))
    threads = [threading.Thread(target=decode_streams, args=([st],)) for st in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.backends.mkldnn.enabled == before
    assert all(st.decoder.steps > 0 for st in streams)


def test_inference_conv_equals_the_conv(rec_gru):
    conv = rec_gru.model.convs[0]
    x = torch.randn(5, conv.c_in, 23)
    with torch.no_grad():
        gemm = conv._conv_gemm(x)
    with torch.enable_grad():
        ref = conv.conv(x).detach()
    assert gemm.shape == ref.shape
    assert (gemm - ref).abs().max().item() < 1e-5


def test_partials_skipped_only_when_the_words_are_unchanged(rec_gru):
    """A step's partial is None only when replaying the same audio gives the previous text."""
    outs = []
    sch = Scheduler(Loop(), max_batch=4, step_s=0.1)
    job = sch.add(Stream(rec_gru, endpoint=EndpointConfig(enabled=False)), outs.append)
    pause = (0.1 * np.random.default_rng(1).standard_normal(12000)).astype(np.float32)  # decoded as blanks
    wave = np.concatenate([speechlike(1.0, seed=7), pause, speechlike(0.5, seed=8)])
    for piece in audio_chunks(wave, 800):
        job.put_audio(piece)
    job.end()
    sch.start()
    sch.stop()
    replay, pos, shown = Stream(rec_gru), 0, None
    skipped = 0
    for o in outs[:-1]:
        replay.accept_waveform(wave[pos : pos + o.samples])
        pos += o.samples
        text = replay.partial().text
        if o.partial is None:
            skipped += 1
            assert text == shown
        else:
            assert o.partial.text == text
            shown = text
    assert skipped > 0  # the silence in the middle repeats its partial


def test_derived_connection_limit(rec_gru):
    from asr.model import ModelConfig

    default = stream_gflops(ModelConfig())  # the 4 x 384 GRU: ~0.2 GFLOP per audio second
    assert 0.15 < default < 0.25
    assert stream_gflops(ModelConfig(rnn_hidden=768)) > 3 * default
    with BackgroundServer(rec_gru, ServerConfig(port=0, workers=2)) as srv:
        assert srv.server.cfg.max_connections == default_max_connections(rec_gru, min(2, len(__import__("os").sched_getaffinity(0))))
    with BackgroundServer(rec_gru, ServerConfig(port=0, max_connections=3)) as srv:
        assert srv.server.cfg.max_connections == 3


def test_bench_server_reports_a_sweep(rec_gru, tmp_path, capsys):
    """tools/bench_server.py against a running server, speech from a manifest with a relative path."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tools"))
    import bench_server

    shutil.copy(root / "tests" / "fixtures" / "conference.wav", tmp_path / "a.wav")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "x"}) + "\n")
    with BackgroundServer(rec_gru, ServerConfig(port=0, workers=2)) as srv:
        assert bench_server.main(["--url", srv.url + "/asr", "--streams", "2,3", "--seconds", "1",
                                  "--audio", str(tmp_path / "m.jsonl"), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "r.json").read_text())["sweep"]
    assert [r["streams"] for r in rows] == [2, 3]
    assert all(r["errors"] == 0 and r["leaked"] == 0 and r["partials"] > 0 for r in rows)
    assert "| float | 3 |" in out and "largest N with p95 partial latency <= 150 ms" in out
    assert "model arithmetic per stream-second" in out and "x) |" in out
