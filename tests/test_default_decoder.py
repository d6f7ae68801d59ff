"""The default final decoder: beam search with the word LM bundled next to a model
(``NAME.lm.json`` + an ARPA file, :mod:`asr.lmbundle`), greedy for a model without one.
Tiny random models and tiny LMs only; the shipped model's own LM is checked when present."""

import json
from pathlib import Path

import pytest
import soundfile as sf

from asr.cli import main
from conftest import make_recognizer, speechlike

pytest.importorskip("flashlight.lib.text.decoder")

WORDS = ["tea", "at", "eat", "ate", "a", "tee"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(checkpoint with a bundled LM, the same checkpoint without one)."""
    from asr.lm import build_arpa

    d = tmp_path_factory.mktemp("models")
    rec = make_recognizer("gru")
    with_lm, plain = d / "withlm.pt", d / "plain.pt"
    rec.save(with_lm)
    rec.save(plain)
    build_arpa(["tea at eat", "ate tea", "a tee at a tea"], str(d / "withlm.lm.arpa"), order=2)
    # all tokens per step: the random model's 8 best rarely spell one of the LM's words
    (d / "withlm.lm.json").write_text(json.dumps({"lm": "withlm.lm.arpa", "lm_weight": 1.0, "word_score": 2.0,
                                                  "beam_size_token": None, "about": "test"}))
    return str(with_lm), str(plain)


@pytest.fixture(scope="module")
def wave():
    return speechlike(1.5, seed=3)


def test_default_decoder_is_beam_with_bundled_lm_else_greedy(models, wave):
    from asr.beam import BeamCTCDecoder
    from asr.checkpoint import load_model

    with_lm, plain = (load_model(p) for p in models)
    assert with_lm.decoding.lm.endswith("withlm.lm.arpa") and with_lm.decoding.word_score == 2.0
    assert with_lm.decoding.beam_size_token is None and with_lm.decoding.beam_size == 128  # missing key: default
    dec = with_lm.default_decoder()
    assert isinstance(dec, BeamCTCDecoder) and with_lm.stream(16000).final_decoder is dec
    assert load_model(models[0]).default_decoder() is dec  # built once per process, shared
    assert with_lm.int8().default_decoder() is dec  # same vocabulary and options
    assert with_lm.stream(16000, final_decoder="greedy").final_decoder is None
    assert with_lm.stream(16000, final_decoder=None).final_decoder is None  # Stream's convention: None is greedy
    hot = with_lm.stream(16000, hotwords=["tea", "zorp"]).final_decoder  # hotwords join the LM's search
    assert type(hot).__name__ == "HotwordBeamDecoder" and hot.base is dec
    assert type(with_lm.stream(16000, hotwords=["tea"], final_decoder="greedy").final_decoder).__name__ == \
        "PrefixBeamDecoder"  # greedy finals asked for: the LM-free search
    assert plain.decoding is None and plain.stream(16000).final_decoder is None
    with pytest.raises(ValueError, match="decoder must be"):
        plain.stream(16000, final_decoder="beam")

    text = with_lm.transcribe(wave, 16000).text
    assert text and set(text.split()) <= set(WORDS)
    greedy = with_lm.transcribe(wave, 16000, decoder="greedy").text
    assert greedy == plain.transcribe(wave, 16000).text != text
    for chunk in (640, 2560):  # chunked == offline with the default decoder too
        assert with_lm.transcribe(wave, 16000, chunk_samples=chunk).text == text


def test_hotwords_with_the_lm_chunked_equals_offline(models, wave):
    from asr.checkpoint import load_model
    from asr.stream import feed_chunks

    rec = load_model(models[0])
    hot = [("zorp", 4.0), ("tea at", 2.0)]
    offline = rec.transcribe(wave, 16000, decoder=rec.stream(16000, hotwords=hot).final_decoder)
    assert set(offline.text.split()) <= set(WORDS) | {"zorp"}
    for chunk in (320, 1000, 4096):  # one stream per chunking, each with its own hotword decoder
        st = feed_chunks(rec.stream(16000, hotwords=hot), wave, chunk)
        st.finish()
        res = st.full_result()
        assert res.text == offline.text and [w.start for w in res.words] == [w.start for w in offline.words]


def test_cli_default_and_greedy(models, wave, tmp_path, capfd):
    from asr.checkpoint import load_model

    wav = tmp_path / "a.wav"
    sf.write(wav, wave, 16000, subtype="PCM_16")
    with_lm, plain = models

    def run(*args):
        capfd.readouterr()
        assert main(["transcribe", str(wav), *args]) == 0
        out = capfd.readouterr()  # file descriptor 2 too, where KenLM prints
        assert "Loading the LM" not in out.err and "****" not in out.err  # KenLM's banner stays hidden
        return out.out.strip()

    rec = load_model(with_lm)
    from asr.audio import read_audio

    samples, sr = read_audio(str(wav))
    assert run("--model", with_lm) == rec.transcribe(samples, sr).text
    assert run("--model", with_lm, "--decoder", "greedy") == rec.transcribe(samples, sr, decoder="greedy").text
    assert run("--model", plain) == run("--model", plain, "--decoder", "greedy")
    # a beam flag changes the bundled setting it names and keeps the others
    assert set(run("--model", with_lm, "--word-score", "-5").split()) <= set(WORDS)
    # --hotwords join the bundled LM's beam search (a word it does not know too); with greedy finals or
    # without an LM, the LM-free prefix beam search
    hot = run("--model", with_lm, "--hotwords", "zorp:4,tea")
    assert set(hot.split()) <= set(WORDS) | {"zorp"}  # the LM's words and the hotwords only
    assert run("--model", with_lm, "--hotwords", "tea", "--decoder", "greedy") == run("--model", plain, "--hotwords", "tea")
    capfd.readouterr()
    assert main(["transcribe", str(wav), "--model", with_lm, "--lm", "x.arpa"]) == 1
    assert "--lm needs --decoder beam" in capfd.readouterr().err


def test_eval_cli_reports_the_default_decoder(models, wave, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, wave, 16000, subtype="PCM_16")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": str(wav), "text": "tea at"}) + "\n")
    for model, decoder in ((models[0], "beam"), (models[1], "greedy")):
        capsys.readouterr()
        assert main(["eval", str(manifest), "--model", model, "--quiet", "--speed-utts", "0", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["options"]["decoder"] == decoder
    assert summary["options"].get("beam") is None


def test_beam_options_from_flags_over_bundled_settings():
    import argparse

    from asr.beam import BeamOptions, add_decoder_arguments, beam_options, decoder_options

    p = argparse.ArgumentParser()
    add_decoder_arguments(p)
    bundled = BeamOptions(lm="x.arpa", lm_weight=1.5, word_score=1.0, beam_size=64)

    class Rec:
        decoding = bundled

    args = p.parse_args([])
    assert args.decoder == "default" and decoder_options(args, Rec) == bundled
    assert decoder_options(p.parse_args(["--word-score", "0", "--beam-size-token", "0"]), Rec) == \
        BeamOptions(lm="x.arpa", lm_weight=1.5, word_score=0.0, beam_size=64, beam_size_token=None)
    assert decoder_options(p.parse_args(["--decoder", "greedy"]), Rec) is None
    assert decoder_options(p.parse_args(["--decoder", "beam"]), Rec) == BeamOptions()  # lexicon-free, as before
    Rec.decoding = None
    assert decoder_options(args, Rec) is None
    assert beam_options(p.parse_args(["--decoder", "beam", "--lm", "y.arpa"])) == BeamOptions(lm="y.arpa")
    live = argparse.ArgumentParser()
    add_decoder_arguments(live, finals_only=True)
    assert live.parse_args([]).decoder == "greedy"  # asr serve: greedy finals unless asked (capacity)
    from asr.cli import build_parser

    assert build_parser().parse_args(["mic"]).decoder == "default"  # one live user: beam + LM finals


def test_broken_decoding_files_fail_clearly(tmp_path):
    from asr.lmbundle import lm_options

    model = tmp_path / "m.pt"
    assert lm_options(model) is None
    side = tmp_path / "m.lm.json"
    for text, msg in (("{", "not a usable"), ('{"lm_weight": 1}', "not a usable"),
                      ('{"lm": "m.arpa", "lm_weight": "nan"}', "not a usable"),
                      ('{"lm": "missing.arpa"}', "is missing")):
        side.write_text(text)
        with pytest.raises(ValueError, match=msg):
            lm_options(model)


def test_bundled_model_lm_if_present():
    """The shipped model's LM: found, installed as package data, loads without KenLM's banner."""
    from asr.checkpoint import MODELS_DIR, available_models

    if "default" not in available_models() or not (MODELS_DIR / "default.lm.json").exists():
        pytest.skip("no bundled default model with an LM in this checkout")
    from asr.lmbundle import lm_options

    opts = lm_options(MODELS_DIR / "default.pt")
    assert Path(opts.lm).parent == MODELS_DIR and Path(opts.lm).stat().st_size < 8e6
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"models/*.lm.json", "models/*.arpa.gz"' in pyproject
    import asr
    from asr.audio import read_audio
    from asr.lm import arpa_vocabulary

    rec = asr.load_model("default")
    assert rec.decoding == opts
    wave, sr = read_audio(str(Path(__file__).parent / "fixtures" / "conference.wav"))
    whole = rec.transcribe(wave, sr)
    assert whole.text and set(whole.text.split()) <= set(arpa_vocabulary(opts.lm))
    for chunk in (160, 2560):  # chunked == offline with the default decoder
        assert rec.transcribe(wave, sr, chunk_samples=chunk).text == whole.text
