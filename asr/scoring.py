"""Scoring: word and character error rates of hypotheses against references, and breakdowns.

Reference and hypothesis both go through :func:`asr.text.normalize` (the normalisation
training uses), then jiwer aligns them. WER = (S + D + I) / N over the whole corpus
(N = reference words; not a mean of per-utterance rates), CER likewise over characters
(spaces included, as jiwer counts them).

Empty references (after normalisation) are kept, not dropped: every hypothesis word
counts as an insertion (every hypothesis character as a character error), and the
utterance adds nothing to N. Wherever N would be 0 (an empty-reference utterance on
its own, or a set of them) the rate is computed with N = 1, so it stays finite: 0 for
an empty hypothesis, otherwise the number of inserted words.

Breakdowns (:func:`group_scores`) add up per-utterance scores (:class:`UttResult`) by
the value of a manifest field, or by reference length (:func:`length_bucket`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Dict, Iterable, List, Sequence, Tuple

from .text import normalize

__all__ = ["Score", "UttResult", "score", "score_pairs", "alignment_text", "length_bucket", "group_scores",
           "GROUP_FIELDS"]

#: manifest fields a report is broken down by (when they take at least two values); "length" is the
#: reference length in words (buckets of ``length_bucket``, per set when there are several sets);
#: "noise" is the added noise kind of sets made by tools/noisy_manifest.py
GROUP_FIELDS = ("set", "voice", "engine", "speaker", "noise", "length")


@dataclass
class Score:
    """Edit operations of hypotheses against references; adds up with ``+``.

    Rates are fractions (``wer == 0.5``); :meth:`to_dict` reports them in percent.
    """

    utterances: int = 0
    ref_words: int = 0
    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_chars: int = 0
    char_errors: int = 0  # character substitutions + deletions + insertions
    empty_refs: int = 0  # utterances whose normalised reference is empty

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / max(self.ref_words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.ref_chars, 1)

    def __add__(self, other: "Score") -> "Score":
        return Score(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Score)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["wer"] = round(100 * self.wer, 2)
        d["cer"] = round(100 * self.cer, 2)
        return d


def _counts_from_alignment(chunks) -> Tuple[int, int, int, int]:
    """jiwer alignment chunks -> (hits, substitutions, deletions, insertions)."""
    h = s = d = i = 0
    for c in chunks:
        n_ref, n_hyp = c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx
        if c.type == "equal":
            h += n_ref
        elif c.type == "substitute":
            s += n_ref
        elif c.type == "delete":
            d += n_ref
        elif c.type == "insert":
            i += n_hyp
    return h, s, d, i


def score_pairs(refs: Sequence[str], hyps: Sequence[str], normalise: bool = True) -> List[Score]:
    """Per-utterance :class:`Score` of each (reference, hypothesis) pair.

    ``normalise``: pass both through :func:`asr.text.normalize` first (the default;
    switch it off only for text that is already normalised).
    """
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if normalise:
        refs = [normalize(r) for r in refs]
        hyps = [normalize(h) for h in hyps]
    else:
        refs = [" ".join(r.split()) for r in refs]
        hyps = [" ".join(h.split()) for h in hyps]
    out = [Score(utterances=1) for _ in refs]
    # empty references are scored here, not by jiwer (jiwer 3 rejects them)
    idx = [k for k, r in enumerate(refs) if r]
    for k, (r, h) in enumerate(zip(refs, hyps)):
        if not r:
            out[k].empty_refs = 1
            out[k].insertions = len(h.split())
            out[k].char_errors = len(h)
    if idx:
        R, H = [refs[k] for k in idx], [hyps[k] for k in idx]
        words = jiwer.process_words(R, H)
        chars = jiwer.process_characters(R, H)
        for k, wa, ca in zip(idx, words.alignments, chars.alignments):
            sc = out[k]
            sc.hits, sc.substitutions, sc.deletions, sc.insertions = _counts_from_alignment(wa)
            sc.ref_words = len(refs[k].split())
            sc.ref_chars = len(refs[k])
            sc.char_errors = sum(_counts_from_alignment(ca)[1:])
    return out


def score(refs: Sequence[str], hyps: Sequence[str], normalise: bool = True) -> Score:
    """Corpus score: ``score(["a b c d"], ["a x c"]).wer == 0.5`` (1 substitution + 1 deletion)."""
    return sum(score_pairs(refs, hyps, normalise), Score())


def alignment_text(ref: str, hyp: str) -> str:
    """jiwer's word alignment (REF / HYP / S D I markers) of one normalised pair."""
    import jiwer

    if not ref and not hyp:
        return "REF: \nHYP: "
    try:
        out = jiwer.process_words([ref], [hyp])
        try:
            vis = jiwer.visualize_alignment(out, show_measures=False, skip_correct=False, line_width=100)
        except TypeError:  # jiwer 3: no line_width
            vis = jiwer.visualize_alignment(out, show_measures=False, skip_correct=False)
    except ValueError:  # jiwer 3 refuses an empty reference
        return f"REF: {'*' * max(len(hyp), 1)}\nHYP: {hyp}"
    lines = [ln for ln in vis.splitlines() if not ln.startswith("=== SENTENCE")]
    # wrapped blocks, minus the empty ones jiwer leaves before a word longer than a line
    blocks = "\n".join(lines).split("\n\n")
    blocks = [b.strip("\n") for b in blocks if any(ln.strip() not in ("", "REF:", "HYP:") for ln in b.splitlines())]
    return "\n\n".join(blocks).rstrip()


