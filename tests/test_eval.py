"""asr eval: scoring against hand computations, input errors, LibriSpeech layout, streaming == offline, CLI."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main as cli_main
from asr.data import ManifestError
from asr.decoding import greedy_decode
from asr.evaluate import (EvalOptions, Score, UttResult, alignment_text, evaluate, group_scores, length_bucket,
                          load_inputs, measure_latency, read_librispeech_dir, score, score_pairs)

from conftest import make_recognizer, speechlike

SR = 16000
TEXTS = ["Hello, world!", "the quick brown fox", "It's 42 degrees.", "a b c d e"]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random.pt"
    make_recognizer("gru", seed=3).save(path)
    return str(path)


def write_manifest(path, recs):
    with open(path, "w") as f:
        for r in recs:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    recs = []
    for i, (text, dur) in enumerate(zip(TEXTS, [1.3, 0.7, 1.0, 0.5])):
        sr = 8000 if i == 2 else SR  # one utterance at another rate: the stream resamples
        sf.write(d / f"u{i}.wav", speechlike(dur, sr=sr, seed=20 + i), sr, subtype="PCM_16")
        recs.append({"audio": f"u{i}.wav", "text": text, "duration": dur,
                     "voice": "v1" if i % 2 else "v2", "engine": "e"})
    return write_manifest(d / "tiny.jsonl", recs)


@pytest.fixture
def no_plots(monkeypatch):
    """Reports without their PNG plots, for tests that check something else: matplotlib figures
    are the slowest part of a report (test_cli_out_writes_report checks the plots)."""
    import asr.evalreport

    monkeypatch.setattr(asr.evalreport, "_plot_groups", lambda report, out: [])


# ------------------------------------------------------------------ scoring
def test_score_hand_computed():
    s = score(["a b c d"], ["a x c"])
    assert (s.hits, s.substitutions, s.deletions, s.insertions) == (2, 1, 1, 0)
    assert s.ref_words == 4 and s.wer == pytest.approx(0.5)
    # characters "a b c d" (7) vs "a x c": b->x substituted, " d" deleted
    assert s.ref_chars == 7 and s.char_errors == 3 and s.cer == pytest.approx(3 / 7)
    # corpus WER pools the counts (not a mean of per-utterance rates): (1 + 1 + 1) / (4 + 2)
    s2 = score(["a b c d", "x y"], ["a x c", "x y z"])
    assert (s2.substitutions, s2.deletions, s2.insertions, s2.ref_words) == (1, 1, 1, 6)
    assert s2.wer == pytest.approx(0.5)
    per = score_pairs(["a b c d", "x y"], ["a x c", "x y z"])
    assert [p.wer for p in per] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert sum(per, Score()) == s2
    assert s2.to_dict()["wer"] == 50.0  # percent in reports


def test_score_normalises_both_sides():
    # the shared training normalisation: case, punctuation, numbers spelled out
    assert score(["Hello, World! It's 42."], ["hello world it's forty two"]).wer == 0.0
    assert score(["hello world"], ["HELLO World?"]).wer == 0.0
    assert score(["Hello, World!"], ["hello world"], normalise=False).wer == 1.0


def test_empty_reference():
    s = score(["", "a b"], ["x y", "a b"])
    assert s.empty_refs == 1
    assert s.insertions == 2 and s.ref_words == 2  # the empty reference adds errors, not words
    assert s.wer == pytest.approx(1.0)
    assert s.char_errors == 3  # "x y"
    e, = score_pairs([""], [""])
    assert e.wer == 0.0 and e.cer == 0.0 and e.empty_refs == 1
    e, = score_pairs(["..."], ["x y"])  # empty after normalisation
    assert e.insertions == 2 and e.wer == 2.0  # N taken as 1: finite, = inserted words
    assert "HYP: x y" in alignment_text("", "x y")


def test_alignment_text():
    vis = alignment_text("a b c d", "a x c")
    assert "REF: a b c d" in vis and "HYP: a x c *" in vis and "S" in vis and "D" in vis
    assert "SENTENCE" not in vis


# ------------------------------------------------------------------ inputs
def test_manifest_errors_name_the_line(tmp_path):
    sf.write(tmp_path / "ok.wav", np.zeros(1600, dtype=np.float32), SR)
    ok = {"audio": "ok.wav", "text": "a"}
    m = write_manifest(tmp_path / "missing.jsonl", [ok, {"audio": "gone.wav", "text": "b"}])
    with pytest.raises(ManifestError, match=r"missing\.jsonl:2: audio file not found"):
        load_inputs([m])
    m = write_manifest(tmp_path / "bad.jsonl", [ok, ok, '{"audio": "ok.wav", "text": '])
    with pytest.raises(ManifestError, match=r"bad\.jsonl:3: bad JSON"):
        load_inputs([m])
    with pytest.raises(FileNotFoundError, match="no such manifest or directory"):
        load_inputs([str(tmp_path / "nope.jsonl")])
    empty = write_manifest(tmp_path / "empty.jsonl", [])
    with pytest.raises(ValueError, match="no utterances"):
        load_inputs([empty])


def test_cli_bad_input_is_one_line(tmp_path, capsys, ckpt):
    m = write_manifest(tmp_path / "bad.jsonl", ["not json"])
    assert cli_main(["eval", m, "--model", ckpt, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.jsonl:1: bad JSON" in err and err.startswith("asr eval: error:")
    sf.write(tmp_path / "ok.wav", np.zeros(1600, dtype=np.float32), SR)
    m = write_manifest(tmp_path / "ok.jsonl", [{"audio": "ok.wav", "text": "a"}])
    assert cli_main(["eval", m, "--model", ckpt, "--chunk-ms", "0", "--quiet"]) == 2  # a bad command line
    assert "argument --chunk-ms: must be a positive, finite number" in capsys.readouterr().err
    for bad in ({"chunk_ms": 0}, {"chunk_ms": float("inf")}, {"chunk_ms": float("nan")}, {"threads": -1}):
        with pytest.raises(ValueError):
            EvalOptions(**bad).check()


def make_librispeech(root, bad=False):
    chap = root / "19" / "198"
    chap.mkdir(parents=True)
    lines = []
    for k, text in enumerate(["HELLO WORLD", "THE QUICK BROWN FOX"]):
        uid = f"19-198-{k:04d}"
        if not (bad and k == 1):
            sf.write(chap / f"{uid}.flac", speechlike(0.6, seed=30 + k), SR, format="FLAC")
        lines.append(f"{uid} {text}")
    (chap / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech_layout(tmp_path):
    root = make_librispeech(tmp_path / "test-tiny")
    utts = load_inputs([str(root)])
    assert [u.extra["id"] for u in utts] == ["19-198-0000", "19-198-0001"]
    assert utts[1].text == "THE QUICK BROWN FOX" and utts[1].audio.endswith("19-198-0001.flac")
    assert utts[0].extra["speaker"] == "19" and utts[0].extra["chapter"] == "198"
    assert utts[0].extra["set"] == "test-tiny"
    assert utts[0].duration == pytest.approx(0.6)
    bad = make_librispeech(tmp_path / "bad")
    (bad / "19" / "198" / "19-198-0001.flac").unlink()
    with pytest.raises(ManifestError, match=r"19-198\.trans\.txt:2: audio file not found"):
        read_librispeech_dir(bad)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no \\*.trans.txt"):
        load_inputs([str(tmp_path / "nothing")])


# ------------------------------------------------------------------ transcription
def test_streaming_equals_offline(ckpt, manifest):
    from asr.audio import read_audio
    from asr.checkpoint import load_model

    rec = load_model(ckpt)
    utts = load_inputs([manifest])
    whole = evaluate(rec, utts, EvalOptions(threads=1))
    assert any(u.hyp for u in whole.utterances)  # the sharpened random model emits text
    for chunk, batch in [(160, 16), (37, 3), (1000, 1)]:
        rep = evaluate(rec, utts, EvalOptions(chunk_ms=chunk, batch_size=batch, threads=1))
        assert [u.hyp for u in rep.utterances] == [u.hyp for u in whole.utterances]
        assert rep.score == whole.score
    # offline = the model over the whole feature sequence (and the stream's tail padding), no Stream involved
    from asr.stream import TAIL_PADDING_S
    from asr.text import normalize

    hyps = []
    for u in utts:
        wave, sr = read_audio(u.audio)
        if sr != SR:
            import torchaudio

            wave = torchaudio.functional.resample(torch.from_numpy(wave), sr, SR).numpy()
        wave = np.concatenate([wave, np.zeros(int(round(TAIL_PADDING_S * SR)), wave.dtype)])
        feats = rec.logmel(torch.from_numpy(wave))
        with torch.no_grad():
            lp, lens = rec.model(feats[None], torch.tensor([feats.shape[0]]))
        hyps.append(greedy_decode(lp[0], int(lens[0]), rec.tokenizer, rec.step_s).text)
    assert [u.hyp for u in whole.utterances] == [normalize(h) for h in hyps]  # reports keep normalised text
    assert whole.score == score([u.text for u in utts], hyps)


def test_beam_decoder(ckpt, manifest):
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.beam import BeamCTCDecoder, BeamOptions
    from asr.checkpoint import load_model
    from asr.tokenizer import CharTokenizer

    # two steps, P(blank) = 0.4 > P(a) = 0.3: greedy says "", but "a" has 0.33 over its three paths
    tok = CharTokenizer()
    p = torch.full((2, tok.vocab_size), 0.3 / (tok.vocab_size - 2))
    p[:, 0], p[:, tok.pieces.index("a")] = 0.4, 0.3
    assert greedy_decode(p.log(), 2, tok, 0.04).text == ""
    assert BeamCTCDecoder(tok, 0.04).decode(p.log()).text == "a"
    # pruned to the best token per step, the search can only follow greedy's path
    assert BeamCTCDecoder(tok, 0.04, BeamOptions(beam_size_token=1)).decode(p.log()).text == ""
    for bad, msg in [({"beam_size": 0}, "--beam-size must"), ({"beam_size_token": 0}, "--beam-size-token"),
                     ({"beam_threshold": 0.0}, "--beam-threshold")]:
        with pytest.raises(ValueError, match=msg):
            BeamOptions(**bad)
    rec = load_model(ckpt)
    utts = load_inputs([manifest])
    a = evaluate(rec, utts, EvalOptions(beam=BeamOptions(beam_size=8), threads=1))
    b = evaluate(rec, utts, EvalOptions(beam=BeamOptions(beam_size=8), chunk_ms=160, batch_size=2, threads=1))
    assert a.options.decoder == "beam" and EvalOptions().decoder == "greedy"
    assert [u.hyp for u in a.utterances] == [u.hyp for u in b.utterances]
    assert any(u.hyp for u in a.utterances)


def spell(tok, text, floor=0.02):
    """Emissions that spell ``text`` one token per step, each token winning with most of the mass."""
    ids = tok.encode(text)
    p = torch.full((2 * len(ids), tok.vocab_size), floor / tok.vocab_size)
    for k, i in enumerate(ids):
        p[2 * k, i] += 1 - floor
        p[2 * k + 1, 0] += 1 - floor  # blank between tokens (keeps doubled letters apart)
    return p


def test_beam_with_lm_prefers_lexicon_words(tmp_path, ckpt, manifest, capfd, no_plots):
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.beam import BeamCTCDecoder, BeamOptions
    from asr.checkpoint import load_model
    from asr.lm import build_arpa
    from asr.tokenizer import CharTokenizer

    lm = tmp_path / "lm.arpa"
    build_arpa(["the cat sat", "the cat ran", "a dog sat"] * 3, str(lm), order=2)
    tok = CharTokenizer()
    # acoustics say "the cot sat", with "a" close behind "o"; only "cat" is a word
    p = spell(tok, "the cot sat")
    o = tok.encode("the c")
    p[len(o) * 2, tok.pieces.index("a")] = 0.3
    lp = (p / p.sum(1, keepdim=True)).log()
    assert BeamCTCDecoder(tok, 0.04).decode(lp).text == "the cot sat"
    with_lm = BeamCTCDecoder(tok, 0.04, BeamOptions(lm=str(lm), lm_weight=1.0))
    res = with_lm.decode(lp)
    assert res.text == "the cat sat"
    assert [w.word for w in res.words] == ["the", "cat", "sat"] and res.words[0].start < res.words[2].start
    # whatever the acoustics, output words come from the LM's vocabulary
    rec = load_model(ckpt)
    utts = load_inputs([manifest])
    rep = evaluate(rec, utts, EvalOptions(beam=BeamOptions(lm=str(lm)), threads=1))
    assert {w for u in rep.utterances for w in u.hyp.split()} <= {"the", "cat", "sat", "ran", "a", "dog"}
    with pytest.raises(FileNotFoundError, match="no such language model"):
        BeamCTCDecoder(tok, 0.04, BeamOptions(lm=str(tmp_path / "missing.arpa")))
    capfd.readouterr()
    assert cli_main(["eval", manifest, "--model", ckpt, "--lm", str(lm), "--quiet"]) == 1
    assert "--lm needs --decoder beam" in capfd.readouterr().err
    out = tmp_path / "rep"
    capfd.readouterr()
    assert cli_main(["eval", manifest, "--model", ckpt, "--decoder", "beam", "--lm", str(lm), "--lm-weight", "2",
                     "--word-score", "0.5", "--out", str(out), "--quiet", "--speed-utts", "0", "--json"]) == 0
    assert f"+ LM (weight 2, word score 0.5), LM `{lm}`" in (out / "report.md").read_text()
    summary = json.loads(capfd.readouterr().out)  # nothing but the JSON on stdout (KenLM talks on stderr)
    assert summary["options"]["decoder"] == "beam"
    assert summary["options"]["beam"]["lm"] == str(lm) and summary["options"]["beam"]["word_score"] == 0.5


def test_latency_with_fake_clock(ckpt, manifest):
    from asr.audio import read_audio
    from asr.checkpoint import load_model

    now = [0.0]
    rec = load_model(ckpt)
    utts = load_inputs([manifest])[:2]
    lat = measure_latency(rec, utts, chunk_ms=160, clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    # instant compute: each word appears at the end of the chunk that completes it
    assert lat.final_latency_s == [0.0, 0.0]
    n_words = sum(len(rec.transcribe(read_audio(u.audio)[0]).words) for u in utts)
    assert len(lat.word_latency_s) == n_words > 0
    assert all(-0.5 < x <= 0.16 + 1e-6 for x in lat.word_latency_s)
    d = lat.to_dict()
    assert d["words"] == n_words and d["final_p95_s"] == 0.0


def test_length_groups_bucket_reference_words_per_set():
    assert [length_bucket(n) for n in (0, 1, 2, 3, 5, 6, 40)] == \
        ["0 words", "1 word", "2 words", "3-5 words", "3-5 words", "6+ words", "6+ words"]

    def utt(set_, ref, hyp):
        return UttResult(id=ref, set=set_, audio="", duration=1.0, ref=ref, hyp=hyp, score=score([ref], [hyp]))

    one = [utt("a", "yes", "yes no"), utt("a", "hello there", "hello there"), utt("a", "one two three", "one two")]
    g = group_scores(one, keys=("length",))["length"]
    assert list(g) == ["1 word", "2 words", "3-5 words"]
    assert (g["1 word"].insertions, g["2 words"].errors, g["3-5 words"].deletions) == (1, 0, 1)
    g = group_scores(one + [utt("b", "yes", "yes")], keys=("length",))["length"]
    assert set(g) == {"a: 1 word", "a: 2 words", "a: 3-5 words", "b: 1 word"}


# ------------------------------------------------------------------ CLI
def test_cli_json(ckpt, manifest, capsys):
    assert cli_main(["eval", manifest, "--model", ckpt, "--json", "--quiet", "--chunk-ms", "160",
                     "--threads", "1", "--speed-utts", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["utterances"] == len(TEXTS)
    assert out["ref_words"] == 2 + 4 + 4 + 5  # "it's forty two degrees" after normalisation
    assert out["wer"] == pytest.approx(100 * (out["substitutions"] + out["deletions"] + out["insertions"])
                                       / out["ref_words"], abs=0.01)
    assert set(out["groups"]) == {"voice", "length"}  # engine and set take one value only
    assert out["groups"]["voice"]["v1"]["utterances"] == 2
    by_len = out["groups"]["length"]  # reference lengths 2, 4, 4, 5 words
    assert set(by_len) == {"2 words", "3-5 words"}
    assert (by_len["2 words"]["utterances"], by_len["3-5 words"]["utterances"]) == (1, 3)
    assert by_len["3-5 words"]["ref_words"] == 13
    assert out["speed"]["utterances"] == 1 and out["speed"]["rtf_1_thread"] > 0
    assert out["speed"]["cpu_rtf_1_thread"] > 0 and out["cpu_rtf"] > 0 and out["rtf"] > 0
    assert out["latency"] is None and out["options"]["chunk_ms"] == 160


def test_cli_out_writes_report(ckpt, manifest, tmp_path, capsys):
    out = tmp_path / "rep"
    assert cli_main(["eval", manifest, "--model", ckpt, "--out", str(out), "--quiet", "--threads", "1",
                     "--speed-utts", "0", "--latency", "--latency-utts", "1", "--worst", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "WER" in stdout and "report.md" in stdout
    md = (out / "report.md").read_text()
    for part in ["## Overall", "## By voice", "## Latency", "worst utterances", "REF:", "HYP:", "wer_by_voice.png"]:
        assert part in md
    for png in ["wer_by_voice.png", "wer_hist.png", "latency.png"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u0", "u1", "u2", "u3"]
    assert rows[0]["ref"] == "hello world" and rows[0]["voice"] == "v2" and "words" in rows[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latency"]["utterances"] == 1 and len(summary["worst"]) <= 2


def load_eval_recipe():
    """recipes/eval/run.py (recipes are scripts, importable from the repository root)."""
    from recipes.eval import run

    return run


class FakePocketSphinxDecoder:
    """Stands in for ``pocketsphinx.Decoder`` (loading its model and searching its LM take seconds
    even for tiny clips; tests/test_grammar.py runs the real one): "hears" one fixed sentence."""

    def start_utt(self):
        pass

    def process_raw(self, data, full_utt=False):
        assert len(data) > 0 and full_utt

    def end_utt(self):
        pass

    def hyp(self):
        import types

        return types.SimpleNamespace(hypstr="the quick brown fox")

    jsgf = []  # grammars added (class-wide: the recipe builds its own instance)

    def add_jsgf_string(self, name, jsgf):
        FakePocketSphinxDecoder.jsgf.append(jsgf)

    def activate_search(self, name):
        pass


def test_recipe_run_end_to_end(ckpt, manifest, tmp_path, capsys, monkeypatch, no_plots):
    """recipes/eval/run.py: both systems (PocketSphinx's decoder stubbed), table, cached rerun."""
    import importlib.util
    import os
    import sys
    import types

    from recipes.eval.systems import model_tag

    monkeypatch.setitem(sys.modules, "pocketsphinx", types.SimpleNamespace(Decoder=FakePocketSphinxDecoder))
    run = load_eval_recipe()
    # a 16 kHz subset with relative audio paths (run.py makes them absolute for PocketSphinx)
    lines = [json.loads(x) for x in open(manifest)]
    m16 = write_manifest(os.path.join(os.path.dirname(manifest), "tiny16.jsonl"), [r for r in lines if r["audio"] != "u2.wav"])
    tag = model_tag(ckpt)
    argv = ["--model", ckpt, "--out", str(tmp_path / "exp"), "--sets", m16, "missing_set", "--data-dir", str(tmp_path),
            "--speed-utts", "0", "--latency-utts", "0", "--chunk-ms", "100"]
    assert run.main(argv) == 0
    table = (tmp_path / "exp" / "comparison.md").read_text()
    assert f"| tiny16 | 3 | 0.0 | project ({tag}, greedy) |" in table
    # rescored by asr.scoring: the fake hears "the quick brown fox" for "hello world" (2 S + 2 I), for
    # itself, and for "a b c d e" (4 S + 1 D)
    ps_row = next(line for line in table.splitlines() if line.startswith("| tiny16 | 3 | 0.0 | PocketSphinx 5 |"))
    assert "| 6/1/2 |" in ps_row, ps_row
    data = json.loads((tmp_path / "exp" / "comparison.json").read_text())
    assert data["sets"]["tiny16"]["project"]["utterances"] == 3
    by_len = data["sets"]["tiny16"]["by_length"]
    assert sum(b["project (greedy)"]["utterances"] for b in by_len.values()) == 3
    assert "## WER by reference length" in table
    capsys.readouterr()
    assert run.main(argv) == 0  # second run: everything cached
    err = capsys.readouterr().err
    assert f"{tag} tiny16: cached" in err and "not found" in err
    assert "pocketsphinx tiny16: cached" in err
    assert run.main(["--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x"), "--sets", m16]) == 1
    # --int8: its own result directory and table row; the float model's results stay
    assert run.main(argv + ["--int8", "--stage", "2"]) == 0
    assert f"{tag}-int8 on tiny16" in capsys.readouterr().err
    table = (tmp_path / "exp" / "comparison.md").read_text()
    assert f"| tiny16 | 3 | 0.0 | project ({tag}-int8, greedy) |" in table
    assert (tmp_path / "exp" / tag / "tiny16" / "summary.json").exists()
    # --grammar: both systems decode with the same phrases, in their own result directories
    assert run.main(argv + ["--grammar", "hello world,the quick brown fox"]) == 0
    assert FakePocketSphinxDecoder.jsgf == ["#JSGF V1.0;\ngrammar g;\npublic <g> = hello world | the quick brown fox;\n"]
    table = (tmp_path / "exp" / "comparison.md").read_text()
    assert f"| tiny16 | 3 | 0.0 | project ({tag}, grammar (2 phrases" in table and "a JSGF grammar" in table
    assert (tmp_path / "exp" / f"{tag}+grammar" / "tiny16" / "summary.json").exists()
    assert (tmp_path / "exp" / "pocketsphinx+grammar" / "tiny16" / "summary.json").exists()
    with pytest.raises(SystemExit):
        run.main(argv + ["--grammar", "a,b", "--decoder", "beam"])
    if importlib.util.find_spec("flashlight") is None:
        return
    # greedy and beam + LM rows side by side; greedy comes from the cache
    from asr.lm import build_arpa

    lm = tmp_path / "lm.arpa"
    build_arpa(TEXTS, str(lm), order=2)
    capsys.readouterr()
    assert run.main(argv + ["--decoder", "greedy", "beam", "--lm", str(lm), "--lm-weight", "0.5"]) == 0
    assert f"{tag} tiny16: cached" in capsys.readouterr().err
    table = (tmp_path / "exp" / "comparison.md").read_text()
    assert f"| tiny16 | 3 | 0.0 | project ({tag}, greedy) |" in table
    assert f"| tiny16 | 3 | 0.0 | project ({tag}, beam 128 (8 tokens/step, threshold 50) + LM (weight 0.5, word score 0)) |" in table
    data = json.loads((tmp_path / "exp" / "comparison.json").read_text())
    assert data["sets"]["tiny16"]["project_beam-lm"]["options"]["beam"]["lm"] == str(lm)
    with pytest.raises(SystemExit):
        run.main(argv + ["--lm", str(lm)])  # an LM without the beam decoder
    # --decoder default: the model's bundled decoding, as `asr transcribe` does it. Without a bundled
    # LM that is greedy; with NAME.lm.json next to the model, beam + that LM with its settings
    import shutil

    def hyps(system):
        return [json.loads(x)["hyp"] for x in open(tmp_path / "exp" / system / "tiny16" / "utterances.jsonl")]

    assert run.main(argv + ["--decoder", "default", "--stage", "2"]) == 0
    assert hyps(f"{tag}+default") == hyps(tag)
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    shutil.copyfile(ckpt, bundled / "m.pt")
    shutil.copyfile(lm, bundled / "m.lm.arpa")
    (bundled / "m.lm.json").write_text(json.dumps({"lm": "m.lm.arpa", "lm_weight": 0.5}))
    argv_b = argv[:]
    argv_b[argv_b.index(ckpt)] = str(bundled / "m.pt")
    assert run.main(argv_b + ["--decoder", "default", "beam", "--lm", str(lm), "--lm-weight", "0.5"]) == 0
    table = (tmp_path / "exp" / "comparison.md").read_text()
    assert "(default: the model's bundled decoding)" in table
    # both rows, default and beam, are beam + the LM at weight 0.5 (default: from m.lm.json)
    assert table.count("| tiny16 | 3 | 0.0 | project (bundled-m, beam 128 (8 tokens/step, threshold 50) + LM (weight 0.5") == 2
    assert hyps("bundled-m+default") == hyps("bundled-m+beam-lm")


