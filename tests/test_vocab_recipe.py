"""recipes/vocab: the names set (stub TTS engines), boosted-word recall, n-best figures, and the
evaluation's decoding of cached log-probs equal to what the Python API gives."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from conftest import make_recognizer, speechlike

from asr.jsonl import read_jsonl, write_jsonl
from asr.text import normalize
from recipes.synth import engines
from recipes.vocab import evaluate, prepare
from recipes.vocab.metrics import boosted_words, nbest_stats, other_words_wer, word_recall
from recipes.vocab.names import make_sentences


def test_sentences_use_each_entity_once_and_are_normalised():
    a, b = make_sentences(10, 4, 3, seed=1), make_sentences(10, 4, 3, seed=1)
    assert a == b and len(a) == 17
    entities = [h for s in a for h in s["hotwords"]]
    assert len(set(entities)) == len(entities)
    for s in a:
        assert normalize(s["text"]) == s["text"] and s["hotwords"][0] in s["text"]
        assert normalize(s["speak"]) == s["text"]
    assert {s["kind"] for s in a} == {"person", "place", "rare"}
    assert make_sentences(10, 4, 3, seed=2) != a


def _stub_backend(calls):
    def synth(jobs, tmpdir):
        calls.extend(j["voice"] for j in jobs)
        return [engines.finish(speechlike(1.0, seed=k), 16000, j, pitch_by_resampling=False)
                for k, j in enumerate(jobs)]
    return synth


def test_prepare_with_stub_engines(tmp_path, monkeypatch):
    calls = []
    for eng in ("pico2wave", "rhvoice", "piper"):
        monkeypatch.setitem(engines.BACKENDS, eng, _stub_backend(calls))
    voices = ["pico:en-US", "rhvoice:alan", "piper:en_US-joe-medium"]
    prepare.main(["--data-dir", str(tmp_path), "--voices", *voices, "--persons", "5", "--places", "3", "--rare", "2"])
    dev, test = read_jsonl(tmp_path / "names_dev.jsonl"), read_jsonl(tmp_path / "names_test.jsonl")
    assert len(dev) == len(test) == 5 and not {r["id"] for r in dev} & {r["id"] for r in test}
    assert sorted(set(calls)) == sorted(voices) and len(calls) == 10
    for r in dev + test:
        assert os.path.exists(r["audio"]) and r["hotwords"][0] in r["text"] and r["voice"] in voices
        assert sf.info(r["audio"]).samplerate == 16000
    hot = (tmp_path / "hotwords.txt").read_text().split("\n")[:-1]
    assert sorted(hot) == sorted(h for r in dev + test for h in r["hotwords"])
    calls.clear()
    prepare.main(["--data-dir", str(tmp_path), "--voices", *voices])  # both stages done: nothing runs
    assert calls == []


def test_prepare_refuses_training_voices(tmp_path):
    with pytest.raises(SystemExit):
        prepare.main(["--data-dir", str(tmp_path), "--voices", "espeak:en-us+f1", "--stop-stage", "1"])


def test_available_voices_are_held_out_and_installed(monkeypatch):
    monkeypatch.setattr(prepare.shutil, "which", lambda cmd: "/usr/bin/pico2wave" if cmd == "pico2wave" else None)
    monkeypatch.setattr(prepare.importlib.util, "find_spec", lambda m: None)
    assert prepare.available_voices() == ["pico:en-US", "pico:en-GB"]


def test_choose_boost_takes_the_best_names_wer_that_does_no_harm():
    def g(s, b, wer, other=None):
        return {"set": s, "boost": b, "wer": wer, "wer_other": wer if other is None else other}

    grid = [g("names_dev", 0, 60, 40), g("held", 0, 30),
            g("names_dev", 1, 58, 39), g("held", 1, 30),
            g("names_dev", 2, 55, 40), g("held", 2, 29.5),
            g("names_dev", 4, 50, 41), g("held", 4, 29),  # names' other words worse
            g("names_dev", 8, 49, 38), g("held", 8, 31)]  # elsewhere worse
    assert evaluate.choose_boost(grid, [1, 2, 4, 8]) == 2
    assert evaluate.choose_boost([r for r in grid if r["boost"] in (0, 4, 8)], [4, 8]) == 4  # none harmless


def test_other_words_wer_leaves_the_names_out():
    words = {"siobhan"}
    # "siobhan" heard as "see oban": one substitution and one insertion, both the name's
    assert other_words_wer(["call siobhan now"], ["call see oban now"], words) == (0, 2)
    assert other_words_wer(["call siobhan now", "a b"], ["cold siobhan", "a x b"], words) == (3, 4)
    assert other_words_wer(["call now"], [""], words) == (2, 2) and other_words_wer([""], ["x"], words) == (1, 0)


def test_word_recall_counts_aligned_hits_and_false_alarms():
    words = boosted_words(["Siobhan Kowalski", "tallinn"])
    assert words == {"siobhan", "kowalski", "tallinn"}
    refs = ["please call siobhan kowalski", "fly to tallinn", "good morning"]
    hyps = ["please call shivon kowalski", "fly to tallinn tallinn", "good kowalski morning"]
    wr = word_recall(refs, hyps, words)
    assert (wr.occurrences, wr.recognised, wr.false_alarms) == (3, 2, 2)
    assert wr.recall == pytest.approx(2 / 3)
    assert word_recall([""], ["tallinn"], words).false_alarms == 1


def test_nbest_stats_oracle_and_reference_counts():
    refs = ["a b c", "d e", "f"]
    alts = [["a x c", "a b c"], ["d e", "d"], ["g", "h", "f"]]
    s1, s3 = nbest_stats(refs, alts, 1), nbest_stats(refs, alts, 3)
    assert (s1.ref_top, s1.ref_in_list, s1.top1_wer, s1.oracle_wer) == (1, 1, pytest.approx(100 * 2 / 6, abs=0.01),
                                                                        pytest.approx(100 * 2 / 6, abs=0.01))
    assert (s3.ref_top, s3.ref_in_list, s3.oracle_wer, s3.mean_alternatives) == (1, 3, 0.0, pytest.approx(7 / 3, abs=0.01))


def _fake_set(tmp_path):
    """A names set and an unrelated set of speech-like noise, and the hotword list."""
    sents = make_sentences(3, 2, 1, seed=0)
    write_jsonl(tmp_path / "text.jsonl", sents)
    (tmp_path / "hotwords.txt").write_text("".join(h + "\n" for s in sents for h in s["hotwords"]))
    for k, split in enumerate(("dev", "test")):
        recs = []
        for j, s in enumerate(sents[k::2]):
            path = str(tmp_path / f"{s['id']}.wav")
            sf.write(path, speechlike(1.0 + 0.3 * j, seed=10 * k + j), 16000)
            recs.append({"audio": path, "text": s["text"], "duration": 1.0, "hotwords": s["hotwords"]})
        write_jsonl(tmp_path / f"names_{split}.jsonl", recs)
    other = tmp_path / "other.jsonl"
    recs = []
    for j in range(4):
        sf.write(tmp_path / f"o{j}.wav", (0.5 * speechlike(1.2, seed=50 + j) * 32767).astype(np.int16), 16000)
        recs.append({"audio": str(tmp_path / f"o{j}.wav"), "text": "good morning", "duration": 1.2})
    write_jsonl(other, recs)
    return [s["hotwords"][0] for s in sents], str(other)


def test_evaluate_end_to_end_matches_the_python_api(tmp_path, monkeypatch):
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr.beam import BeamOptions
    from asr.lm import build_arpa

    rec = make_recognizer()  # with a word LM as its default decoder, as the bundled model has
    build_arpa(["good morning", "please call me tomorrow morning", "a good call"], str(tmp_path / "lm.arpa"), order=2)
    rec.decoding = BeamOptions(lm=str(tmp_path / "lm.arpa"), beam_size=16, beam_size_token=None, word_score=1.0)
    phrases, other = _fake_set(tmp_path)
    out = tmp_path / "out"
    argv = ["--data-dir", str(tmp_path), "--other", "other", other, "2", "--boosts", "1", "3",
            "--nbest", "2", "4", "--wide-beam", "3", "--out", str(out)]
    evaluate.main(argv, rec=rec)
    hot = json.loads((out / "hotwords.json").read_text())
    tuned = hot["boosts"]
    assert set(tuned) == {"phrases", "words"} and set(tuned.values()) <= {1, 3}
    assert [(g["form"], g["boost"]) for g in hot["dev_grid"]] == [("none", 0), ("phrases", 1), ("phrases", 3),
                                                                      ("words", 1), ("words", 3)]
    label = f"default + hotwords (phrases, boost {tuned['phrases']:g})"
    decoders = {"greedy", f"default: {rec.default_decoder().describe()}", label,
                f"default + hotwords (words, boost {tuned['words']:g})",
                "default + hotwords (phrases, boost 4), the default",  # the shipped default boost too
                "prefix beam", "prefix beam + hotwords (phrases, boost 1.5)",  # the LM-free search
                "prefix beam 3", "prefix beam + hotwords (phrases, boost 2), beam 3"}  # --wide-beam
    assert {(r["set"], r["decoder"]) for r in hot["rows"]} == {(s, d) for s in ("names_test", "other") for d in decoders}
    assert all(r["utterances"] == (2 if r["set"] == "other" else 3) for r in hot["rows"])
    assert hot["costs"]["hotwords"] == len(phrases) and hot["costs"]["request_trie_cpu_s"] > 0
    assert all(r["wer_other"] is not None for r in hot["rows"])
    nb = json.loads((out / "nbest.json").read_text())
    assert [(r["set"], r["n"]) for r in nb["rows"]] == [("names_test", 2), ("names_test", 4), ("other", 2), ("other", 4)]
    assert all(r["oracle_wer"] <= r["top1_wer"] and r["ref_top"] <= r["ref_in_list"] for r in nb["rows"])
    assert (out / "hotwords.md").exists() and (out / "nbest.md").exists()

    # what the recipe decoded from cached log-probs is what rec.stream(...) gives for the same file
    from asr.audio import read_audio
    hyps = read_jsonl(out / "hotwords_hyps.jsonl")
    test = read_jsonl(tmp_path / "names_test.jsonl")
    mine = [h["hyp"] for h in hyps if h["set"] == "names_test" and h["decoder"] == label]
    api, alts = [], []
    for r in test:
        samples, sr = read_audio(r["audio"])
        api.append(rec.transcribe(samples, sr, decoder=evaluate.api_decoder(rec, phrases, tuned["phrases"])).text)
        st = rec.stream(sr, nbest=2)
        st.accept_waveform(samples)
        alts.append([a.text for a in st.finish().alternatives])  # one segment: its final is the whole file's
        st = rec.stream(sr, hotwords=[(p, tuned["phrases"]) for p in phrases])
        st.accept_waveform(samples)
        st.finish()
        assert st.full_result().text == api[-1]
    assert mine == api
    assert {k: v for k, v in nb["rows"][0].items() if k != "set"} == nbest_stats([r["text"] for r in test], alts, 2).to_dict()

    # a second run reuses the cached log-probs
    monkeypatch.setattr(evaluate, "utterance_log_probs", lambda *a: pytest.fail("log-probs recomputed"))
    evaluate.main(argv + ["--stop-stage", "2"], rec=rec)
