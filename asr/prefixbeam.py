"""CTC prefix beam search in pure Python, with hotwords and n-best: no LM, no optional dependency.

:class:`PrefixBeamSearch` consumes ``(steps, vocab)`` log-probabilities step by step (any chunking
gives the same search, step for step) and keeps the ``beam`` best token prefixes. Each prefix carries
the probability of its paths ending in a blank and ending in its last token (the classic prefix beam
search of Hannun et al. 2014), so equal prefixes reached by different alignments are merged by log-sum.
With hotwords (:class:`asr.hotwords.ContextGraph`) a prefix also carries its contextual bonus, which
ranks the beam; a phrase left unfinished loses its bonus (:meth:`PrefixBeamSearch.hypotheses`).

Prefixes form a tree: each kept prefix is a node with its parent, so every later hypothesis extends a
hypothesis in the beam now. Hence the words inside the common prefix of all hypotheses in the beam,
closed by a following word-start token, are final (:meth:`PrefixBeamSearch.stable`).

:class:`PrefixBeamDecoder` is the offline :class:`asr.decoding.Decoder` over one segment (a stream's
``final_decoder``): ``--hotwords`` and n-best lists when no word LM is wanted.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .decoding import Alternative, Result, Token, assemble_words, closed_words
from .hotwords import DEFAULT_BOOST, ContextGraph, ContextState, Hotword

__all__ = ["PrefixBeamOptions", "PrefixBeamSearch", "PrefixBeamDecoder", "MAX_NBEST"]

NEG = -math.inf
MAX_NBEST = 20  # alternatives per result


@dataclass(frozen=True)
class PrefixBeamOptions:
    beam: int = 8  # prefixes kept after each step
    tokens_per_step: int = 8  # tokens tried per step, most probable first
    token_floor: float = -12.0  # tokens below this log-probability are never tried (nats)
    threshold: float = 25.0  # drop prefixes scoring this much below the best (nats)

    def __post_init__(self):
        if not (isinstance(self.beam, int) and 1 <= self.beam <= 256):
            raise ValueError(f"beam must be an integer in [1, 256], got {self.beam!r}")
        if not (isinstance(self.tokens_per_step, int) and self.tokens_per_step >= 1):
            raise ValueError(f"tokens_per_step must be a positive integer, got {self.tokens_per_step!r}")
        if not (math.isfinite(self.token_floor) and self.threshold > 0 and math.isfinite(self.threshold)):
            raise ValueError("token_floor must be finite and threshold positive")


class _Node:
    """A prefix in the beam's tree: its last token, where it entered the beam, its peak posterior."""

    __slots__ = ("parent", "token", "depth", "first", "peak_t", "peak_lp", "ctx", "bonus")

    def __init__(self, parent: Optional["_Node"], token: int, t: int, ctx: Optional[ContextState], bonus: float):
        self.parent = parent
        self.token = token  # 0 for the root (empty prefix)
        self.depth = parent.depth + 1 if parent is not None else 0
        self.first = t  # step at which the prefix entered the beam
        self.peak_t, self.peak_lp = t, NEG  # step of the token's highest posterior while the prefix led a hypothesis
        self.ctx = ctx  # hotword graph state
        self.bonus = bonus  # hotword bonus earned so far (nats)

    def path(self) -> List["_Node"]:
        out, n = [], self
        while n.parent is not None:
            out.append(n)
            n = n.parent
        return out[::-1]


def _lae(a: float, b: float) -> float:
    """log(exp(a) + exp(b))."""
    if a < b:
        a, b = b, a
    if b == NEG:
        return a
    return a + math.log1p(math.exp(b - a))


