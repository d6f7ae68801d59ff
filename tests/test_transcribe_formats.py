"""asr transcribe: segments by the endpointer's rule, txt/json/srt/vtt output, standard input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.decoding import EndpointConfig, Word
from asr.subtitles import Segment, segment_words, to_srt, to_vtt

ROOT = Path(__file__).resolve().parents[1]
WAV = ROOT / "tests" / "fixtures" / "conference.wav"


def _w(word, start, end):
    return Word(word, start, end, 0.9)


def test_segments_split_at_pauses_and_at_the_length_limit():
    words = [_w("a", 0.0, 0.3), _w("b", 0.4, 0.7), _w("c", 1.6, 1.9),  # 0.9 s pause before c
             _w("d", 2.0, 2.2), _w("e", 9.0, 9.1)]
    cfg = EndpointConfig(trailing_silence_s=0.8, max_segment_s=100.0)
    assert [s.text for s in segment_words(words, cfg)] == ["a b", "c d", "e"]
    segs = segment_words(words, EndpointConfig(trailing_silence_s=50.0, max_segment_s=1.5))
    assert [s.text for s in segs] == ["a b", "c d", "e"]  # c starts 1.6 s after a: a new segment
    assert (segs[1].start, segs[1].end) == (1.6, 2.2)
    assert [s.text for s in segment_words(words, EndpointConfig(enabled=False))] == ["a b c d e"]
    assert segment_words([], cfg) == []


def test_subtitle_formats():
    segs = [Segment(0.44, 3.08, "hello there"), Segment(3725.5, 3727.0, "again")]
    assert to_srt(segs) == ("1\n00:00:00,440 --> 00:00:03,080\nhello there\n\n"
                            "2\n01:02:05,500 --> 01:02:07,000\nagain\n\n")
    assert to_vtt(segs) == ("WEBVTT\n\n00:00:00.440 --> 00:00:03.080\nhello there\n\n"
                            "01:02:05.500 --> 01:02:07.000\nagain\n\n")
    assert Segment.from_dict(segs[0].to_dict()) == segs[0]


@pytest.fixture(scope="module")
def rec():
    import asr

    return asr.load_model("default")


def test_segments_do_not_depend_on_chunking(rec, tmp_path):
    from asr.transcribe import transcribe_file

    x, sr = sf.read(WAV, dtype="float32")
    long = np.concatenate([x, np.zeros(int(2.0 * sr), np.float32), x])
    path = tmp_path / "two.wav"
    sf.write(path, long, sr)
    cut = EndpointConfig(max_segment_s=2.0)
    whole = transcribe_file(rec, str(path), endpoint=cut)
    for ms in (37, 160):
        assert transcribe_file(rec, str(path), chunk_ms=ms, endpoint=cut)["segments"] == whole["segments"]
    assert len(whole["segments"]) >= 2  # 8 s of audio, segments of at most 2 s
    assert " ".join(s["text"] for s in whole["segments"]) == whole["text"]


class _Stdin:
    def __init__(self, data: bytes):
        import io

        self.buffer = io.BytesIO(data)


def _asr(monkeypatch, capsysbinary, *args, stdin=b""):
    """``asr transcribe ARGS`` in this process (the model loads once): (exit code, stdout, stderr)."""
    from asr.cli import main

    monkeypatch.setattr(sys, "stdin", _Stdin(stdin))
    rc = main(["transcribe", *args])
    out = capsysbinary.readouterr()
    return rc, out.out, out.err


def test_cli_stdin_formats_and_output_dir(tmp_path, monkeypatch, capsysbinary):
    run = lambda *a, stdin=b"": _asr(monkeypatch, capsysbinary, *a, stdin=stdin)  # noqa: E731
    rc, out, err = run(str(WAV), "--format", "json")
    assert rc == 0, err
    ref = json.loads(out)
    rc, out, err = run("-", "--format", "json", stdin=WAV.read_bytes())
    assert rc == 0, err
    got = json.loads(out)
    assert got["audio"] == "-" and got["text"] == ref["text"] and got["segments"] == ref["segments"]
    rc, out, _ = run(str(WAV), "--format", "srt")
    assert out.decode().startswith("1\n00:00:") and b" --> " in out
    rc, out, _ = run(str(WAV), str(WAV), "--format", "vtt", "--output-dir", str(tmp_path / "subs"))
    assert rc == 0 and out == b""
    assert (tmp_path / "subs" / "conference.vtt").read_text().startswith("WEBVTT\n\n")
    rc, _, err = run(str(WAV), str(WAV), "--format", "srt")
    assert rc == 1 and b"needs --output-dir" in err
    rc, _, err = run("-")
    assert rc == 1 and b"<stdin>: no data" in err
    rc, _, err = run("-", "-")
    assert rc == 1 and b"only once" in err
