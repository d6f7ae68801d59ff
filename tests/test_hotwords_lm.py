"""Hotwords inside the word-LM beam search (asr.lmhotwords): tiny ARPA written here, char tokens, crafted log-probs."""

import math

import pytest
import torch


pytest.importorskip("flashlight.lib.text.decoder")

from asr.beam import BeamCTCDecoder, BeamOptions  # noqa: E402
from asr.lmhotwords import HotwordBeamDecoder, boosted_lm  # noqa: E402
from asr.hotwords import ContextGraph  # noqa: E402
from asr.prefixbeam import PrefixBeamDecoder  # noqa: E402
from asr.vocab import vocabulary_decoder  # noqa: E402
from conftest import CHAR_TOKENIZER, CharRec, char_log_probs  # noqa: E402

def _spell(text, q=0.9):
    """Steps spelling ``text`` (words separated by the word-boundary token), each token at ``q``, blanks between."""
    out = [{}]
    for c in "\u2581" + text.replace(" ", "\u2581"):
        out += [{c: q}, {}]
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from asr.lm import build_arpa

    arpa = tmp_path_factory.mktemp("lm") / "tiny.arpa"
    build_arpa(["tea at eat", "ate tea", "a tee at a tea", "eat a tea", "tea at a tee"], str(arpa), order=2)
    opts = BeamOptions(lm=str(arpa), beam_size=16, beam_size_token=None, lm_weight=1.0, word_score=1.0)
    return BeamCTCDecoder(CHAR_TOKENIZER, 0.04, opts)


def _random_lps(n=6, steps=30):
    g = torch.Generator().manual_seed(5)
    vocab = CHAR_TOKENIZER.vocab_size
    return [torch.log_softmax(3.0 * torch.randn(steps, vocab, generator=g), dim=-1) for _ in range(n)]


def test_a_new_word_scores_as_the_rarest_word_the_lm_knows(base):
    shared = base.lexicon_search()
    assert shared.start_new == min(score for _, score, _ in shared.entries)
    assert base._dec.word_dict.get_entry(shared.proxy) in base._spell_len


def test_a_hotword_the_lm_does_not_know_becomes_reachable(base):
    lp = char_log_probs(_spell("tea zorp"))
    assert "zorp" not in base.decode(lp).text.split()  # the LM's lexicon cannot spell it
    res = HotwordBeamDecoder(base, [("zorp", 1.0)]).decode(lp)
    assert res.text == "tea zorp"
    tea, zorp = res.words
    assert 0 <= tea.start < tea.end <= zorp.start < zorp.end <= lp.shape[0] * 0.04 and 0 < zorp.conf <= 1
    assert "zorp" not in base.decode(lp).text.split()  # the shared decoder's lexicon is untouched


def test_boost_zero_is_the_shared_search(base):
    """Hotwords the LM knows, boost 0: the same lexicon and LM scores, so every result is the shared decoder's."""
    hot = HotwordBeamDecoder(base, [("tea", 0.0), ("at eat", 0.0)])
    for lp in _random_lps() + [char_log_probs(_spell("tea at eat")), char_log_probs(_spell("a tee"))]:
        a, b = base.decode(lp), hot.decode(lp)
        assert a.text == b.text and [(w.word, w.start, w.end, w.conf) for w in a.words] == \
            [(w.word, w.start, w.end, w.conf) for w in b.words]


def test_a_boost_flips_an_ambiguous_word_the_lm_knows(base):
    # "▁te?" with e/a at 0.5/0.5, then "e": "tee" or "tea", the LM prefers "tea"
    lp = char_log_probs([{}, {"\u2581": 0.9}, {}, {"t": 0.9}, {}, {"e": 0.9}, {}, {"e": 0.45, "a": 0.45}, {}])
    assert base.decode(lp).text == "tea"
    assert HotwordBeamDecoder(base, [("tee", 3.0)]).decode(lp).text == "tee"
    assert HotwordBeamDecoder(base, [("tea", 3.0)]).decode(lp).text == "tea"