class PrefixBeamSearch:
    """Incremental CTC prefix beam search over one segment.

    Args:
        tokenizer: the model's tokenizer (pieces by id; id 0 is the blank).
        step_s: seconds per output step (word times).
        opts: beam sizes and pruning.
        graph: hotwords, or None.
    """

    def __init__(self, tokenizer, step_s: float, opts: PrefixBeamOptions = PrefixBeamOptions(),
                 graph: Optional[ContextGraph] = None):
        self.pieces = tokenizer.pieces
        self.step_s = step_s
        self.opts = opts
        self.graph = graph
        self.steps = 0
        root = _Node(None, 0, -1, graph.root if graph else None, 0.0)
        self.beam: Dict[_Node, Tuple[float, float]] = {root: (0.0, NEG)}  # prefix -> (log p blank-ended, token-ended)

    def accept(self, log_probs: torch.Tensor) -> None:
        """``log_probs``: ``(steps, vocab)``."""
        if log_probs.numel() == 0:
            return
        lp = log_probs.float()
        k = min(self.opts.tokens_per_step, lp.shape[1] - 1)
        top = torch.topk(lp[:, 1:], k, dim=1).indices + 1
        for row, cands in zip(lp.tolist(), top.tolist()):
            self._step(row, [c for c in cands if row[c] >= self.opts.token_floor])

    def _extend(self, row: List[float], cands: List[int]) -> Dict[object, List[float]]:
        """Every way to extend the beam by one step: key = an existing node or (parent, token) -> [pb, pnb]."""
        index = {(n.parent, n.token): n for n in self.beam}
        nxt: Dict[object, List[float]] = {}
        blank = row[0]
        for node, (pb, pnb) in self.beam.items():
            tot = _lae(pb, pnb)
            e = nxt.setdefault(node, [NEG, NEG])
            e[0] = _lae(e[0], tot + blank)
            if node.token:  # the last token's run goes on
                e[1] = _lae(e[1], pnb + row[node.token])
            for c in cands:
                p = (pb if c == node.token else tot) + row[c]  # a repeated token needs a blank between
                key = index.get((node, c)) or (node, c)
                e = nxt.setdefault(key, [NEG, NEG])
                e[1] = _lae(e[1], p)
        return nxt

    def _step(self, row: List[float], cands: List[int]) -> None:
        t = self.steps
        scored = []
        for key, (pb, pnb) in self._extend(row, cands).items():
            if isinstance(key, _Node):
                bonus, ctx = key.bonus, key.ctx
            else:
                parent, tok = key
                ctx, bonus = parent.ctx, parent.bonus
                if self.graph is not None:
                    ctx, delta = self.graph.step(ctx, tok)
                    bonus += delta
            scored.append((_lae(pb, pnb) + bonus, key, pb, pnb, ctx, bonus))
        best = heapq.nlargest(self.opts.beam, scored, key=lambda s: s[0])
        floor = best[0][0] - self.opts.threshold
        beam: Dict[_Node, Tuple[float, float]] = {}
        for score, key, pb, pnb, ctx, bonus in best:
            if score < floor:
                break
            node = key if isinstance(key, _Node) else _Node(key[0], key[1], t, ctx, bonus)
            if node.token and row[node.token] > node.peak_lp:
                node.peak_t, node.peak_lp = t, row[node.token]
            beam[node] = (pb, pnb)
        self.beam = beam
        self.steps += 1

    # ---- results -------------------------------------------------------------------
    def hypotheses(self, final: bool = True) -> List[Tuple[float, _Node]]:
        """``(score, prefix)`` of the beam, best first. ``final``: unfinished hotword matches lose their
        bonus (the segment ends here); else scores are the search's own."""
        out = []
        for node, (pb, pnb) in self.beam.items():
            pend = ContextGraph.pending(node.ctx) if final and node.ctx is not None else 0.0
            out.append((_lae(pb, pnb) + node.bonus - pend, node))
        out.sort(key=lambda s: -s[0])
        return out

    def _tokens(self, node: _Node) -> List[Token]:
        return [Token(n.token, n.first, max(n.first, n.peak_t), math.exp(n.peak_lp) if n.peak_lp > NEG else 0.0)
                for n in node.path()]

    def result(self, final: bool = True, nbest: int = 1) -> Result:
        """The best hypothesis (word times from step 0 of the search); with ``nbest`` > 1 its
        :attr:`Result.alternatives` (hypotheses with the same words merged). Not final: ``stable`` set."""
        hyps = self.hypotheses(final)
        alternatives = self._alternatives(hyps, nbest) if nbest > 1 else []
        # with n-best, the text is the first alternative's: paths with the same words are merged there
        words = alternatives[0].words if alternatives else assemble_words(self._tokens(hyps[0][1]), self.pieces, self.step_s)
        res = Result.of_words(words, 0.0, self.steps * self.step_s)
        res.alternatives = alternatives
        if not final:
            res.stable = self.stable()  # words every hypothesis of the beam shares
        return res

    def _alternatives(self, hyps, nbest: int) -> List[Alternative]:
        merged: Dict[str, List] = {}
        for score, node in hyps:
            words = assemble_words(self._tokens(node), self.pieces, self.step_s)
            text = " ".join(w.word for w in words)
            if text in merged:
                merged[text][0] = _lae(merged[text][0], score)
            else:
                merged[text] = [score, words]
        top = sorted(merged.items(), key=lambda kv: -kv[1][0])[:nbest]
        total = NEG
        for _, (s, _) in top:
            total = _lae(total, s)
        return [Alternative(text, words, s, math.exp(s - total)) for text, (s, words) in top]

    def stable(self) -> int:
        """Leading words of every hypothesis now in the beam, closed by a following word-start token:
        no later hypothesis, partial or final, can change them."""
        nodes = list(self.beam)
        anc = nodes[0]
        for n in nodes[1:]:
            a, b = anc, n
            while a.depth > b.depth:
                a = a.parent
            while b.depth > a.depth:
                b = b.parent
            while a is not b:
                a, b = a.parent, b.parent
            anc = a
        return closed_words(self._tokens(anc), self.pieces)


