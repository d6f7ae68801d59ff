"""Measures of the vocabulary recipe: boosted-word recall and false alarms, n-best oracle figures.

All texts are normalised with :func:`asr.text.normalize` (as :mod:`asr.scoring` does) before they are
compared; WER is corpus WER (errors / reference words) from :func:`asr.scoring.score_pairs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, List, Sequence, Set

from asr.scoring import score, score_pairs
from asr.text import normalize

__all__ = ["boosted_words", "WordRecall", "word_recall", "other_words_wer", "NBestStats", "nbest_stats"]


def boosted_words(phrases: Iterable[str]) -> Set[str]:
    """The words of the hotword phrases (normalised)."""
    return {w for p in phrases for w in normalize(p).split()}


@dataclass
class WordRecall:
    occurrences: int = 0  # boosted words in the references
    recognised: int = 0  # of those, aligned to the same word in the hypothesis (a hit)
    false_alarms: int = 0  # boosted words in the hypotheses that are not such hits

    @property
    def recall(self) -> float:
        return self.recognised / self.occurrences if self.occurrences else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "recall": round(self.recall, 4)}


def _hits(ref: List[str], hyp: List[str]) -> List[tuple]:
    """(ref index, hyp index) of the words the minimum-edit alignment matches."""
    import jiwer

    if not ref or not hyp:
        return []
    out = []
    for chunk in jiwer.process_words([" ".join(ref)], [" ".join(hyp)]).alignments[0]:
        if chunk.type == "equal":
            n = chunk.ref_end_idx - chunk.ref_start_idx
            out += [(chunk.ref_start_idx + k, chunk.hyp_start_idx + k) for k in range(n)]
    return out


def word_recall(refs: Sequence[str], hyps: Sequence[str], words: Set[str]) -> WordRecall:
    """How many occurrences of ``words`` in ``refs`` the hypotheses recognise exactly (aligned hits), and
    how many of ``words`` the hypotheses hold elsewhere (false alarms)."""
    out = WordRecall()
    for r, h in zip(refs, hyps):
        ref, hyp = normalize(r).split(), normalize(h).split()
        hits = _hits(ref, hyp)
        hit_ref = {i for i, _ in hits}
        hit_hyp = {j for _, j in hits}
        out.occurrences += sum(w in words for w in ref)
        out.recognised += sum(ref[i] in words for i in hit_ref)
        out.false_alarms += sum(w in words for j, w in enumerate(hyp) if j not in hit_hyp)
    return out


def other_words_wer(refs: Sequence[str], hyps: Sequence[str], words: Set[str]) -> tuple:
    """WER on the reference words that are not in ``words`` (the names): ``(errors, reference words)`` where
    errors are the substitutions and deletions of those words in the minimum-edit alignment, plus the
    insertions between two of them (an insertion next to a name is counted to the name: a name heard as two
    words is one substitution and one insertion)."""
    import jiwer

    errors = n = 0
    for r, h in zip(refs, hyps):
        ref, hyp = normalize(r).split(), normalize(h).split()
        n += sum(w not in words for w in ref)
        if not hyp:
            errors += sum(w not in words for w in ref)
            continue
        if not ref:
            errors += len(hyp)
            continue
        for c in jiwer.process_words([" ".join(ref)], [" ".join(hyp)]).alignments[0]:
            if c.type in ("substitute", "delete"):
                errors += sum(w not in words for w in ref[c.ref_start_idx:c.ref_end_idx])
            elif c.type == "insert":
                near = ref[max(c.ref_start_idx - 1, 0):c.ref_start_idx + 1]
                errors += 0 if any(w in words for w in near) else c.hyp_end_idx - c.hyp_start_idx
    return errors, n


@dataclass
class NBestStats:
    n: int  # alternatives asked for
    utterances: int
    mean_alternatives: float  # alternatives actually returned (equal texts are merged; the beam bounds them)
    top1_wer: float  # %
    oracle_wer: float  # %: the best alternative of each utterance
    ref_top: int  # utterances whose top alternative is the reference
    ref_in_list: int  # utterances whose reference is among the alternatives

    def to_dict(self) -> dict:
        return asdict(self)


def nbest_stats(refs: Sequence[str], alternatives: Sequence[Sequence[str]], n: int) -> NBestStats:
    """``alternatives``: per utterance the n-best texts, best first (at least one, possibly ""); the
    first ``n`` of each are used."""
    refs = [normalize(r) for r in refs]
    lists = [[normalize(a) for a in alts[:n]] or [""] for alts in alternatives]
    top = [alts[0] for alts in lists]
    best = []
    for r, alts in zip(refs, lists):
        scores = score_pairs([r] * len(alts), alts, normalise=False)
        best.append(alts[min(range(len(alts)), key=lambda k: (scores[k].errors, k))])
    return NBestStats(
        n=n, utterances=len(refs), mean_alternatives=round(sum(map(len, lists)) / max(len(lists), 1), 2),
        top1_wer=round(100 * score(refs, top, normalise=False).wer, 2),
        oracle_wer=round(100 * score(refs, best, normalise=False).wer, 2),
        ref_top=sum(r == t for r, t in zip(refs, top)),
        ref_in_list=sum(r in alts for r, alts in zip(refs, lists)))
