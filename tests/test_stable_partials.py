"""Stable partials: no word a partial result reports as stable ever changes later, in any later partial or
in the segment's final result, for any chunking. Invariant tests over many random streams."""

import random

import pytest
import torch

from asr.decoding import GreedyCTCDecoder, closed_words
from asr.hotwords import ContextGraph
from asr.prefixbeam import PrefixBeamOptions, PrefixBeamSearch
from asr.stream import audio_chunks
from asr.tokenizer import CharTokenizer
from conftest import make_recognizer, speechlike

TOK = CharTokenizer()
SPACE = TOK.pieces.index("\u2581")


def wordy_recognizer():
    """The random test model with the word-start token made likely, so its partials have several words."""
    rec = make_recognizer("gru")
    with torch.no_grad():
        rec.model.output.bias[SPACE] += 8.0
    return rec


def _random_log_probs(rng: random.Random, steps: int) -> torch.Tensor:
    """Peaky CTC-like output: mostly blank, word-start tokens often, sometimes two tokens competing."""
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    logits = torch.randn(steps, TOK.vocab_size, generator=g)
    for t in range(steps):
        r = rng.random()
        winner = 0 if r < 0.45 else SPACE if r < 0.6 else rng.randrange(1, TOK.vocab_size)
        logits[t, winner] += rng.uniform(2.0, 7.0)
        if rng.random() < 0.3:  # a close competitor: beams and argmax runs disagree
            logits[t, rng.randrange(0, TOK.vocab_size)] += rng.uniform(2.0, 7.0)
    return torch.log_softmax(logits, dim=-1)


def _chunks(rng: random.Random, n: int):
    a = 0
    while a < n:
        b = min(n, a + rng.choice([1, 1, 2, 3, 5, 8, 13]))
        yield a, b
        a = b


def _check(partials, final_words):
    """Every partial's stable words are the first words of every later partial and of the final."""
    later = [p.words for p in partials] + [final_words]
    for i, p in enumerate(partials):
        assert 0 <= p.stable <= len(p.words)
        fixed = p.words[: p.stable]
        for words in later[i + 1 :]:
            assert words[: len(fixed)] == fixed


def test_closed_words():
    ids = [TOK.pieces.index(c) for c in "ab\u2581c\u2581\u2581de"]
    toks = [type("T", (), {"id": i})() for i in ids]
    assert [closed_words(toks[:k], TOK.pieces) for k in range(len(toks) + 1)] == [0, 0, 0, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize("seed", range(4))
def test_greedy_stable_words_never_change(seed):
    rng = random.Random(seed)
    for _ in range(50):
        lp = _random_log_probs(rng, rng.randrange(1, 120))
        dec = GreedyCTCDecoder(TOK, 0.04)
        partials = []
        for a, b in _chunks(rng, lp.shape[0]):
            dec.accept(lp[a:b])
            partials.append(dec.result())
        _check(partials, dec.close_segment().words)
    assert any(p.stable for p in partials)  # the test exercises something


@pytest.mark.parametrize("seed", range(3))
def test_beam_stable_words_never_change(seed):
    rng = random.Random(100 + seed)
    graph = ContextGraph([(TOK.encode(w), 2.5) for w in ("ab", "cd", "abc")])
    saw_stable = False
    for n in range(30):
        lp = _random_log_probs(rng, rng.randrange(1, 100))
        search = PrefixBeamSearch(TOK, 0.04, PrefixBeamOptions(beam=rng.choice([1, 4, 8])),
                                  graph if n % 2 else None)
        partials = []
        for a, b in _chunks(rng, lp.shape[0]):
            search.accept(lp[a:b])
            partials.append(search.result(final=False))
        saw_stable |= any(p.stable for p in partials)
        _check(partials, search.result(final=True).words)
    assert saw_stable


def test_stream_partials_stable_across_endpoints():
    """Through the stream, with endpointing closing segments at random points of random chunkings:
    each partial's stable words are the first words of its segment's final."""
    from asr.decoding import EndpointConfig

    rec, rng, saw_stable = wordy_recognizer(), random.Random(7), False
    for seed in range(6):
        st = rec.stream(16000, endpoint=EndpointConfig(trailing_silence_s=rng.choice([0.1, 0.3]), max_segment_s=1.0))
        x = speechlike(2.5, seed=seed)
        partials = []
        for piece in audio_chunks(x, rng.choice([160, 640, 2000, 5000])):
            st.accept_waveform(piece)
            final = st.pop_endpoint()
            if final is not None:
                _check(partials, final.words)
                partials = []
            partials.append(st.partial())
            saw_stable |= partials[-1].stable > 0
        _check(partials, st.finish().words)
    assert saw_stable


def test_stable_is_zero_under_a_final_decoder(rec_gru):
    st = rec_gru.stream(16000, hotwords=["ab"])
    st.accept_waveform(speechlike(2.0))
    assert st.partial().stable == 0