def test_recipe_reuses_earlier_baseline_run(ckpt, manifest, tmp_path, capsys):
    import os

    run = load_eval_recipe()
    recs = [json.loads(x) for x in open(manifest)]
    base = tmp_path / "baseline"
    base.mkdir()
    with open(base / "tiny.pocketsphinx.jsonl", "w") as f:
        for r in recs:  # a perfect baseline: hypothesis = reference
            audio = os.path.join(os.path.dirname(manifest), r["audio"])
            f.write(json.dumps({"audio": audio, "ref": r["text"], "hyp": r["text"], "seconds": 0.1}) + "\n")
    (base / "tiny.summary.json").write_text(json.dumps(
        {"manifest": manifest, "utterances": 4, "audio_hours": 0.001, "wer": 0.0, "cer": 0.0, "rtf": 0.25,
         "cpu_rtf": 0.2, "decoder": "pocketsphinx (test)"}))
    newer = os.stat(manifest).st_mtime + 1  # a baseline is reused only if not older than its manifest
    for f in (base / "tiny.pocketsphinx.jsonl", base / "tiny.summary.json"):
        os.utime(f, (newer, newer))
    assert run.main(["--out", str(tmp_path / "exp"), "--data-dir", str(tmp_path), "--sets", manifest,
                     "--stop-stage", "1"]) == 0
    assert "reusing" in capsys.readouterr().err
    assert run.main(["--out", str(tmp_path / "exp"), "--data-dir", str(tmp_path), "--sets", manifest,
                     "--stage", "3"]) == 0
    table = (tmp_path / "exp" / "comparison.md").read_text()
    assert "| tiny | 4 | 0.1 | PocketSphinx 5 | 0.00 | 0.00 | 0/0/0 | 0.250 / 0.200 |" in table
    # WER by reference length ("Hello, world!": 2 words; the others 4, 4 and 5)
    assert "| tiny | 2 words | 1 | 0.00 |" in table and "| tiny | 3-5 words | 3 | 0.00 |" in table


