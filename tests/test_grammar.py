"""Grammar decoding (asr.grammar): only grammar phrases come out, the phrase the emissions spell wins,
[unk] when allowed and nothing fits, chunked == offline as a stream's final decoder, CLI errors."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main as cli_main
from asr.evaluate import EvalOptions, evaluate, load_inputs
from asr.grammar import UNK, GrammarDecoder, normalize_phrases, parse_grammar
from asr.stream import Stream, feed_chunks
from asr.tokenizer import CharTokenizer

from conftest import make_recognizer, speechlike

DIGITS = "zero one two three four five six seven eight nine".split()
COMMANDS = ["turn on the light", "turn off the light", "stop", "go"]
STEP_S = 0.04
TOY = SimpleNamespace(tokenizer=CharTokenizer(), step_s=STEP_S)  # what GrammarDecoder needs of a model


def spell(tok, text, lead=3, tail=3, floor=0.05, hold=2):
    """Log-probs that spell ``text``: ``lead`` blank steps, each token winning for ``hold`` steps with a
    blank step after it, ``tail`` blank steps -> (log_probs, {token index: (first step, last step)})."""
    ids = tok.encode(text)
    rows, where = [], {}
    for _ in range(lead):
        rows.append(0)
    for k, i in enumerate(ids):
        where[k] = (len(rows), len(rows) + hold - 1)
        rows += [i] * hold + [0]
    rows += [0] * tail
    p = torch.full((len(rows), tok.vocab_size), floor / tok.vocab_size)
    for t, i in enumerate(rows):
        p[t, i] += 1 - floor
    return p.log(), where


@pytest.mark.parametrize("phrases", [DIGITS, COMMANDS])
def test_picks_the_spelled_phrase_with_word_times(phrases):
    dec = GrammarDecoder(phrases, TOY)
    for phrase in phrases:
        lp, where = spell(TOY.tokenizer, phrase)
        res = dec.decode(lp)
        assert res.text == phrase
        assert [w.word for w in res.words] == phrase.split()
        # first word starts at its first letter's first step; last word ends after its last letter's run
        assert res.words[0].start == pytest.approx(where[0][0] * STEP_S)
        assert res.words[-1].end == pytest.approx((where[len(where) - 1][1] + 1) * STEP_S)
        assert all(0.5 < w.conf <= 1 and w.start < w.end for w in res.words)
        assert [w.start for w in res.words] == sorted(w.start for w in res.words)
        nb = dec.nbest(lp)
        assert nb[0].phrase == phrase and [s.log_prob for s in nb] == sorted((s.log_prob for s in nb), reverse=True)
        assert sorted(s.phrase for s in nb) == sorted(phrases)
        # the length argument: trailing steps beyond it are ignored
        junk, _ = spell(TOY.tokenizer, "xxx", lead=0, tail=0)
        assert dec.decode(torch.cat([lp, junk]), length=lp.shape[0]).text == phrase


def test_only_grammar_phrases_come_out():
    g = torch.Generator().manual_seed(0)
    dec = GrammarDecoder(COMMANDS, TOY)
    for steps in (1, 3, 10, 40):
        for _ in range(10):
            lp = (3 * torch.randn(steps, TOY.tokenizer.vocab_size, generator=g)).log_softmax(-1)
            text = dec.decode(lp).text
            # too short for every phrase ("go" needs 2 steps) -> empty; else a phrase, forced
            assert text in COMMANDS or (steps < 2 and text == "")
    # a phrase spelled outside the grammar still maps onto the grammar without [unk]
    lp, _ = spell(TOY.tokenizer, "turn of the lights")
    assert dec.decode(lp).text == "turn off the light"
    assert dec.decode(torch.zeros(0, TOY.tokenizer.vocab_size)).text == ""


def test_unk_when_nothing_fits():
    dec = GrammarDecoder(DIGITS + [UNK], TOY)
    assert dec.allow_unk and dec.phrases == tuple(DIGITS)
    lp, _ = spell(TOY.tokenizer, "hello world")
    res = dec.decode(lp)
    assert res.text == UNK and len(res.words) == 1 and res.words[0].start < res.words[0].end
    assert dec.nbest(lp, n=1)[0].margin < -dec.unk_threshold
    lp, _ = spell(TOY.tokenizer, "seven")
    assert dec.decode(lp).text == "seven"
    silence = torch.full((20, TOY.tokenizer.vocab_size), -20.0)
    silence[:, 0] = 0.0
    assert dec.decode(silence).text == ""  # nothing said: empty, not [unk]
    assert GrammarDecoder(DIGITS, TOY).decode(silence).text in DIGITS  # no [unk]: forced choice
    # a lenient threshold accepts the best phrase
    assert GrammarDecoder(DIGITS + [UNK], TOY, unk_threshold=100.0).decode(spell(TOY.tokenizer, "hello")[0]).text \
        in DIGITS


def test_bundled_tokenizer_if_present():
    path = Path(__file__).parents[1] / "asr" / "models" / "default.pt"
    if not path.exists():
        pytest.skip("no bundled model")
    import asr

    rec = asr.load_model("default")
    dec = GrammarDecoder(DIGITS + ["turn on the light"], rec)
    for phrase in ("seven", "turn on the light"):
        assert dec.decode(spell(rec.tokenizer, phrase)[0]).text == phrase


def test_phrase_lists():
    assert normalize_phrases(["Zero", "zero", " ONE ", "[UNK]", "2"]) == (("zero", "one", "two"), True)
    assert parse_grammar("zero, one,two") == ("zero", " one", "two")
    assert parse_grammar("[unk],zero") == ("[unk]", "zero")
    assert parse_grammar('["turn on", "stop", "[unk]"]') == ("turn on", "stop", "[unk]")
    for bad in ("", ",", "[unk]", '["a",', "[]", '{"a": 1}', '["a", 3]', "nothing.json", "!!,a"):
        with pytest.raises(ValueError):
            parse_grammar(bad)
    with pytest.raises(ValueError):
        GrammarDecoder(["a"], TOY, unk_threshold=float("nan"))


@pytest.fixture(scope="module")
def rec():
    return make_recognizer("gru", seed=5)


@pytest.mark.parametrize("chunk", [592, 2560, None])
def test_chunked_equals_offline_as_final_decoder(rec, chunk):
    dec = GrammarDecoder(COMMANDS + [UNK], rec, unk_threshold=100.0)
    wave = speechlike(3.0, seed=4)
    whole = rec.transcribe(wave, decoder=dec)
    assert whole.text in COMMANDS
    assert rec.transcribe(wave, chunk_samples=chunk, decoder=dec).to_dict() == whole.to_dict()
    # segmented: one phrase per segment, the same for any chunking
    st = Stream(rec, 16000, final_decoder=dec)
    finals = []
    for k, piece in enumerate(np.split(wave, [16000, 36000])):
        feed_chunks(st, piece, chunk)
        finals.append(st.reset_segment() if k < 2 else st.finish())
    assert all(f.text in COMMANDS + [""] for f in finals)
    assert st.full_result().text == " ".join(f.text for f in finals if f.text)
    for f in finals:
        assert all(f.start - 1e-6 <= w.start < w.end <= f.end + 1e-6 for w in f.words)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("g")
    model = d / "rand.pt"
    make_recognizer("gru", seed=5).save(model)
    recs = []
    for i in range(3):
        sf.write(d / f"u{i}.wav", speechlike(0.8 + 0.3 * i, seed=30 + i), 16000, subtype="PCM_16")
        recs.append({"audio": f"u{i}.wav", "text": DIGITS[i], "duration": 0.8 + 0.3 * i})
    (d / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "g.json").write_text(json.dumps(DIGITS))
    return SimpleNamespace(dir=d, model=str(model), wav=str(d / "u0.wav"), manifest=str(d / "m.jsonl"),
                           grammar=str(d / "g.json"))


def test_cli_transcribe_and_eval(files, capsys):
    for g in (files.grammar, ",".join(DIGITS), json.dumps(DIGITS)):
        assert cli_main(["transcribe", files.wav, "--model", files.model, "--json", "--grammar", g]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["text"] in DIGITS and [w["word"] for w in d["words"]] == [d["text"]]
    assert cli_main(["eval", files.manifest, "--model", files.model, "--grammar", ",".join(DIGITS), "--json",
                     "--speed-utts", "0", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["options"]["decoder"] == "grammar" and s["options"]["grammar"] == DIGITS


def test_eval_api_gives_grammar_phrases(files):
    from asr.checkpoint import load_model

    opts = EvalOptions(grammar=tuple(DIGITS), threads=1)
    assert opts.decoder == "grammar" and opts.describe_decoder() == "grammar (10 phrases)"
    from asr.beam import BeamOptions

    with pytest.raises(ValueError, match="--grammar"):
        EvalOptions(grammar=("a",), beam=BeamOptions()).check()
    rep = evaluate(load_model(files.model), load_inputs([files.manifest]), opts)
    assert all(u.hyp in DIGITS for u in rep.utterances)


@pytest.mark.parametrize("grammar", ["", "[unk]", '["a",', "missing.json", '{"a": 1}', "!!"])
def test_cli_bad_grammar_is_one_line_exit_2(files, grammar, capsys):
    for cmd in (["transcribe", files.wav], ["eval", files.manifest]):
        rc = cli_main(cmd + ["--model", files.model, "--grammar", grammar])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "--grammar" in err and "Traceback" not in err, err


def test_cli_grammar_with_beam_is_refused(files, capsys):
    rc = cli_main(["transcribe", files.wav, "--model", files.model, "--grammar", "a,b", "--decoder", "beam"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "--grammar" in err


def test_pocketsphinx_baseline_grammar(files, tmp_path, capsys):
    """recipes/eval/pocketsphinx_baseline.py --grammar: a JSGF of the alternatives; every hypothesis is one."""
    pytest.importorskip("pocketsphinx")
    import importlib.util

    path = Path(__file__).parents[1] / "recipes" / "eval" / "pocketsphinx_baseline.py"
    spec = importlib.util.spec_from_file_location("pocketsphinx_baseline", path)
    ps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ps)
    assert ps.jsgf_alternatives(["zero", "turn on"]) == "#JSGF V1.0;\ngrammar g;\npublic <g> = zero | turn on;\n"
    out = tmp_path / "hyps.jsonl"
    summary = ps.main([files.manifest, "--grammar", ",".join(DIGITS), "--out", str(out)])
    assert summary["utterances"] == 3 and "JSGF" in summary["decoder"]
    assert all(json.loads(x)["hyp"] in DIGITS + [""] for x in out.read_text().splitlines())
    with pytest.raises(SystemExit):
        ps.main([files.manifest, "--grammar", "zero,[unk]"])