class PrefixBeamDecoder:
    """Offline prefix beam search over one segment (an :class:`asr.decoding.Decoder`), with hotwords
    and n-best lists.

    Args:
        recognizer: the model (its ``tokenizer`` spells the hotwords; ``step_s`` gives word times).
        hotwords: ``(phrase, boost)`` pairs (:func:`asr.hotwords.parse_hotwords`; boost None:
            :data:`asr.hotwords.DEFAULT_BOOST`), or none.
        nbest: alternatives in each result (1: none).
        opts: beam sizes.

    Stateless after construction: one decoder serves many streams of one thread.
    """

    def __init__(self, recognizer, hotwords: Sequence[Hotword] = (), nbest: int = 1,
                 opts: PrefixBeamOptions = PrefixBeamOptions()):
        if not (isinstance(nbest, int) and 1 <= nbest <= MAX_NBEST):
            raise ValueError(f"nbest must be an integer in [1, {MAX_NBEST}], got {nbest!r}")
        self.tok = recognizer.tokenizer
        self.step_s = recognizer.step_s
        self.hotwords = tuple(hotwords)
        self.nbest = nbest
        self.opts = opts
        spellings = []
        for phrase, boost in self.hotwords:
            boost = DEFAULT_BOOST if boost is None else boost
            ids = self.tok.encode(phrase)  # ValueError for characters outside a char model's alphabet
            if not ids or 0 in ids or 1 in ids and self.tok.pieces[1] == "<unk>":
                raise ValueError(f"hotword {phrase!r} cannot be spelled with the model's tokens")
            spellings.append((ids, boost))
        self.graph = ContextGraph(spellings) if spellings else None

    def search(self) -> PrefixBeamSearch:
        """A fresh incremental search (for partial results with ``stable`` counts)."""
        return PrefixBeamSearch(self.tok, self.step_s, self.opts, self.graph)

    def decode(self, log_probs: torch.Tensor, length: Optional[int] = None) -> Result:
        """``log_probs``: ``(steps, vocab)``; its first ``length`` steps (None: all)."""
        s = self.search()
        s.accept(log_probs if length is None else log_probs[:length])
        return s.result(final=True, nbest=self.nbest)

    def describe(self) -> str:
        d = f"prefix beam {self.opts.beam} ({self.opts.tokens_per_step} tokens/step)"
        if self.hotwords:
            d += f" + {len(self.hotwords)} hotword{'s' if len(self.hotwords) != 1 else ''}"
        return d + (f", {self.nbest}-best" if self.nbest > 1 else "")