def test_boosted_lm_adds_a_phrase_bonus_and_withdraws_it_on_break(base):
    shared = base.lexicon_search()
    wd = base._dec.word_dict
    tea, at, zorp = wd.get_index("tea"), wd.get_index("at"), shared.n_words  # zorp: a new word
    graph = ContextGraph([((tea, zorp), (2.0, 3.0))])
    lm = boosted_lm(shared, graph, lm_weight=2.0)
    ken = shared.kenlm
    k0 = ken.start(False)
    k1, s_tea = ken.score(k0, tea)
    s0 = lm.start(False)
    s1, b_tea = lm.score(s0, tea)
    assert b_tea == pytest.approx(s_tea + 2.0 / 2.0)  # bonus in nats / LM weight
    assert lm.score(s0, tea)[0] is s1 and lm.score(s0, at)[0] is not s1  # one state per word, as KenLM's
    _, b_at = lm.score(s1, at)
    assert b_at == pytest.approx(ken.score(k1, at)[1] - 1.0)  # the phrase broke: its bonus is withdrawn
    assert lm.finish(s1)[1] == pytest.approx(ken.finish(k1)[1] - 1.0)  # ended inside the phrase: withdrawn too
    s2, b_zorp = lm.score(s1, zorp)
    k2, s_rare = ken.score(k1, shared.proxy)
    assert b_zorp == pytest.approx(s_rare + 1.5)  # a new word is scored as the LM's rarest word; the phrase completes
    assert lm.finish(s2)[1] == pytest.approx(ken.finish(k2)[1])  # kept


def test_chunked_search_is_deterministic_and_stateless(base):
    hot = HotwordBeamDecoder(base, [("zorp", 2.0), ("tea at", 1.0)])
    lps = _random_lps(3) + [char_log_probs(_spell("tea zorp"))]
    first = [hot.decode(lp).text for lp in lps]
    assert [hot.decode(lp).text for lp in lps] == first  # no state carried between segments
    assert hot.decode(lps[0], length=10).text == hot.decode(lps[0][:10]).text
    assert hot.decode(lps[0][:0]).text == ""


def test_vocabulary_decoder_keeps_the_lm_for_hotwords(base):
    dec = vocabulary_decoder(CharRec, hotwords=["zorp", {"phrase": "tea at", "boost": 3}], default=base)
    assert isinstance(dec, HotwordBeamDecoder) and dec.describe() == base.describe() + " + 2 hotwords"
    assert list(dec.new_words) == ["zorp"]
    # n-best lists, no default decoder (greedy) or a beam search without LM: the LM-free prefix beam search
    assert isinstance(vocabulary_decoder(CharRec, hotwords=["zorp"], nbest=2, default=base), PrefixBeamDecoder)
    assert isinstance(vocabulary_decoder(CharRec, hotwords=["zorp"], default=None), PrefixBeamDecoder)
    free = BeamCTCDecoder(CHAR_TOKENIZER, 0.04, BeamOptions(beam_size=4))
    assert isinstance(vocabulary_decoder(CharRec, hotwords=["zorp"], default=free), PrefixBeamDecoder)
    assert vocabulary_decoder(CharRec, default=base) is base


def test_bad_hotwords_for_the_lm_search(base, tmp_path):
    with pytest.raises(ValueError, match="cannot be spelled"):
        HotwordBeamDecoder(base, [("caf\u00e9", 1.0)])  # outside the char model's alphabet
    from dataclasses import replace

    zero = BeamCTCDecoder(CHAR_TOKENIZER, 0.04, replace(base.opts, lm_weight=0.0))
    with pytest.raises(ValueError, match="positive LM weight"):
        HotwordBeamDecoder(zero, [("tea", 1.0)])
    with pytest.raises(ValueError, match="need a word LM"):
        HotwordBeamDecoder(BeamCTCDecoder(CHAR_TOKENIZER, 0.04, BeamOptions(beam_size=4)), [("tea", 1.0)])


def test_unfinished_phrase_earns_nothing_at_the_end(base):
    """A segment ending inside a phrase: the result is scored as without the phrase's bonus (no truncation
    toward a half-spoken phrase)."""
    lp = char_log_probs(_spell("tea at"))
    assert HotwordBeamDecoder(base, [("tea at zorp", 2.0)]).decode(lp).text == base.decode(lp).text == "tea at"
    assert not math.isnan(HotwordBeamDecoder(base, [("tea at zorp", 2.0)]).decode(lp).words[0].conf)


def test_a_hotword_without_a_boost_gets_the_decoders_default(base):
    from asr.hotwords import DEFAULT_BOOST, LM_DEFAULT_BOOST, parse_hotwords

    lp = char_log_probs([{}, {"\u2581": 0.9}, {}, {"t": 0.9}, {}, {"e": 0.9}, {}, {"e": 0.45, "a": 0.45}, {}])
    hot = parse_hotwords(["tee"])
    assert hot == (("tee", None),)
    assert HotwordBeamDecoder(base, hot).graph.root.children[base._dec.word_dict.get_index("tee")].score == \
        LM_DEFAULT_BOOST * 3  # per token of "tee"
    assert PrefixBeamDecoder(CharRec, hot).decode(lp).text == \
        PrefixBeamDecoder(CharRec, [("tee", DEFAULT_BOOST)]).decode(lp).text
