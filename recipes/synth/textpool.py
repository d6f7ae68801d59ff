"""Text of the synthetic speech recipe: sentence pools (stage 1) and short items (stage 9).

Sentences come from the offline fortunes and WordNet glosses, are normalised with
:func:`asr.text.normalize`, de-duplicated and split into disjoint train/dev/test pools written as
``text/{split}.txt`` (normalised references) and ``text/{split}.speak.txt`` (what the engines read).
"""

from __future__ import annotations

import glob
import json
import os
import random
import re

from asr.text import is_clean, normalize
from recipes.synth.common import log, write_lines

FORTUNE_DIR = "/usr/share/games/fortunes"
FORTUNE_SKIP = {"art", "ascii-art"}
WORDNET_GLOB = "/usr/share/wordnet/data.*"

_RE_ATTRIBUTION = re.compile(r"^\s*(--|―|—)")
_RE_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
_RE_BAD_CHARS = re.compile(r"[|_<>{}*/\\^~=#@\[\]]|https?:|\.\.\.\.|::")
RE_ABBREV = re.compile(r"\b(?:mr|mrs|ms|dr|st|jr|sr|vs|etc|prof|gen|col|capt|lt|sgt|rev|inc|ltd|co|"
                       r"no|vol|fig|ft|mt|adj|adv|pp|e\.g|i\.e|a\.m|p\.m)\.|\b[A-Za-z]\.[A-Za-z]\.", re.IGNORECASE)
_RE_ALLCAPS = re.compile(r"\b[A-Z]{2,}\b")
_RE_WS = re.compile(r"\s+")
MIN_WORDS, MAX_WORDS = 3, 25


def fortune_entries(text: str) -> list[str]:
    """Split a fortune file into entries, drop attribution lines, join lines."""
    entries = []
    for block in re.split(r"^%\s*$", text, flags=re.M):
        lines = [ln for ln in block.splitlines() if ln.strip() and not _RE_ATTRIBUTION.match(ln)]
        if lines:
            entries.append(_RE_WS.sub(" ", " ".join(ln.strip() for ln in lines)).strip())
    return entries


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _RE_SENT_SPLIT.split(text) if s.strip()]


def wordnet_examples(line: str) -> list[str]:
    """Quoted example phrases from the gloss of one WordNet data line."""
    if line.startswith("  ") or "|" not in line:
        return []
    gloss = line.split("|", 1)[1]
    return [m.strip() for m in re.findall(r'"([^"]+)"', gloss)]


def make_item(raw: str) -> tuple[str, str] | None:
    """Return (normalised reference, text to speak) or None if the sentence is unusable.

    The engines read the original text when it needs no spelling-out (``is_clean``),
    so punctuation still shapes the prosody; otherwise they read the normalised text,
    which guarantees audio and reference agree (numbers, symbols, capitals)."""
    raw = _RE_WS.sub(" ", raw).strip()
    if not raw or _RE_BAD_CHARS.search(raw) or RE_ABBREV.search(raw):
        return None
    letters = sum(c.isalpha() for c in raw)
    if letters < 0.7 * len(raw.replace(" ", "")):
        return None
    norm = normalize(raw)
    n = len(norm.split())
    if not (MIN_WORDS <= n <= MAX_WORDS):
        return None
    speak = raw if is_clean(raw) and not _RE_ALLCAPS.search(raw) else norm
    return norm, speak


def collect_sentences() -> list[tuple[str, str]]:
    """(source, raw sentence) candidates from the offline text sources."""
    out = []
    for path in sorted(glob.glob(os.path.join(FORTUNE_DIR, "*"))):
        base = os.path.basename(path)
        if not os.path.isfile(path) or "." in base or base in FORTUNE_SKIP:
            continue
        with open(path, encoding="utf-8", errors="ignore") as f:
            for entry in fortune_entries(f.read()):
                out += [("fortunes", s) for s in split_sentences(entry)]
    for path in sorted(glob.glob(WORDNET_GLOB)):
        with open(path, encoding="utf-8", errors="ignore") as f:
            for line in f:
                out += [("wordnet", s) for s in wordnet_examples(line)]
    return out


def split_pools(items: list, seed: int, dev_frac: float = 0.01, test_frac: float = 0.03):
    """De-duplicate on normalised text (item[0]), shuffle with ``seed``, split train/dev/test.

    Returns a dict split -> list of items; the three pools share no normalised text."""
    seen, uniq = set(), []
    for it in items:
        if it[0] and it[0] not in seen:
            seen.add(it[0])
            uniq.append(it)
    uniq.sort(key=lambda it: it[0])  # independent of input order
    random.Random(seed).shuffle(uniq)
    n_dev = max(1, int(round(len(uniq) * dev_frac)))
    n_test = max(1, int(round(len(uniq) * test_frac)))
    return {"dev": uniq[:n_dev], "test": uniq[n_dev:n_dev + n_test], "train": uniq[n_dev + n_test:]}


def write_text_pools(data_dir: str, seed: int) -> dict:
    """Stage 1: the usable sentences of every source, split into pools under ``data_dir/text``;
    returns the statistics also written to ``text/stats.json``."""
    cands = collect_sentences()
    items, per_source = [], {}
    for source, raw in cands:
        it = make_item(raw)
        if it:
            items.append(it)
            per_source[source] = per_source.get(source, 0) + 1
    pools = split_pools(items, seed)
    os.makedirs(os.path.join(data_dir, "text"), exist_ok=True)
    for split, its in pools.items():
        write_lines(os.path.join(data_dir, "text", f"{split}.txt"), [n for n, _ in its])
        write_lines(os.path.join(data_dir, "text", f"{split}.speak.txt"), [s for _, s in its])
    stats = {"candidates": len(cands), "kept_before_dedup": per_source,
             "pools": {k: len(v) for k, v in pools.items()}}
    with open(os.path.join(data_dir, "text", "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    log(f"text: {stats}")
    return stats


def load_pool(data_dir: str, split: str) -> list[tuple[str, str]]:
    """The (normalised text, text to speak) pairs of one pool written by stage 1."""
    with open(os.path.join(data_dir, "text", f"{split}.txt")) as f:
        norm = f.read().splitlines()
    with open(os.path.join(data_dir, "text", f"{split}.speak.txt")) as f:
        speak = f.read().splitlines()
    assert len(norm) == len(speak)
    return list(zip(norm, speak))


def short_pool(sentences: list[str], n_items: int, seed: int, one_word_share: float = 0.65) -> list[tuple[str, str]]:
    """Isolated words and two-word phrases cut from the *training* sentences (no dev/test text).

    Single words are drawn uniformly from the training vocabulary (types seen at least twice,
    two letters or more), so content words dominate rather than "the"; two-word phrases are
    consecutive word pairs of a random training sentence. Returns ``n_items`` (text, text) pairs:
    the normalised text is also what the engines read.
    """
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for s in sentences:
        for w in s.split():
            counts[w] = counts.get(w, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= 2 and len(w.replace("'", "")) >= 2)
    multi = [s.split() for s in sentences if len(s.split()) >= 2]
    if not words or not multi:
        raise ValueError("short_pool: no training text to cut words from")
    out = []
    for _ in range(n_items):
        if rng.random() < one_word_share:
            text = rng.choice(words)
        else:
            ws = rng.choice(multi)
            k = rng.randrange(len(ws) - 1)
            text = f"{ws[k]} {ws[k + 1]}"
        out.append((text, text))
    return out
