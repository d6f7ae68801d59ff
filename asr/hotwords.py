"""Hotwords: words or phrases the decoder should prefer (contextual biasing, as sherpa-onnx's hotwords).

Each phrase is spelled with the model's own tokenizer; the spellings form a :class:`ContextGraph`, a
token trie with Aho-Corasick failure links. A hypothesis of :class:`asr.prefixbeam.PrefixBeamDecoder`
carries a state in this graph: every token that extends a partial match of a phrase earns the phrase's
``boost`` (nats per token), so the search keeps the phrase alive while it is being spoken. When the
match breaks (the next token leaves the phrase) or the segment ends in the middle of a phrase, the bonus
earned so far is withdrawn; a completed phrase keeps its bonus. The words need not be in any language
model: the search works on the model's tokens.

Phrases are given as ``"phrase"`` (the default boost) or ``"phrase:boost"`` on the command line
(``asr transcribe --hotwords "kaldi,new york:3"`` or a file with one per line), and as strings or
``{"phrase": ..., "boost": ...}`` objects in JSON (the server's ``hotwords`` start option).
"""

from __future__ import annotations

import math
import os
from collections import deque
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .argtypes import parser_type
from .text import normalize

__all__ = ["DEFAULT_BOOST", "LM_DEFAULT_BOOST", "MAX_BOOST", "MAX_HOTWORDS", "Hotword", "parse_hotwords", "parse_hotwords_text",
           "hotwords_argument", "add_hotwords_argument", "check_hotwords_arguments", "ContextGraph", "ContextState"]

# The boost of a hotword given without one (nats per matched token; sherpa-onnx uses 1.5) is the decoder's:
# - the LM-free prefix beam search (asr.prefixbeam): 2. With the bundled model on 40 held-out TTS files, each
#   file's longest word in one 40-word list: that word recognised in 2/40 files greedy, 19/40 with 2.0; larger
#   boosts add insertions (recipes/vocab/README.md). A short common word ("the") boosted this much is inserted
#   where it was not said: boost rare words.
# - inside the word LM's beam search (asr.lmhotwords): 4, chosen by recipes/vocab on its names_dev half (the
#   lowest WER among the boosts with no harm on the words that are not names, on held-out TTS and on real
#   speech); larger boosts delete words after a name.
DEFAULT_BOOST = 2.0
LM_DEFAULT_BOOST = 4.0
MAX_BOOST = 20.0  # larger boosts only force the phrase whatever was said
MAX_HOTWORDS = 1000  # phrases per list (bounds the graph a client can make the server build)
Hotword = Tuple[str, Optional[float]]  # (normalised phrase, boost in nats per token; None: the decoder's default)