# ---------------------------------------------------------------------------- breakdowns
@dataclass
class UttResult:
    id: str
    set: str
    audio: str
    duration: float  # seconds of audio decoded
    ref: str  # normalised reference
    hyp: str  # normalised hypothesis
    score: Score
    fields: dict = field(default_factory=dict)  # other manifest fields (voice, engine, speaker, ...)
    words: list = field(default_factory=list)  # hypothesis words with times and confidences

    def to_dict(self) -> dict:
        s = self.score
        return {
            "id": self.id, "set": self.set, "audio": self.audio, "duration": round(self.duration, 3),
            "ref": self.ref, "hyp": self.hyp, "wer": round(100 * s.wer, 2), "cer": round(100 * s.cer, 2),
            "ref_words": s.ref_words, "substitutions": s.substitutions, "deletions": s.deletions,
            "insertions": s.insertions, "ref_chars": s.ref_chars, "char_errors": s.char_errors,
            **self.fields, "words": self.words,
        }


def length_bucket(words: int) -> str:
    """Reference-length bucket: "1 word", "2 words", "3-5 words", "6+ words" ("0 words" for empty)."""
    if words <= 2:
        return f"{words} word" + ("" if words == 1 else "s")
    return "3-5 words" if words <= 5 else "6+ words"


def _group_value(u: UttResult, key: str, several_sets: bool) -> str:
    if key == "set":
        return str(u.set)
    if key == "length":  # isolated words behave unlike sentences (no context, CTC insertions)
        b = length_bucket(u.score.ref_words)
        return f"{u.set}: {b}" if several_sets else b
    return str(u.fields.get(key, "(none)"))


def group_scores(utts: Sequence[UttResult], keys: Iterable[str] = GROUP_FIELDS) -> Dict[str, Dict[str, Score]]:
    """Scores per value of each field in ``keys`` that takes at least two values."""
    out: Dict[str, Dict[str, Score]] = {}
    several_sets = len({u.set for u in utts}) > 1
    for key in keys:
        vals = [_group_value(u, key, several_sets) for u in utts]
        if len(set(vals)) < 2:
            continue
        g: Dict[str, Score] = {}
        for v, u in zip(vals, utts):
            g[v] = g.get(v, Score()) + u.score
        out[key] = dict(sorted(g.items()))
    return out
