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


def read_arpa_any(path):
    import gzip

    if str(path).endswith(".gz"):
        plain = str(path)[:-3]
        with gzip.open(path, "rt", encoding="utf-8") as f, open(plain, "w", encoding="utf-8") as g:
            g.write(f.read())
        path = plain
    return read_arpa(path)


@pytest.mark.parametrize("vocab_size,prune", [(None, (0, 1, 1)), (7, None), (7, (0, 1, 2)), (5, (0, 2))])
def test_pruned_and_cut_models_are_distributions(tmp_path, vocab_size, prune):
    """Count pruning and the vocabulary cut renormalise the back-off: still one distribution per history."""
    path = tmp_path / "lm.arpa"
    st = build_arpa(corpus(600), str(path), order=3, vocab_size=vocab_size, prune=prune)
    full = build_arpa(corpus(600), str(tmp_path / "full.arpa"), order=3)
    tab = read_arpa(path)
    assert st.ngrams == tuple(len(tab[n]) for n in range(1, 4))
    assert sum(st.ngrams[1:]) < sum(full.ngrams[1:])
    if vocab_size is None:  # every n-gram not written was pruned by count
        assert sum(st.pruned) == sum(full.ngrams[1:]) - sum(st.ngrams[1:])
    vocab = [g[0] for g in tab[1] if g[0] != BOS]
    if vocab_size is not None:
        assert len(vocab) == vocab_size + 2 and UNK in vocab and st.vocab == vocab_size
        assert 0 < st.oov_rate < 1
        assert not any(UNK in g for n in (2, 3) for g in tab[n])  # <unk> n-grams are not written
    for n in (2, 3):  # every kept n-gram's prefix is a history with a back-off weight
        for g in tab[n]:
            assert g[:-1] in tab[n - 1] and g[1:] in tab[n - 1]
    hists = {g[:-1] for n in (2, 3) for g in tab[n]} | {(), ("cat", "cat"), ("zebra", "zebra"), (BOS,)}
    for h in hists:
        total = sum(10 ** logp(tab, list(h), w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), h


def test_vocabulary_cut_keeps_the_most_frequent_words(tmp_path):
    sents = ["a a a b b c", "a b d", "a e"]
    build_arpa(sents, str(tmp_path / "lm.arpa"), order=2, vocab_size=2)
    assert sorted(arpa_vocabulary(str(tmp_path / "lm.arpa"))) == ["a", "b"]
    with pytest.raises(ValueError):
        build_arpa(sents, str(tmp_path / "x.arpa"), vocab_size=0)
    for bad in [(1, 1, 1), (0, 2, 1), (0, -1), (0, 1, 1, 1)]:
        with pytest.raises(ValueError):
            build_arpa(sents, str(tmp_path / "x.arpa"), order=3, prune=bad)


def test_unpruned_model_is_unchanged_by_the_size_options(tmp_path):
    """prune=(0, 0, 0) and a vocabulary larger than the text's write the same file as no options."""
    a, b = tmp_path / "a.arpa", tmp_path / "b.arpa"
    build_arpa(corpus(), str(a), order=3)
    build_arpa(corpus(), str(b), order=3, vocab_size=1000, prune=(0, 0, 0))
    assert a.read_text() == b.read_text()


def test_gzip_output_reads_back_and_in_kenlm(tmp_path):
    gz = tmp_path / "lm.arpa.gz"
    st = build_arpa(corpus(), str(gz), order=3, prune=(0, 1))
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert sorted(arpa_vocabulary(str(gz))) == sorted(set(WORDS))
    assert st.ngrams == tuple(len(read_arpa_any(gz)[n]) for n in (1, 2, 3))
    kenlm = pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.dictionary import Dictionary

    d = Dictionary()
    for w in [UNK, *WORDS]:
        d.add_entry(w)
    from asr.lm import quiet_native_stderr

    with quiet_native_stderr():
        lm = kenlm.KenLM(str(gz), d)
    _, sc = lm.score(lm.start(False), d.get_index("the"))
    assert sc == pytest.approx(logp(read_arpa_any(gz), [BOS], "the"), abs=1e-4)


def test_quiet_native_stderr_hides_only_the_kenlm_banner(capfd):
    import os

    from asr.lm import quiet_native_stderr

    with quiet_native_stderr():
        os.write(2, b"Loading the LM will be faster if you build a binary file.\nReading /x/lm.arpa\n"
                    b"----5---10---15---20---25---30\n****************\nreal problem: bad line\n")
    err = capfd.readouterr().err
    assert err == "real problem: bad line\n"


def test_cli_size_options(tmp_path, capsys):
    t = tmp_path / "text.txt"
    t.write_text("\n".join(corpus(200)) + "\n")
    out = tmp_path / "lm.arpa.gz"
    assert cli_main(["lm", str(t), "-o", str(out), "--vocab-size", "6", "--prune", "0 1 1", "--no-progress"]) == 0
    assert "vocabulary 6 (OOV" in capsys.readouterr().out
    assert len(arpa_vocabulary(str(out))) == 6
    assert cli_main(["lm", str(t), "-o", str(out), "--prune", "0 x"]) == 1
