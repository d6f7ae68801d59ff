#!/usr/bin/env python3
"""General-English word 3-gram LM for the beam decoder, from openly licensed offline text.

Usage:
    python3 recipes/lm/prepare.py --gutenberg BOOKS_DIR [BOOK ...] --exclude EVAL.jsonl [EVAL.txt ...] \\
        [--debian] [--gcide] [--data-dir /work/data/lm] [--vocab-size 64000] [--prune 0 1 1] \\
        [--stage 1] [--stop-stage 3]

Sources (see README.md for how to get them and their licences):

    --gutenberg  GITenberg repositories (Project Gutenberg books, public domain in the US): clones
                 or bare git directories, or folders of them (``git clone --depth 1
                 https://github.com/GITenberg/Pride-and-Prejudice_1342``)
    --debian     the Debian packages ``fortunes`` (BSD) and ``wordnet-base`` (WordNet 3.0 licence):
                 the same sentence extraction as recipes/synth stage 1
    --gcide      ``dict-gcide`` (GPL): Webster's 1913 definitions; off by default (licence)

Stages (each writes ``<data-dir>/.done/stageN``; delete it to redo the stage):

    1  text: every source -> normalised sentences (``asr.text.normalize``, as in training),
       one file per source under ``<data-dir>/text/`` + ``sources.json`` (books, sentences, words)
    2  filter: drop every sentence that occurs verbatim (after normalisation) in an --exclude file
       (evaluation manifests or text pools) -> ``text/lm_text.txt`` + ``overlap.json``: per
       evaluation file, how many of its sentences occurred in the LM text before filtering
    3  LM: ``asr.lm.build_arpa`` (interpolated Kneser-Ney) with the vocabulary cut and count
       pruning -> ``general_3gram.arpa.gz`` + ``general_3gram.json`` (sizes, n-gram counts, OOV)

Evaluation text never enters the LM: pass every evaluation and dev set as --exclude.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import sys
import time
from collections import Counter

if __package__ in (None, ""):  # run as a script: `asr` and `recipes` from this checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from asr.lm import build_arpa, read_sentences  # noqa: E402
from asr.text import normalize  # noqa: E402
from recipes.lm import gutenberg  # noqa: E402

GCIDE = "/usr/share/dictd/gcide.dict.dz"
LM_NAME = "general_3gram"


def log(msg: str) -> None:
    print(f"[lm {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _normalize(s: str) -> str:
    try:
        return normalize(s)
    except IndexError:  # asr.text.normalize fails on grouped numbers of a quadrillion and more: skip
        return ""


def _write_sents(path: str, sents) -> tuple:
    n = w = 0
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for s in sents:
            s = _normalize(s)
            if s:
                f.write(s + "\n")
                n += 1
                w += s.count(" ") + 1
    os.replace(path + ".tmp", path)
    return n, w


def debian_sentences():
    """(source, raw sentence) from fortunes and WordNet, split as recipes/synth stage 1 does."""
    from recipes.synth.textpool import collect_sentences

    return collect_sentences()


def gcide_sentences(path: str = GCIDE):
    """Definition text of dict-gcide's Webster 1913 entries (headword lines and tags dropped)."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.splitlines()[1:] if not ln.strip().startswith("[")]
        body = re.sub(r"\[[^\]]*\]|--\w+\.?|<[^>]+>", " ", " ".join(lines))
        yield from (s for s in gutenberg.sentences(body) if len(s.split()) >= 3)


def stage1_text(args) -> None:
    tdir = os.path.join(args.data_dir, "text")
    os.makedirs(os.path.join(tdir, "gutenberg"), exist_ok=True)
    stats = {"gutenberg": {}, "skipped_books": {}}
    for book in gutenberg.find_books(args.gutenberg or []):
        bid = gutenberg.book_id(book)
        try:
            name, text = gutenberg.read_book(book)
        except (ValueError, OSError) as e:
            stats["skipped_books"][bid] = str(e)
            continue
        body = gutenberg.strip_boilerplate(text)
        if body is None:
            stats["skipped_books"][bid] = f"{name}: no Project Gutenberg start/end markers"
            continue
        n, w = _write_sents(os.path.join(tdir, "gutenberg", bid + ".txt"), gutenberg.sentences(body))
        stats["gutenberg"][bid] = {"file": name, "sentences": n, "words": w}
    if args.debian:
        by_src = {}
        for src, s in debian_sentences():
            by_src.setdefault(src, []).append(s)
        for src, sents in sorted(by_src.items()):
            n, w = _write_sents(os.path.join(tdir, f"{src}.txt"), sents)
            stats[src] = {"sentences": n, "words": w}
    if args.gcide:
        n, w = _write_sents(os.path.join(tdir, "gcide.txt"), gcide_sentences())
        stats["gcide"] = {"sentences": n, "words": w}
    books = stats["gutenberg"].values()
    stats["gutenberg_total"] = {"books": len(books), "sentences": sum(b["sentences"] for b in books),
                                "words": sum(b["words"] for b in books)}
    with open(os.path.join(args.data_dir, "sources.json"), "w") as f:
        json.dump(stats, f, indent=1)
    log(f"stage 1: {stats['gutenberg_total']}; skipped books: {len(stats['skipped_books'])}; "
        + "; ".join(f"{k} {v}" for k, v in stats.items() if k in ("fortunes", "wordnet", "gcide")))


