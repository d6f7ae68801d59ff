"""The n-gram language model: a proper distribution per history, read the same way by KenLM."""

import json
import random

import pytest

from asr.cli import main as cli_main
from asr.lm import BOS, EOS, UNK, arpa_vocabulary, build_arpa, read_sentences

WORDS = "the a cat dog sat on mat ran to house big small".split()


def corpus(n=300, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS[: rng.randint(4, len(WORDS))]) for _ in range(rng.randint(1, 7)))
            for _ in range(n)]


def read_arpa(path):
    """{order: {ngram: (log10 p, log10 bow)}} parsed independently of asr.lm."""
    tab, n = {}, 0
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.endswith("-grams:"):
            n = int(line[1])
            tab[n] = {}
        elif n and line and not line.startswith("\\"):
            f = line.split("\t")
            tab[n][tuple(f[1].split())] = (float(f[0]), float(f[2]) if len(f) > 2 else 0.0)
    return tab


def logp(tab, hist, w):
    """ARPA back-off: log10 p(w | hist)."""
    for k in range(len(hist), -1, -1):
        h = tuple(hist[len(hist) - k :])
        if h + (w,) in tab.get(k + 1, {}):
            bows = sum(tab[j][tuple(hist[len(hist) - j :])][1] for j in range(k + 1, len(hist) + 1)
                       if tuple(hist[len(hist) - j :]) in tab.get(j, {}))
            return tab[k + 1][h + (w,)][0] + bows
    raise AssertionError(f"{w} not even a unigram")


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_history_is_a_distribution(tmp_path, order):
    path = tmp_path / "lm.arpa"
    st = build_arpa(corpus(), str(path), order=order)
    tab = read_arpa(path)
    assert sorted(tab) == list(range(1, order + 1))
    assert st.ngrams == tuple(len(tab[n]) for n in range(1, order + 1))
    vocab = [g[0] for g in tab[1] if g[0] != BOS]
    assert set(vocab) == set(WORDS) | {EOS, UNK}
    # every seen history, plus unseen ones made of known and unknown words
    hists = {g[:-1] for n in range(2, order + 1) for g in tab[n]}
    hists |= {(), ("cat", "cat", "cat")[: order - 1], ("zebra",) * (order - 1), (BOS,) if order > 1 else ()}
    for h in hists:
        total = sum(10 ** logp(tab, list(h), w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), h


def test_kenlm_reads_the_same_probabilities(tmp_path):
    """flashlight's KenLM (the beam decoder's LM) scores sentences as our ARPA back-off does."""
    kenlm = pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.dictionary import Dictionary

    path = tmp_path / "lm.arpa"
    sents = corpus()
    build_arpa(sents, str(path), order=3)
    tab = read_arpa(path)
    words = arpa_vocabulary(str(path))
    d = Dictionary()
    for w in [UNK, *words]:
        d.add_entry(w)
    lm = kenlm.KenLM(str(path), d)
    for s in ["the cat sat on the mat", "mat the the big", "cat"]:
        state, ours, theirs, hist = lm.start(False), 0.0, 0.0, [BOS]
        for w in s.split():
            state, sc = lm.score(state, d.get_index(w))
            theirs += sc
            ours += logp(tab, hist[-2:], w)
            hist.append(w)
        state, sc = lm.finish(state)
        theirs += sc
        ours += logp(tab, hist[-2:], EOS)
        assert theirs == pytest.approx(ours, abs=1e-4)  # both log10


def test_seen_continuations_beat_unseen(tmp_path):
    path = tmp_path / "lm.arpa"
    build_arpa(["the cat sat on the mat"] * 5 + ["a dog ran to the house"] * 5, str(path), order=3)
    tab = read_arpa(path)
    assert logp(tab, ["the", "cat"], "sat") > logp(tab, ["the", "cat"], "ran")
    assert logp(tab, [BOS], "the") > logp(tab, [BOS], "mat")


def test_cli_builds_from_manifests_and_text(tmp_path, capsys):
    m = tmp_path / "train.jsonl"
    m.write_text("".join(json.dumps({"audio": "x.wav", "text": s}) + "\n" for s in ["Hello, World!", "hello there"]))
    t = tmp_path / "extra.txt"
    t.write_text("General Kenobi\n\n")
    assert list(read_sentences([str(m), str(t)])) == ["hello world", "hello there", "general kenobi"]
    out = tmp_path / "lm.arpa"
    assert cli_main(["lm", str(m), str(t), "-o", str(out), "--order", "2", "--no-progress"]) == 0
    assert "3 sentences" in capsys.readouterr().out
    assert sorted(arpa_vocabulary(str(out))) == ["general", "hello", "kenobi", "there", "world"]
    assert cli_main(["lm", str(tmp_path / "missing.txt"), "-o", str(out)]) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "x.wav"}\n')
    assert cli_main(["lm", str(bad), "-o", str(out)]) == 1
    assert "bad.jsonl:1" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert cli_main(["lm", str(empty), "-o", str(out)]) == 1
