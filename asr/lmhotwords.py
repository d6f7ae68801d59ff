"""Hotwords inside the word-LM beam search: a request's own lexicon and a boosting LM over the shared KenLM.

:class:`asr.beam.BeamCTCDecoder` with a word LM can only output the LM's words. A request with hotwords
(``rec.stream(sr, hotwords=[...])``, ``asr transcribe --hotwords``, the server's ``hotwords`` start option,
whenever the final decoder is a beam search with an LM) gets a :class:`HotwordBeamDecoder` instead: the
same flashlight lexicon search with the same options, and

* **a lexicon of its own**: the LM's words plus each hotword word the LM does not know, spelled with the
  model's tokenizer as the LM's words are (:func:`asr.beam.spellings`). The request's search trie is built
  on its first decode; what all requests share (the LM's words' spellings and scores) is computed once per
  process (:class:`SharedLexicon`). recipes/vocab/README.md has both costs measured for the bundled LM.
* **a boosting LM** (:func:`boosted_lm`, a flashlight ``LM`` written in Python as torchaudio's
  ``CTCDecoderLM``) that delegates to the process's one KenLM model (loaded once, shared) and adds the
  hotword bonuses. A word the LM does not know is scored as the LM's rarest word after the same history.
  Each word that continues a hotword phrase earns the phrase's ``boost`` once per token of the word, on a
  word-level :class:`asr.hotwords.ContextGraph` (Aho-Corasick over word indices): as in the LM-free search,
  a phrase left unfinished (the next word leaves it, or the segment ends) loses what it earned, a completed
  phrase keeps it. A one-word hotword of ``n`` tokens thus earns ``boost * n`` nats when it is output, what
  the prefix beam search's token-level bonus gives when the word completes.
* **lookahead**: the trie's score of each token of a hotword (the smeared unigram score the search credits
  while a word is being spelled) includes the bonus earned so far, up to the best lookahead of any word
  (:meth:`SharedLexicon.trie`), so a hotword stays in the beam while it is spoken. For a word boosted only
  after the earlier words of its phrase this lookahead is optimistic; the search settles it when the word ends.

KenLM's scores are log10 and weighted by ``lm_weight``; the bonuses are nats, so the LM adds
``bonus / lm_weight`` (hotwords need a positive LM weight). With every bonus 0 and every hotword known to
the LM the search is the shared decoder's, result for result (``tests/test_hotwords_lm.py``).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import ChainMap, namedtuple
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from flashlight.lib.text import decoder as fl
from flashlight.lib.text.dictionary import load_words

from .beam import _SIL, BeamCTCDecoder, emissions, spell_info, spellings
from .decoding import Result
from .hotwords import LM_DEFAULT_BOOST, ContextGraph, Hotword

__all__ = ["SharedLexicon", "boosted_lm", "HotwordBeamDecoder"]

_Hyp = namedtuple("_Hyp", "tokens timesteps words")  # what BeamCTCDecoder._result reads of a hypothesis


class SharedLexicon:
    """What every request's lexicon search shares, taken from a :class:`BeamCTCDecoder` with an LM: its
    KenLM model and dictionaries, and each LM word's spellings (token indices) and score after ``<s>``
    (the trie's lookahead score), in the order torchaudio builds its trie, so an unboosted request's trie
    is the shared decoder's. Built once per decoder (:meth:`BeamCTCDecoder.lexicon_search`)."""

    def __init__(self, base: BeamCTCDecoder):
        dec = base._dec  # torchaudio's CTCDecoder over the same lexicon
        self.kenlm, self.word_dict, self.tokens_dict = dec.lm, dec.word_dict, dec.tokens_dict
        self.n_words = self.word_dict.index_size()  # the LM's words and <unk>
        self.unk = self.word_dict.get_index("<unk>")
        self.sil = self.tokens_dict.get_index(_SIL)
        self.blank = self.tokens_dict.get_index(base.tok.pieces[0])
        path = base._write_lexicon(base.opts.lm)
        try:
            lexicon = load_words(path)  # torchaudio's order of insertion into the trie
        finally:
            os.unlink(path)
        start = self.kenlm.start(False)
        self.entries: List[Tuple[int, float, List[List[int]]]] = []  # (word index, score, spellings)
        for w, spells in lexicon.items():
            if not spells:  # flashlight's "<unk>", which has no spelling
                continue
            i = self.word_dict.get_index(w)
            self.entries.append((i, self.kenlm.score(start, i)[1],
                                 [[self.tokens_dict.get_index(p) for p in s] for s in spells]))
        # A word the LM does not know is scored as the LM's rarest word, not as <unk>: <unk> stands for every
        # unseen word at once (p = 10^-2.4 in the bundled LM, more than most words), so an unknown hotword
        # would beat a known word it sounds like without any boost ("seven" -> "sven" on real speech).
        self.proxy, self.start_new = min(((i, s) for i, s, _ in self.entries), key=lambda e: e[1])
        self.top = max(s for _, s, _ in self.entries)  # the root's lookahead: the most likely first word

    def trie(self, new: Sequence[List[List[str]]], bonus: Dict[int, float]):
        """A search trie: the LM's words and the ``new`` words' spellings (word indices from ``n_words`` on,
        scored as the rarest word), smeared as torchaudio does. Then along the spelling of each word with a
        ``bonus`` (LM units) the lookahead at its ``k``-th of ``n`` tokens is raised to the word's own score
        plus ``k / n`` of the bonus (earned token by token while the word is spelled, as in the LM-free
        search), but not above :attr:`top`: a hypothesis inside a hotword is never more optimistic than one
        inside the likeliest word. Unbounded, hypotheses sat in a hotword's prefix to the end of the
        segment, skipping the speech after it (measured on names_dev: deletions 87 -> 198 at boost 6)."""
        trie = fl.Trie(self.tokens_dict.index_size(), self.sil)
        for i, score, spells in self.entries:
            for ids in spells:
                trie.insert(ids, i, score)
        new_ids = [[[self.tokens_dict.get_index(p) for p in s] for s in spells] for spells in new]
        for i, spells in enumerate(new_ids, self.n_words):
            for ids in spells:
                trie.insert(ids, i, self.start_new)
        trie.smear(fl.SmearingMode.MAX)
        if bonus:
            own = {i: (score, spells) for i, score, spells in self.entries if i in bonus}
            own.update((i, (self.start_new, spells)) for i, spells in enumerate(new_ids, self.n_words))
            for i, b in bonus.items():
                score, spells = own[i]
                for ids in spells:
                    for k in range(1, len(ids) + 1):
                        node = trie.search(ids[:k])
                        node.max_score = max(node.max_score, min(score + b * k / len(ids), self.top))
        return trie


class _BoostedLM(fl.LM):
    """A flashlight LM: the shared KenLM's log10 score (words from index ``n_words`` on scored as
    ``<unk>``) plus the word-level hotword bonus of ``graph`` (nats) times ``scale`` (1 / LM weight).

    Its states mirror flashlight's KenLM states (a child state per word index, compared by identity), so
    without bonuses the search merges and ranks hypotheses exactly as over KenLM itself."""

    def __init__(self, shared: SharedLexicon, graph: ContextGraph, scale: float):
        fl.LM.__init__(self)
        self.ken, self.n, self.proxy = shared.kenlm, shared.n_words, shared.proxy
        self.graph, self.root, self.scale = graph, graph.root, scale
        self.states: Dict[object, tuple] = {}  # one search's states -> (KenLM state, graph state, score to it)

    def start(self, start_with_nothing: bool):
        state = fl.LMState()
        self.states = {state: (self.ken.start(start_with_nothing), self.root, 0.0)}
        return state

    def clear(self) -> None:
        """Forget the last search's states (they keep the Python objects of flashlight's states alive)."""
        self.states = {}

    def score(self, state, word: int):
        out = state.child(word)  # the same object for the same (state, word): flashlight keeps children
        got = self.states.get(out)
        if got is None:
            ken, ctx, _ = self.states[state]
            ken_out, s = self.ken.score(ken, word if word < self.n else self.proxy)
            if ctx is self.root and word not in self.root.children:  # most words: no hotword, no bonus
                ctx_out, bonus = ctx, 0.0
            else:
                ctx_out, bonus = self.graph.step(ctx, word)
            got = self.states[out] = (ken_out, ctx_out, s + bonus * self.scale)
        return out, got[2]

    def finish(self, state):
        out = state.child(-1)
        got = self.states.get(out)
        if got is None:
            ken, ctx, _ = self.states[state]
            ken_out, s = self.ken.finish(ken)
            got = self.states[out] = (ken_out, self.root, s - ContextGraph.pending(ctx) * self.scale)
        return out, got[2]


def boosted_lm(shared: SharedLexicon, graph: ContextGraph, lm_weight: float) -> fl.LM:
    """The LM of a hotword search over ``shared``'s KenLM (see :class:`_BoostedLM`)."""
    return _BoostedLM(shared, graph, 1.0 / lm_weight)


class HotwordBeamDecoder:
    """Beam search with ``base``'s word LM and options plus hotwords (an :class:`asr.decoding.Decoder`).

    Args:
        base: a :class:`BeamCTCDecoder` with an LM (e.g. the model's shared default decoder).
        hotwords: ``(phrase, boost)`` pairs (:func:`asr.hotwords.parse_hotwords`; boost in nats per token,
            None: :data:`asr.hotwords.LM_DEFAULT_BOOST`).

    The hotwords are spelled here (ValueError for a word the model's tokens cannot spell); the trie is
    built on the first :meth:`decode` (a server's worker thread, not its event loop). Meant for one
    stream; concurrent calls wait for each other.
    """

    def __init__(self, base: BeamCTCDecoder, hotwords: Sequence[Hotword]):
        if base.opts.lm is None:
            raise ValueError("hotwords in the beam search need a word LM (without one: asr.prefixbeam)")
        if not base.opts.lm_weight > 0:
            raise ValueError(f"hotwords with an LM need a positive LM weight, got {base.opts.lm_weight:g}")
        self.base, self.hotwords = base, tuple(hotwords)
        self.tok, self.opts, self.shared = base.tok, base.opts, None  # SharedLexicon, on the first decode
        self.word_dict = base._dec.word_dict
        self.n_words = self.word_dict.index_size()
        self.new_words: Dict[str, List[List[str]]] = {}  # hotword words the LM does not know -> spellings
        self._index: Dict[str, int] = {}  # ... -> word index (from n_words on)
        phrases = []
        for phrase, boost in self.hotwords:
            ids, bonuses = zip(*(self._word(w, boost) for w in phrase.split()))
            phrases.append((ids, bonuses))
        self.graph = ContextGraph(phrases)
        self.lookahead: Dict[int, float] = {}  # word index -> its largest bonus (nats)
        for ids, bonuses in phrases:
            for i, b in zip(ids, bonuses):
                self.lookahead[i] = max(b, self.lookahead.get(i, b))
        self.words = list(self.new_words)  # word index n_words + k
        self.spell_len = ChainMap({w: spell_info(s) for w, s in self.new_words.items()}, base._spell_len)
        self._lock = threading.Lock()
        self._dec = self._lm = None

    def _word(self, w: str, boost: Optional[float]) -> Tuple[int, float]:
        """A hotword word's index (new words after the LM's) and bonus (``boost`` per token; None:
        :data:`asr.hotwords.LM_DEFAULT_BOOST`)."""
        boost = LM_DEFAULT_BOOST if boost is None else boost
        if w in self.base._spell_len:
            return self.word_dict.get_index(w), boost * self.base._spell_len[w][0]
        spells = spellings(self.tok, w)
        if not spells or self.tok.pieces[1] == "<unk>" and 1 in self.tok.encode(w):
            raise ValueError(f"hotword {w!r} cannot be spelled with the model's tokens")
        if w not in self.new_words:
            self.new_words[w] = spells
            self._index[w] = self.n_words + len(self._index)
        return self._index[w], boost * len(spells[0])

    def _build(self) -> None:
        """The request's trie, LM and search (the process's shared lexicon first, once)."""
        self.shared = self.base.lexicon_search()
        scale, o = 1.0 / self.opts.lm_weight, self.opts
        trie = self.shared.trie(list(self.new_words.values()), {i: b * scale for i, b in self.lookahead.items()})
        self._lm = boosted_lm(self.shared, self.graph, o.lm_weight)
        opts = fl.LexiconDecoderOptions(
            beam_size=o.beam_size, beam_size_token=o.beam_size_token or self.shared.tokens_dict.index_size(),
            beam_threshold=o.beam_threshold, lm_weight=o.lm_weight, word_score=o.word_score,
            unk_score=float("-inf"), sil_score=0.0, log_add=o.log_add, criterion_type=fl.CriterionType.CTC)
        sh = self.shared
        self._dec = fl.LexiconDecoder(opts, trie, self._lm, sh.sil, sh.blank, sh.unk, [], False)

    def word(self, i: int) -> str:
        return self.word_dict.get_entry(i) if i < self.n_words else self.words[i - self.n_words]

    def decode(self, log_probs: torch.Tensor, length: Optional[int] = None) -> Result:
        """One segment: ``log_probs`` ``(steps, vocab)``, its first ``length`` steps (None: all)."""
        lp = log_probs if length is None else log_probs[:length]
        if lp.shape[0] == 0:
            return Result("", [], 0.0, 0.0)
        em, _ = emissions([lp], self.base.vocab)
        with self._lock:
            if self._dec is None:
                self._build()
            try:
                best = self._dec.decode(em.data_ptr(), em.shape[1], em.shape[2])[0]
            finally:
                self._lm.clear()  # the search's LM states: the next search starts afresh
        return self.base._result(self._hypothesis(best), lp, self.spell_len)

    def _hypothesis(self, res) -> _Hyp:
        """A flashlight result as torchaudio's ``CTCHypothesis`` (tokens without repeats and blanks, the
        step of each, words)."""
        raw, blank = list(res.tokens), self.shared.blank
        tokens = [t for t, _ in itertools.groupby(raw) if t != blank]
        steps = [i for i, t in enumerate(raw) if t != blank and (i == 0 or t != raw[i - 1])]
        return _Hyp(torch.LongTensor(tokens), torch.IntTensor(steps), [self.word(i) for i in res.words if i >= 0])

    def describe(self) -> str:
        n = len(self.hotwords)
        return f"{self.base.describe()} + {n} hotword{'s' if n != 1 else ''}"