def source_files(data_dir: str) -> list:
    tdir = os.path.join(data_dir, "text")
    return sorted(glob.glob(os.path.join(tdir, "gutenberg", "*.txt"))) + sorted(
        p for p in glob.glob(os.path.join(tdir, "*.txt")) if os.path.basename(p) != "lm_text.txt")


def stage2_filter(args) -> None:
    """Drop sentences found in evaluation text; report how many eval sentences were there."""
    evals = {p: set(read_sentences([p])) for p in args.exclude}
    banned = set().union(*evals.values())
    counts, by_source = Counter(), {}
    out = os.path.join(args.data_dir, "text", "lm_text.txt")
    kept = dropped = 0
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for path in source_files(args.data_dir):
            src = "gutenberg" if os.path.basename(os.path.dirname(path)) == "gutenberg" else \
                os.path.splitext(os.path.basename(path))[0]
            with open(path, encoding="utf-8") as g:
                for s in g:
                    s = s.rstrip("\n")
                    if s in banned:
                        counts[s] += 1
                        by_source.setdefault(s, set()).add(src)
                        dropped += 1
                    else:
                        f.write(s + "\n")
                        kept += 1
    os.replace(out + ".tmp", out)
    report = {"lm_sentences_kept": kept, "lm_sentences_dropped": dropped, "eval": {}}
    for p, sents in evals.items():
        hit = sorted(s for s in sents if s in counts)
        per_src = Counter(src for h in hit for src in by_source[h])
        report["eval"][p] = {"distinct_sentences": len(sents), "found_in_lm_text": len(hit),
                             "found_per_source": dict(sorted(per_src.items())), "examples": hit[:10]}
    with open(os.path.join(args.data_dir, "overlap.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(f"stage 2: kept {kept:,} sentences, dropped {dropped:,} found in evaluation text; per set: "
        + "; ".join(f"{os.path.basename(p)} {v['found_in_lm_text']}/{v['distinct_sentences']}"
                    for p, v in report["eval"].items()))


def stage3_lm(args) -> None:
    text = os.path.join(args.data_dir, "text", "lm_text.txt")
    out = os.path.join(args.data_dir, LM_NAME + ".arpa.gz")
    with open(text, encoding="utf-8") as f:
        sents = [ln.rstrip("\n") for ln in f if ln.strip()]
    t0 = time.time()
    st = build_arpa(sents, out, order=args.order, vocab_size=args.vocab_size, prune=args.prune)
    info = {"file": out, "bytes": os.path.getsize(out), "order": st.order, "sentences": st.sentences,
            "words": st.words, "vocab": st.vocab, "oov_rate_on_lm_text": round(st.oov_rate, 5),
            "ngrams": st.ngrams, "pruned": st.pruned, "discounts": st.discounts,
            "vocab_size": args.vocab_size, "prune": args.prune, "build_seconds": round(time.time() - t0, 1)}
    with open(os.path.join(args.data_dir, LM_NAME + ".json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"stage 3: {out} ({info['bytes'] / 1e6:.1f} MB): vocabulary {st.vocab:,}, n-grams "
        f"{', '.join(f'{c:,}' for c in st.ngrams)}, OOV on its own text {100 * st.oov_rate:.2f} %")


STAGES = {1: stage1_text, 2: stage2_filter, 3: stage3_lm}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gutenberg", nargs="*", metavar="DIR", help="GITenberg clones / git dirs, or folders of them")
    ap.add_argument("--debian", action="store_true", help="add fortunes and WordNet examples (Debian packages)")
    ap.add_argument("--gcide", action="store_true", help="add dict-gcide definitions (GPL; off by default)")
    ap.add_argument("--exclude", nargs="+", required=True, metavar="FILE",
                    help="evaluation manifests (.jsonl) or text files whose sentences must not be in the LM")
    ap.add_argument("--data-dir", required=True, help="output folder (text/, overlap.json, the LM)")
    ap.add_argument("--order", type=int, default=3, help="n-gram order (default: %(default)s)")
    ap.add_argument("--vocab-size", type=int, default=64000, help="words kept, most frequent first (default: %(default)s)")
    ap.add_argument("--prune", type=int, nargs="+", default=[0, 1, 1],
                    help="count thresholds per order, as lmplz --prune (default: %(default)s)")
    ap.add_argument("--stage", type=int, default=1)
    ap.add_argument("--stop-stage", type=int, default=3)
    args = ap.parse_args(argv)
    if not (args.gutenberg or args.debian or args.gcide) and args.stage <= 1:
        ap.error("no text source: give --gutenberg DIR..., --debian and/or --gcide")
    done = os.path.join(args.data_dir, ".done")
    os.makedirs(done, exist_ok=True)
    for n in range(args.stage, args.stop_stage + 1):
        marker = os.path.join(done, f"stage{n}")
        if os.path.exists(marker):
            log(f"stage {n}: done before, skipped")
            continue
        try:
            STAGES[n](args)
        except (ValueError, OSError) as e:
            print(f"recipes/lm: error: {e}", file=sys.stderr)
            return 1
        open(marker, "w").close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
