"""Hotwords (contextual biasing) in the prefix beam search, n-best lists and the runtime-vocabulary options."""

import math

import pytest
import torch

from asr.decoding import GreedyDecoder
from asr.hotwords import ContextGraph, parse_hotwords, parse_hotwords_text
from asr.prefixbeam import PrefixBeamDecoder, PrefixBeamOptions, PrefixBeamSearch
from asr.stream import feed_chunks
from asr.vocab import vocabulary_decoder
from conftest import CHAR_TOKENIZER, CharRec, char_log_probs, speechlike

def _spell(word, q=0.9):
    """Steps spelling ``▁word`` with each token at probability ``q``, blanks between."""
    out = []
    for c in "\u2581" + word:
        out += [{c: q}, {}]
    return out


# an utterance where the 4th step is ambiguous: "▁cat" (0.45) or "▁cot" (0.55)
AMBIGUOUS = _spell("c") [:-1] + [{}, {"a": 0.45, "o": 0.55}, {}, {"t": 0.9}, {}]


def test_context_graph_keeps_completed_and_withdraws_broken_matches():
    g = ContextGraph([([1, 2, 3], 2.0), ([1, 2, 3, 4], 2.0), ([5, 6], 1.0)])
    s, b = g.root, 0.0
    for t in (1, 2):
        s, d = g.step(s, t)
        b += d
    assert b == 4.0 and g.pending(s) == 4.0  # unfinished: would be withdrawn at the end
    s, d = g.step(s, 3)
    b += d
    assert b == 6.0 and g.pending(s) == 0.0  # "1 2 3" complete (a longer phrase may go on)
    s, d = g.step(s, 9)  # the longer phrase breaks: the completed one keeps its bonus
    b += d
    assert b == 6.0 and s is g.root
    s, d = g.step(s, 5)
    s, d2 = g.step(s, 7)  # "5 6" broken after one token: its bonus is withdrawn
    assert d == 1.0 and d2 == -1.0 and s is g.root


def test_failure_link_restarts_a_match_inside_a_broken_one():
    g = ContextGraph([([1, 1, 2], 1.0)])
    s, total = g.root, 0.0
    for t in (1, 1, 1, 2):  # "1 1 1 2" contains "1 1 2" starting at the second token
        s, d = g.step(s, t)
        total += d
    assert total == pytest.approx(3.0) and g.pending(s) == 0.0


def test_prefix_beam_merges_alignments_where_greedy_does_not():
    # greedy path: blank, blank ("") but "a" has 0.4 + 0.4 spread over two steps with a blank path between
    lp = char_log_probs([{"\u2581": 0.9}, {"a": 0.4}, {"a": 0.4}, {}])
    greedy = GreedyDecoder(CHAR_TOKENIZER, 0.04).decode(lp).text
    beam = PrefixBeamDecoder(CharRec).decode(lp).text
    assert greedy == "" and beam == "a"


def test_hotword_flips_an_ambiguous_word_and_keeps_times():
    plain = PrefixBeamDecoder(CharRec).decode(char_log_probs(AMBIGUOUS))
    boosted = PrefixBeamDecoder(CharRec, parse_hotwords(["cat"])).decode(char_log_probs(AMBIGUOUS))
    assert plain.text == "cot" and boosted.text == "cat"
    assert boosted.words[0].start == plain.words[0].start and boosted.words[0].end == plain.words[0].end


def test_unfinished_hotword_loses_its_bonus():
    # "▁ca" then nothing: a hotword "cab" must not make the search prefer an unfinished spelling
    lp = char_log_probs(_spell("ca") + [{"b": 0.02, "r": 0.03}, {}])
    res = PrefixBeamDecoder(CharRec, parse_hotwords([("cab", 3.0)])).decode(lp)
    assert res.text in ("ca", "cab")
    search = PrefixBeamSearch(CHAR_TOKENIZER, 0.04, graph=ContextGraph([(CHAR_TOKENIZER.encode("cab"), 3.0)]))
    search.accept(lp[:5])  # after "▁ca": the prefix earns 2 x 3.0 while unfinished ("c a" of "c a b")
    (s_live, n_live), (s_final, n_final) = search.hypotheses(final=False)[0], search.hypotheses(final=True)[0]
    assert s_live - s_final == pytest.approx(6.0) and n_live is n_final