def test_tune_lm_recipe(ckpt, manifest, tmp_path, capsys):
    """recipes/eval/tune_lm.py: one log-prob pass, a table row per grid point, the best flags last."""
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.lm import build_arpa
    from recipes.eval import tune_lm as tune

    lm = tmp_path / "lm.arpa"
    build_arpa(TEXTS, str(lm), order=2)
    assert tune.main(["--model", ckpt, "--lm", str(lm), "--dev", manifest, "--weights", "0.5", "2",
                      "--word-scores", "0"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| beam + LM |")]
    assert len(rows) == 2 and "| greedy |" in out and "| beam, no LM |" in out
    assert f"best: --decoder beam --lm {lm} --lm-weight " in out
    # pruning grid: 2 token counts x 2 thresholds, each with and without the LM
    assert tune.main(["--model", ckpt, "--lm", str(lm), "--dev", manifest, "--weights", "1",
                      "--word-scores", "0", "--beam-size-tokens", "0", "3", "--beam-thresholds", "50", "5"]) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("| beam + LM |")]) == 4
    assert len([line for line in out.splitlines() if line.startswith("| beam, no LM |")]) == 4
    assert "| beam + LM | 3 | 5 | 1 | 0 |" in out and "| beam + LM | all | 50 | 1 | 0 |" in out
    assert "best: --decoder beam" in out
    # no point can be that fast: a clear failure, not a silent pick
    assert tune.main(["--model", ckpt, "--lm", str(lm), "--dev", manifest, "--weights", "1",
                      "--word-scores", "0", "--max-search-rtf", "0"]) == 1
    assert "no LM point has a search RTF of at most 0" in capsys.readouterr().out
    assert tune.main(["--model", ckpt, "--lm", str(tmp_path / "nope.arpa"), "--dev", manifest]) == 1