def _boost(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= MAX_BOOST:
        raise ValueError(f"{where}: boost must be a number in (0, {MAX_BOOST:g}], got {v!r}")
    return float(v)


def parse_hotwords(items, default_boost: Optional[float] = None) -> Tuple[Hotword, ...]:
    """A list of strings, ``{"phrase": str, "boost": number}`` objects or ``(phrase, boost)`` tuples -> normalised
    ``(phrase, boost)`` pairs, duplicates merged (the last boost wins), order kept; a phrase without a boost
    gets ``default_boost`` (None: the decoder's default, :data:`DEFAULT_BOOST` or :data:`LM_DEFAULT_BOOST`).
    ValueError with a one-line reason for anything else."""
    if default_boost is not None:
        default_boost = _boost(default_boost, "default")
    if isinstance(items, str) or not isinstance(items, (list, tuple)):
        raise ValueError(f"hotwords must be a list of phrases, got {type(items).__name__}")
    if len(items) > MAX_HOTWORDS:
        raise ValueError(f"at most {MAX_HOTWORDS} hotwords, got {len(items)}")
    out: Dict[str, Optional[float]] = {}
    for it in items:
        if isinstance(it, dict):
            unknown = set(it) - {"phrase", "boost"}
            if unknown or not isinstance(it.get("phrase"), str):
                raise ValueError(f'a hotword object is {{"phrase": string, "boost": number}}, got {it!r}')
            phrase, boost = it["phrase"], it.get("boost", default_boost)
            boost = None if boost is None and "boost" not in it else _boost(boost, repr(phrase))
        elif isinstance(it, str):
            phrase, boost = it, default_boost
        elif isinstance(it, tuple) and len(it) == 2 and isinstance(it[0], str):  # Python API: (phrase, boost)
            phrase, boost = it[0], None if it[1] is None else _boost(it[1], repr(it[0]))  # None: parsed, no boost
        else:
            raise ValueError(f"a hotword is a string or an object, got {it!r}")
        n = normalize(phrase)
        if not n:
            raise ValueError(f"hotword {phrase!r} has no words")
        out[n] = boost
    if not out:
        raise ValueError("the hotword list is empty")
    return tuple(out.items())


def parse_hotwords_text(text: str, default_boost: Optional[float] = None) -> Tuple[Hotword, ...]:
    """``--hotwords``: a file with one phrase per line, or comma-separated phrases; each ``phrase`` or
    ``phrase:boost`` -> :func:`parse_hotwords`' pairs."""
    text = text.strip()
    if os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as f:
                entries = [ln for ln in f.read().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read hotwords file {text}: {e}") from None
    else:
        entries = [e for e in text.split(",") if e.strip()]
    items: List[object] = []
    for e in entries:
        phrase, sep, boost = e.rpartition(":")
        if not sep:
            items.append(e)
            continue
        try:
            items.append({"phrase": phrase, "boost": float(boost)})
        except ValueError:
            raise ValueError(f"hotword {e.strip()!r}: the part after ':' must be a boost (a number)") from None
    return parse_hotwords(items, default_boost)


hotwords_argument = parser_type(parse_hotwords_text, "hotwords")  # argparse type of ``--hotwords``


def add_hotwords_argument(p) -> None:
    """``--hotwords`` for ``asr transcribe``."""
    p.add_argument("--hotwords", type=hotwords_argument, metavar="PHRASES",
                   help="prefer these words or phrases: comma-separated or a file with one per line, each PHRASE or "
                        "PHRASE:BOOST (nats per token). With a word LM (the model's bundled one by default, or "
                        "--decoder beam --lm) they join its beam search, words the LM does not know included (default "
                        f"boost {LM_DEFAULT_BOOST:g}); with --decoder greedy or a model without an LM, a prefix beam "
                        f"search without LM (default boost {DEFAULT_BOOST:g}). Not with --grammar")


def check_hotwords_arguments(args) -> None:
    if not getattr(args, "hotwords", None):
        return
    if getattr(args, "grammar", None):
        raise ValueError("--hotwords and --grammar cannot be combined: the grammar already allows only its phrases")
    if args.decoder == "beam" and not args.lm:
        raise ValueError("--hotwords with --decoder beam needs --lm (or --decoder greedy: a prefix beam search "
                         "with the hotwords, no LM)")


class ContextState:
    """A node of the :class:`ContextGraph`: a prefix of one or more phrases' spellings."""

    __slots__ = ("children", "fail", "score", "keep", "end")

    def __init__(self, score: float = 0.0):
        self.children: Dict[int, "ContextState"] = {}
        self.fail: Optional["ContextState"] = None
        self.score = score  # bonus earned by matching this prefix (sum of the per-token boosts)
        self.keep = 0.0  # bonus that stays if the match breaks here: the longest completed phrase's
        self.end = False  # a whole phrase ends here


class ContextGraph:
    """Token trie of the hotwords' spellings with failure links (Aho-Corasick).

    ``spellings``: ``(ids, boost)`` per phrase, ``boost`` earned per id, or one boost per id (a sequence).
    The ids are the model's tokens (:class:`asr.prefixbeam.PrefixBeamDecoder`) or a lexicon's words
    (:mod:`asr.lmhotwords`). :meth:`step` moves a hypothesis's state by one id and returns the change of
    its bonus; :meth:`pending` is the bonus a hypothesis would lose if its segment ended now.
    """

    def __init__(self, spellings: Sequence[Tuple[Sequence[int], Union[float, Sequence[float]]]]):
        self.root = ContextState()
        for ids, boost in spellings:
            node = self.root
            boosts = [boost] * len(ids) if isinstance(boost, (int, float)) else boost
            for i, b in zip(ids, boosts):
                if i not in node.children:
                    node.children[i] = ContextState(node.score + b)
                node = node.children[i]
            node.end = True
        self._link()

    def _link(self) -> None:
        """Breadth-first: failure links (longest proper suffix that is a trie prefix) and ``keep``."""
        self.root.fail = self.root
        todo = deque()
        for child in self.root.children.values():
            child.fail = self.root
            child.keep = child.score if child.end else 0.0
            todo.append(child)
        while todo:
            node = todo.popleft()
            for tok, child in node.children.items():
                f = node.fail
                while f is not self.root and tok not in f.children:
                    f = f.fail
                child.fail = f.children[tok] if tok in f.children and f.children[tok] is not child else self.root
                child.keep = child.score if child.end else node.keep
                todo.append(child)

    def step(self, state: ContextState, token: int) -> Tuple[ContextState, float]:
        """``state`` extended by ``token`` -> (new state, bonus change in nats)."""
        child = state.children.get(token)
        if child is not None:
            if child.end and not child.children:  # a whole phrase and nothing longer: bonus locked in
                return self.root, child.score - state.score
            return child, child.score - state.score
        node = state.fail
        while node is not self.root and token not in node.children:
            node = node.fail
        new = node.children.get(token, self.root) if state is not self.root else self.root
        # the unfinished part of the broken match is withdrawn; a suffix of it that starts
        # another phrase is earned again by the new state
        delta = new.score - (state.score - state.keep)
        if new.end and not new.children:
            return self.root, delta
        return new, delta

    @staticmethod
    def pending(state: ContextState) -> float:
        """Bonus of an unfinished match, withdrawn when the segment ends in it."""
        return state.score - state.keep
