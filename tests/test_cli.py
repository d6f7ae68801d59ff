"""CLI behaviour: bad input gives one clear line and a non-zero exit, never a traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from conftest import make_recognizer, speechlike


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "rand.pt"
    make_recognizer("gru").save(p)
    return str(p)


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    p = tmp_path_factory.mktemp("a") / "a.wav"
    sf.write(p, speechlike(1.5, seed=3), 16000, subtype="PCM_16")
    return str(p)


def run_cli(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_transcribe_json_and_chunk_invariance(model_path, wav, capsys):
    rc, out, err = run_cli(["transcribe", wav, "--model", model_path, "--json"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert set(d) == {"audio", "text", "words", "segments", "duration", "rtf"}
    assert abs(d["duration"] - 1.5) < 1e-3
    assert d["text"] and all(set(w) == {"word", "start", "end", "conf"} for w in d["words"])
    for ms in ["10", "37", "160", "1000"]:
        rc, out2, _ = run_cli(["transcribe", wav, "--model", model_path, "--json", "--chunk-ms", ms], capsys)
        assert rc == 0 and json.loads(out2)["text"] == d["text"]


def test_transcribe_int8(model_path, wav, capsys):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, out, err = run_cli(["transcribe", wav, "--model", model_path, "--json", "--int8", "--chunk-ms", "160"],
                               capsys)
    assert rc == 0, err
    # torch's deprecation warnings about its quantisation API are not the user's business
    assert not [w for w in caught if "deprecated" in str(w.message)]
    d = json.loads(out)
    assert d["text"] and abs(d["duration"] - 1.5) < 1e-3


def test_transcribe_with_beam_and_lm(model_path, wav, tmp_path, capsys):
    """--decoder beam [--lm]: same stream log-probs, beam search; LM output stays in the LM's words,
    for every chunk size."""
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.beam import BeamCTCDecoder
    from asr.checkpoint import load_model
    from asr.lm import build_arpa

    rec = load_model(model_path)
    st = rec.stream(16000, keep_log_probs=True)
    st.accept_waveform(sf.read(wav, dtype="float32")[0])
    st.finish()
    want = BeamCTCDecoder(rec.tokenizer, rec.step_s).decode(st.all_log_probs()).text
    rc, out, err = run_cli(["transcribe", wav, "--model", model_path, "--decoder", "beam"], capsys)
    assert rc == 0 and out.strip() == want, err
    lm = tmp_path / "lm.arpa"
    vocab = {"tea", "at", "eat", "ate"}
    build_arpa(["tea at eat", "ate tea"], str(lm), order=2)
    texts = set()
    for ms in [None, "37", "160"]:
        extra = ["--chunk-ms", ms] if ms else []
        # all tokens per step: the random model's 8 best rarely spell one of the LM's words
        rc, out, err = run_cli(["transcribe", wav, "--model", model_path, "--decoder", "beam", "--lm", str(lm),
                                "--word-score", "2", "--beam-size-token", "0", "--json", *extra], capsys)
        assert rc == 0, err
        d = json.loads(out)
        assert d["text"] and set(d["text"].split()) <= vocab
        assert [w["word"] for w in d["words"]] == d["text"].split()
        texts.add(d["text"])
    assert len(texts) == 1
    rc, _, err = run_cli(["transcribe", wav, "--model", model_path, "--lm", str(lm)], capsys)
    assert rc == 1 and "--lm needs --decoder beam" in err


def _bad_files(tmp_path):
    txt = tmp_path / "notes.wav"
    txt.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1] * 100, dtype=np.float32), 16000, subtype="FLOAT")
    odd = tmp_path / "data.xyz"
    odd.write_bytes(b"\x00\x01" * 100)
    return {
        "missing": (str(tmp_path / "missing.wav"), "no such file"),
        "not audio": (str(txt), "not a readable audio file"),
        "empty": (str(empty), "contains no audio"),
        "nan": (str(nan), "NaN"),
        "unsupported": (str(odd), "not a readable audio file"),
        "directory": (str(tmp_path), "is a directory"),
    }


def test_bad_inputs_one_line_errors(model_path, tmp_path, capsys):
    for name, (path, msg) in _bad_files(tmp_path).items():
        rc, out, err = run_cli(["transcribe", path, "--model", model_path], capsys)
        assert rc != 0, name
        assert msg in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in err


def test_good_and_bad_files_together(model_path, wav, tmp_path, capsys):
    rc, out, err = run_cli(["transcribe", wav, str(tmp_path / "nope.wav"), "--model", model_path], capsys)
    assert rc == 1
    assert out.startswith(wav)  # the good file is still transcribed
    assert "no such file" in err


def test_missing_model_message(wav, capsys):
    rc, out, err = run_cli(["transcribe", wav, "--model", "/nonexistent/model.pt"], capsys)
    assert rc == 1 and "model file not found" in err


@pytest.mark.parametrize("args, option", [
    (["transcribe", "{wav}", "--chunk-ms", "0"], "--chunk-ms"),
    (["transcribe", "{wav}", "--chunk-ms", "inf"], "--chunk-ms"),  # was an OverflowError traceback
    (["transcribe", "{wav}", "--chunk-ms", "nan"], "--chunk-ms"),  # was "cannot convert float NaN to integer"
    (["transcribe", "{wav}", "--threads", "-1"], "--threads"),  # was a RuntimeError traceback from torch
    (["transcribe", "{wav}", "--decoder", "beam", "--lm-weight", "nan"], "--lm-weight"),  # was an IndexError traceback
    (["transcribe", "{wav}", "--decoder", "beam", "--word-score", "inf"], "--word-score"),
    (["eval", "{wav}", "--chunk-ms", "inf"], "--chunk-ms"),
    (["serve", "--threads", "-1"], "--threads"),  # was a RuntimeError traceback from torch
    (["client", "{wav}", "--chunk-ms", "inf"], "--chunk-ms"),  # was a 60 s hang until the server's idle timeout
    (["client", "{wav}", "--chunk-ms", "nan"], "--chunk-ms"),
])
def test_bad_option_values_are_one_line_usage_errors(args, option, model_path, wav, capsys):
    """Refused while parsing, before any model or connection: one argparse-style line naming
    the option, exit status 2."""
    argv = [a.format(wav=wav) for a in args] + (["--model", model_path] if args[0] != "client" else [])
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2 and out == ""
    assert err.startswith(f"asr {args[0]}: error: argument {option}: ") and len(err.strip().splitlines()) == 1, err


def test_usage_errors_are_one_line(capsys):
    rc, _, err = run_cli(["transcribe"], capsys)
    assert rc == 2 and err.strip() == "asr transcribe: error: the following arguments are required: FILE"


def test_beam_options_refuse_non_finite_weights():
    from asr.beam import BeamOptions

    for name in ("lm_weight", "word_score"):
        for x in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"--{name.replace('_', '-')} must be a finite number"):
                BeamOptions(**{name: x})


def test_transcribe_file_refuses_non_finite_chunk(model_path, wav):
    from asr.checkpoint import load_model
    from asr.transcribe import transcribe_file

    rec = load_model(model_path)
    for ms in (float("inf"), float("nan"), 0):
        with pytest.raises(ValueError, match="chunk_ms"):
            transcribe_file(rec, wav, ms)


def test_truncated_wav_is_transcribed_with_a_warning(model_path, wav, tmp_path, capsys):
    """A WAV whose header declares more audio than the file holds (an interrupted copy or
    recording): what is there is transcribed, with a one-line warning on stderr."""
    from asr.audio import read_audio

    data = open(wav, "rb").read()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2 + 1])  # also cuts a sample in half
    rc, out, err = run_cli(["transcribe", str(cut), "--model", model_path, "--json"], capsys)
    assert rc == 0 and json.loads(out)["duration"] < 1.0
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"asr transcribe: warning: {cut}: truncated WAV file") and "0.7" in err
    with pytest.warns(UserWarning, match="truncated"):
        samples, sr = read_audio(str(cut))
    assert len(samples) == (len(data) // 2 - 44) // 2  # the whole samples after the 44-byte header
    rc, _, err = run_cli(["transcribe", wav, "--model", model_path], capsys)
    assert rc == 0 and err == ""  # a whole file: no warning


def test_beam_pruning_flags(model_path, wav, capsys):
    pytest.importorskip("flashlight.lib.text.decoder")
    rc, out, _ = run_cli(["transcribe", wav, "--model", model_path, "--decoder", "beam",
                          "--beam-size-token", "4", "--beam-threshold", "20"], capsys)
    assert rc == 0 and out.strip()
    rc, _, err = run_cli(["transcribe", wav, "--model", model_path, "--decoder", "beam", "--beam-size-token", "-1"],
                         capsys)
    assert rc == 1 and "--beam-size-token must be at least 1" in err and len(err.strip().splitlines()) == 1


def test_python_m_asr_entry_point(model_path, wav):
    p = subprocess.run([sys.executable, "-m", "asr", "transcribe", wav, "--model", model_path],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip()