def test_eval_reads_the_lm_once(tmp_path, ckpt, manifest, monkeypatch, capfd):
    """`asr eval --decoder beam --lm` builds one decoder for decoding and the speed runs."""
    pytest.importorskip("flashlight.lib.text.decoder")
    import asr.beam
    from asr.lm import build_arpa

    lm = tmp_path / "lm.arpa"
    build_arpa(["the cat sat", "a dog ran"] * 3, str(lm), order=2)
    built = []

    class Counting(asr.beam.BeamCTCDecoder):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(asr.beam, "BeamCTCDecoder", Counting)
    assert cli_main(["eval", manifest, "--model", ckpt, "--decoder", "beam", "--lm", str(lm), "--quiet",
                     "--speed-utts", "1", "--json"]) == 0
    capfd.readouterr()
    assert len(built) == 1


def test_noisy_manifest_adds_noise_at_the_asked_snr(tmp_path):
    """tools/noisy_manifest.py: same rows and lengths, noise at exactly --snr dB, reproducible by seed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "noisy_manifest", Path(__file__).resolve().parents[1] / "tools" / "noisy_manifest.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    t = np.arange(16000) / 16000
    recs = []
    for i in range(4):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, (0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), 16000)
        recs.append({"audio": str(wav), "text": f"word {i}", "duration": 1.0})
    write_manifest(tmp_path / "m.jsonl", recs)
    args = [str(tmp_path / "m.jsonl"), "--snr", "10", "--aug-dir", str(tmp_path / "none")]
    assert tool.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert tool.main(args + ["--out", str(tmp_path / "b")]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "a" / "a.jsonl")]
    assert [r["text"] for r in rows] == [r["text"] for r in recs]
    assert {r["noise"] for r in rows} <= {"white", "pink", "brown", "babble"}  # no music without aug dir
    for r, rec in zip(rows, recs):
        x, _ = sf.read(rec["audio"], dtype="float64")
        y, _ = sf.read(r["audio"], dtype="float64")
        assert len(y) == len(x)
        snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
        assert abs(snr - 10.0) < 0.2, snr
        y2, _ = sf.read(r["audio"].replace(str(tmp_path / "a"), str(tmp_path / "b")), dtype="float64")
        assert np.array_equal(y, y2)