def test_nbest_alternatives():
    res = PrefixBeamDecoder(CharRec, nbest=3).decode(char_log_probs(AMBIGUOUS))
    alts = res.alternatives
    assert [a.text for a in alts][:2] == ["cot", "cat"] and alts[0].text == res.text
    assert sum(a.confidence for a in alts) == pytest.approx(1.0)
    assert all(a.score >= b.score for a, b in zip(alts, alts[1:]))
    assert PrefixBeamDecoder(CharRec).decode(char_log_probs(AMBIGUOUS)).alternatives == []
    # the text is the first alternative's, also where merged paths outscore the best single one: "ba"
    # (0.24) is the best path, but "a" is spelt two ways ("a", "▁a": 0.18 + 0.18)
    res = PrefixBeamDecoder(CharRec, nbest=3).decode(char_log_probs([{"b": 0.4, "▁": 0.3}, {"a": 0.6}]))
    assert [a.text for a in res.alternatives] == ["a", "", "ba"] and res.text == "a"
    assert res.words == res.alternatives[0].words


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_search_is_chunk_invariant(chunk):
    g = torch.Generator().manual_seed(3)
    lp = torch.log_softmax(4 * torch.randn(120, CHAR_TOKENIZER.vocab_size, generator=g), dim=-1)
    graph = ContextGraph([(CHAR_TOKENIZER.encode(w), 2.0) for w in ("the", "cat", "sat")])
    whole = PrefixBeamSearch(CHAR_TOKENIZER, 0.04, graph=graph)
    whole.accept(lp)
    parts = PrefixBeamSearch(CHAR_TOKENIZER, 0.04, graph=graph)
    for a in range(0, lp.shape[0], chunk):
        parts.accept(lp[a : a + chunk])
    assert whole.result(nbest=4) == parts.result(nbest=4)


@pytest.mark.parametrize("chunk_ms", [20, 130, 470])
def test_stream_with_hotwords_chunked_equals_offline(rec_gru, chunk_ms):
    x = speechlike(3.0, seed=4)
    offline = rec_gru.transcribe(x, decoder=vocabulary_decoder(rec_gru, hotwords=["one", "two"], nbest=3))
    st = feed_chunks(rec_gru.stream(16000, hotwords=["one", "two"], nbest=3), x, int(16 * chunk_ms))
    final = st.finish()
    # log-probs differ in the last bits between chunkings: same words and times, confidences to 1e-5
    assert final.text == offline.text
    assert [(w.word, w.start, w.end) for w in final.words] == [(w.word, w.start, w.end) for w in offline.words]
    assert [w.conf for w in final.words] == pytest.approx([w.conf for w in offline.words], abs=1e-5)
    assert [a.text for a in final.alternatives][0] == final.text


def test_parse_hotwords(tmp_path):
    assert parse_hotwords(["Kaldi", {"phrase": "New York", "boost": 3}, ("x-ray", 1.5), {"phrase": "oslo"}]) == (
        ("kaldi", None), ("new york", 3.0), ("x ray", 1.5), ("oslo", None))  # None: the decoder's default boost
    assert parse_hotwords(["kaldi"], default_boost=2.5) == (("kaldi", 2.5),)
    assert parse_hotwords_text("kaldi, new york:3") == (("kaldi", None), ("new york", 3.0))
    f = tmp_path / "hw.txt"
    f.write_text("# names\nkaldi\nnew york : 4\n")
    assert parse_hotwords_text(str(f)) == (("kaldi", None), ("new york", 4.0))
    for bad in ([], "kaldi", [""], [{"phrase": "a", "boost": -1}], [{"phrase": "a", "boost": math.inf}],
                [{"word": "a"}], [3], ["a"] * 1001):
        with pytest.raises(ValueError):
            parse_hotwords(bad)
    with pytest.raises(ValueError, match="boost"):
        parse_hotwords_text("a:b")


def test_vocabulary_options(rec_gru):
    assert vocabulary_decoder(rec_gru) is None
    assert "2 hotwords" in vocabulary_decoder(rec_gru, hotwords=["a", "b"]).describe()
    assert "3-best" in vocabulary_decoder(rec_gru, grammar=["yes", "no"], nbest=3).describe()
    for kw in ({"grammar": ["yes"], "hotwords": ["no"]}, {"nbest": 0}, {"nbest": 21}, {"nbest": 2.5},
               {"hotwords": ["!!"]}, {"grammar": []}):
        with pytest.raises(ValueError):
            rec_gru.stream(16000, **kw)
    with pytest.raises(ValueError):
        PrefixBeamOptions(beam=0)


def test_cli_transcribe_hotwords(tmp_path, capsys):
    import soundfile as sf

    from asr.cli import main

    wav = tmp_path / "a.wav"
    sf.write(wav, speechlike(1.0), 16000)
    assert main(["transcribe", str(wav), "--hotwords", "a,b:3", "--format", "json"]) == 0
    assert '"text"' in capsys.readouterr().out
    assert main(["transcribe", str(wav), "--hotwords", "a", "--decoder", "beam"]) != 0
    assert "needs --lm" in capsys.readouterr().err
    assert main(["transcribe", str(wav), "--hotwords", "a", "--grammar", "b"]) != 0
    assert "cannot be combined" in capsys.readouterr().err
