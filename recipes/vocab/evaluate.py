#!/usr/bin/env python3
"""Hotwords and n-best measured with a model: the two measurements of issue 27's runtime vocabulary.

Usage:
    nice -n 5 python3 recipes/vocab/evaluate.py [--data-dir /work/data/vocab] [--model default] \\
        [--other heldout /work/data/synth/test_heldout.jsonl 4] [--other dev_real /work/data/realwords/dev_real.jsonl 5] \\
        [--other heldout_dev /work/data/synth/test_heldout.jsonl 4:2] [--tune-on heldout_dev dev_real] \\
        [--boosts 1 2 3 4 6] [--prefix-boost 1.5] [--nbest 5 10] [--wide-beam 32] [--out /work/data/vocab/results] \\
        [--stage 1] [--stop-stage 3]

Sets: ``names_dev`` / ``names_test`` from ``recipes/vocab/prepare.py``, and each ``--other NAME MANIFEST EVERY``
(every EVERY-th utterance of an unrelated set). The hotword list is the whole ``hotwords.txt`` (every name
of the names set: a user's contact list), the same on every set.

Stages:

    1  log-probs: each set through the model once, as ``rec.stream(sr, keep_log_probs=True)`` fed the whole
       file and finished (tail padding included); the log-probs and the greedy text cached in
       ``<data-dir>/logprobs/SET.pt`` (reused while the model file and the set are the same)
    2  hotwords: the boost tuned on ``names_dev`` (the WER-best of --boosts among those that do no harm: WER
       on its words that are not boosted and on each --tune-on set not above the WER without hotwords) for what
       ``rec.stream(sr, hotwords=[...])`` decodes with (the model's default decoder, beam + bundled LM, with
       the hotwords in its lexicon and LM; a model without an LM: prefix beam search), then on
       ``names_test`` and the other sets: WER, WER on the words that are not boosted, boosted-word recall,
       false alarms and decoding CPU time for greedy, the default decoder without and with the hotwords,
       and the LM-free prefix beam search without and with them (at --prefix-boost); and the cost of
       building a request's lexicon for 100 hotwords -> ``<out>/hotwords.{json,md}``
    3  n-best: prefix beam search with the largest --nbest (``rec.stream(sr, nbest=N)``'s decoder; a
       smaller N is the first N alternatives of the same list) on ``names_test`` and the other sets:
       top-1 vs oracle WER, how often the reference is the top alternative vs among them
       -> ``<out>/nbest.{json,md}``

Each decoder runs over the cached log-probs of a whole utterance: what ``rec.transcribe`` and a stream
without endpointing decode (tests/test_vocab_recipe.py checks the equality on a small model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Optional

if __package__ in (None, ""):  # run as a script: `asr` and `recipes` from this checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from asr.audio import read_audio  # noqa: E402
from asr.checkpoint import available_models, load_model  # noqa: E402
from asr.hotwords import DEFAULT_BOOST, LM_DEFAULT_BOOST, parse_hotwords  # noqa: E402
from asr.jsonl import read_jsonl, write_jsonl  # noqa: E402
from asr.prefixbeam import PrefixBeamDecoder, PrefixBeamOptions  # noqa: E402
from asr.scoring import score  # noqa: E402
from asr.stream import feed_chunks  # noqa: E402
from asr.vocab import vocabulary_decoder  # noqa: E402
from recipes.vocab.metrics import boosted_words, nbest_stats, other_words_wer, word_recall  # noqa: E402

NAMES_SETS = ("names_dev", "names_test")


def log(msg: str) -> None:
    print(f"[vocab-eval {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- sets
def load_sets(args) -> dict:
    """Set name -> (manifest path, every) for the names halves and each ``--other`` (``every``: N, or
    ``(N, OFFSET)`` for ``N:OFFSET``)."""
    sets = {s: (os.path.join(args.data_dir, f"{s}.jsonl"), 1) for s in NAMES_SETS}
    for name, path, every in args.other or []:
        if name in sets:
            raise SystemExit(f"--other {name}: the name is taken")
        n, _, offset = every.partition(":")
        sets[name] = (path, (int(n), int(offset)) if offset and int(offset) else int(n))
    for name in args.tune_on or []:
        if name not in sets or name in NAMES_SETS:
            raise SystemExit(f"--tune-on {name}: not an --other set")
    return sets


def read_set(path: str, every) -> list:
    """Every ``every``-th record of a manifest (``(every, offset)``: from record ``offset`` on)."""
    n, offset = every if isinstance(every, (list, tuple)) else (every, 0)
    return read_jsonl(path)[offset::n]


def _model_key(args, rec) -> str:
    """The model file's path, size and time: cached log-probs of another model are not reused."""
    path = available_models().get(str(args.model), args.model)
    if not os.path.exists(path):  # a Recognizer given to main(): its weights
        return hashlib.sha1(b"".join(v.numpy().tobytes() for v in rec.model.state_dict().values())).hexdigest()
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}:{rec.name}"


def utterance_log_probs(rec, audio: str) -> tuple:
    """``(steps, vocab)`` log-probs of one file as a finished stream computes them, and the greedy text."""
    samples, sr = read_audio(audio)
    st = feed_chunks(rec.stream(sr, keep_log_probs=True, final_decoder="greedy"), samples)
    st.finish()
    return st.all_log_probs().clone(), st.full_result().text


def set_log_probs(rec, name: str, path: str, every: int, cache_dir: str, model_key: str) -> dict:
    """``{"refs", "greedy", "lps", "records"}`` of one set, from the cache when it is still valid."""
    recs = read_set(path, every)
    key = hashlib.sha1(json.dumps([model_key, os.path.abspath(path), every, [r["audio"] for r in recs]])
                       .encode()).hexdigest()
    cache = os.path.join(cache_dir, f"{name}.pt")
    if os.path.exists(cache):
        d = torch.load(cache, weights_only=True)
        if d.get("key") == key:
            return {**d, "records": recs}
    t0, lps, greedy = time.time(), [], []
    for r in recs:
        lp, text = utterance_log_probs(rec, r["audio"])
        lps.append(lp)
        greedy.append(text)
    audio_s = sum(r.get("duration", 0.0) for r in recs)
    log(f"{name}: {len(recs)} utterances ({audio_s / 60:.1f} min) through the model in {time.time() - t0:.0f} s")
    d = {"key": key, "refs": [r["text"] for r in recs], "greedy": greedy, "lps": lps}
    os.makedirs(cache_dir, exist_ok=True)
    torch.save(d, cache + ".tmp")
    os.replace(cache + ".tmp", cache)
    return {**d, "records": recs}


def stage_log_probs(args, rec) -> dict:
    key = _model_key(args, rec)
    return {name: set_log_probs(rec, name, path, every, os.path.join(args.data_dir, "logprobs"), key)
            for name, (path, every) in load_sets(args).items()}


# ---------------------------------------------------------------------------------------------- decoding
def decode_texts(decoder, lps) -> list:
    return [decoder.decode(lp).text for lp in lps]


def timed_texts(decoder, lps) -> tuple:
    """The texts and the CPU seconds decoding them took."""
    t0 = time.process_time()
    texts = decode_texts(decoder, lps)
    return texts, time.process_time() - t0


def hotword_list(data_dir: str) -> list:
    with open(os.path.join(data_dir, "hotwords.txt"), encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


#: forms of the hotword list: the list as a user gives it (a contact list: "siobhan kowalski", "tallinn"),
#: and each of its words on its own (a partly matched phrase keeps its bonus while the search holds it)
LIST_FORMS = ("phrases", "words")


def list_forms(phrases: list) -> dict:
    return {"phrases": list(phrases), "words": sorted(boosted_words(phrases))}


def hotwords_label(form: str, boost: float, lm: bool = False) -> str:
    return f"{'default' if lm else 'prefix beam'} + hotwords ({form}, boost {boost:g})"


def has_lm(rec) -> bool:
    """Whether the model's default decoder is a beam search with a word LM."""
    return getattr(getattr(rec.default_decoder(), "opts", None), "lm", None) is not None


def api_decoder(rec, entries: list, boost: Optional[float]):
    """What ``rec.stream(sr, hotwords=[(p, boost) for p in entries])`` decodes with (``boost`` None: the phrases
    alone, at the decoder's default boost): hotwords in the default decoder's LM beam search if the model has
    an LM, else the LM-free prefix beam search."""
    hot = list(entries) if boost is None else [(p, boost) for p in entries]
    return vocabulary_decoder(rec, hotwords=hot, default=rec.default_decoder())


def row(set_name: str, decoder: str, refs, hyps, words, cpu_s: float = 0.0, audio_s: float = 0.0) -> dict:
    wr, sc = word_recall(refs, hyps, words), score(refs, hyps)
    other, n_other = other_words_wer(refs, hyps, words)
    return {"set": set_name, "decoder": decoder, "utterances": len(refs), "wer": round(100 * sc.wer, 2),
            "wer_other": round(100 * other / n_other, 2) if n_other else None, "deletions": sc.deletions,
            "insertions": sc.insertions, **wr.to_dict(), "decode_cpu_s": round(cpu_s, 2),
            "rtf": round(cpu_s / audio_s, 4) if audio_s else None}


def _audio_s(d: dict) -> float:
    return sum(r.get("duration", 0.0) for r in d["records"])


def tune_boost(rec, data: dict, tune_on: list, form: str, entries: list, boosts: list, words: set,
               baseline: list) -> tuple:
    """The boost of ``boosts`` for list form ``form``, and the grid: the lowest ``names_dev`` WER (ties: the
    smaller boost) among the boosts that do no harm elsewhere, i.e. whose WER on the words of ``names_dev``
    that are not boosted and whose WER on each set of ``tune_on`` are not above the default decoder's
    without hotwords (``baseline``'s rows; none does no harm: the smallest boost)."""
    grid, lm = [], has_lm(rec)
    for b in boosts:
        dec = api_decoder(rec, entries, b)
        for name in ["names_dev", *tune_on]:
            texts, cpu = timed_texts(dec, data[name]["lps"])
            grid.append({**row(name, hotwords_label(form, b, lm), data[name]["refs"], texts, words, cpu,
                               _audio_s(data[name])), "form": form, "boost": b})
            log(f"{name}: {form}, boost {b:g}: WER {grid[-1]['wer']:.2f} %, other words {grid[-1]['wer_other']}, "
                f"recall {grid[-1]['recall']:.3f} ({cpu:.0f} CPU-s)")
    return choose_boost(baseline + grid, boosts), grid


def choose_boost(grid: list, boosts: list) -> float:
    """:func:`tune_boost`'s rule over its grid rows (``boost`` 0: the rows without hotwords)."""
    base = {g["set"]: g for g in grid if g["boost"] == 0}

    def harmless(b):
        rows = [g for g in grid if g["boost"] == b]
        return all(g["wer"] <= base[g["set"]]["wer"] for g in rows if g["set"] != "names_dev") and \
            all(g["wer_other"] <= base["names_dev"]["wer_other"] for g in rows if g["set"] == "names_dev")

    ok = [g for g in grid if g["set"] == "names_dev" and g["boost"] and harmless(g["boost"])]
    return min(ok, key=lambda g: (g["wer"], g["boost"]))["boost"] if ok else min(boosts)


def hotword_decoders(rec, forms: dict, tuned: dict, prefix_boost: float, wide_beam: int = 0) -> list:
    """(label, decoder): the model's default decoder (if it has an LM) without and with each list form at its
    tuned boost and the phrases at the decoder's default boost; the LM-free prefix beam search without and
    with the phrases at ``prefix_boost``; with ``wide_beam``: prefix beam search of that width without and
    with the phrases at the default boost."""
    default, lm = rec.default_decoder(), has_lm(rec)
    out = [(f"default: {default.describe()}", default)] if default is not None else []
    out += [(hotwords_label(form, tuned[form], lm), api_decoder(rec, forms[form], tuned[form])) for form in forms]
    shipped = LM_DEFAULT_BOOST if lm else DEFAULT_BOOST
    if tuned["phrases"] != shipped:  # the phrases without a boost: the decoder's default
        out.append((hotwords_label("phrases", shipped, lm) + ", the default", api_decoder(rec, forms["phrases"], None)))
    out.append(("prefix beam", PrefixBeamDecoder(rec)))  # the LM-free search, without and with the hotwords
    if lm:
        hot = parse_hotwords([(p, prefix_boost) for p in forms["phrases"]])
        out.append((hotwords_label("phrases", prefix_boost), PrefixBeamDecoder(rec, hot)))
    if wide_beam:  # a diagnostic the API does not offer: is the harm of the boost the beam's pruning?
        opts = PrefixBeamOptions(beam=wide_beam)
        out.append((f"prefix beam {wide_beam}", PrefixBeamDecoder(rec, opts=opts)))
        hot = parse_hotwords([(p, DEFAULT_BOOST) for p in forms["phrases"]])
        out.append((hotwords_label("phrases", DEFAULT_BOOST) + f", beam {wide_beam}", PrefixBeamDecoder(rec, hot, opts=opts)))
    return out


def build_costs(rec, phrases: list) -> dict:
    """CPU seconds to build, with the model's LM: the process's shared lexicon (once) and one request's
    lexicon and trie for its first 100 hotwords (each request with hotwords)."""
    if not has_lm(rec):
        return {}
    base = rec.default_decoder()
    from asr.lmhotwords import HotwordBeamDecoder

    t0 = time.process_time()
    base.lexicon_search()
    shared = time.process_time() - t0
    hot = parse_hotwords(phrases[:100])
    t0 = time.process_time()
    HotwordBeamDecoder(base, hot)._build()
    return {"shared_lexicon_cpu_s": round(shared, 3), "hotwords": len(hot),
            "request_trie_cpu_s": round(time.process_time() - t0, 3)}


def stage_hotwords(args, rec, data: dict) -> dict:
    phrases = hotword_list(args.data_dir)
    words, forms = boosted_words(phrases), list_forms(phrases)
    costs = build_costs(rec, phrases)  # first: the shared lexicon's cost is not hidden in the tuning
    base, grid = rec.default_decoder() or PrefixBeamDecoder(rec), []
    for name in ["names_dev", *args.tune_on]:  # the baselines of the tuning
        texts, cpu = timed_texts(base, data[name]["lps"])
        grid.append({**row(name, "default" if has_lm(rec) else "prefix beam", data[name]["refs"], texts, words, cpu,
                           _audio_s(data[name])), "form": "none", "boost": 0.0})
    tuned, n_base = {}, len(grid)
    for form in LIST_FORMS:
        tuned[form], g = tune_boost(rec, data, args.tune_on, form, forms[form], args.boosts, words, grid[:n_base])
        grid += g
    decoders = hotword_decoders(rec, forms, tuned, args.prefix_boost, args.wide_beam)
    rows, hyps = [], []
    for name, d in data.items():
        if name == "names_dev":
            continue
        rows.append(row(name, "greedy", d["refs"], d["greedy"], words))
        for label, dec in decoders:
            texts, cpu = timed_texts(dec, d["lps"])
            rows.append(row(name, label, d["refs"], texts, words, cpu, _audio_s(d)))
            hyps += [{"set": name, "decoder": label, "ref": r, "hyp": h} for r, h in zip(d["refs"], texts)]
            log(f"{name} / {label}: WER {rows[-1]['wer']:.2f} % ({cpu:.0f} CPU-s)")
    out = {"hotwords": len(phrases), "boosted_words": len(words), "boosts": tuned, "tune_on": args.tune_on, "costs": costs,
           "dev_grid": grid, "rows": rows}
    write_results(args.out, "hotwords", out, hotwords_markdown(out))
    write_jsonl(os.path.join(args.out, "hotwords_hyps.jsonl"), hyps)
    return out


def stage_nbest(args, rec, data: dict) -> dict:
    n_max = max(args.nbest)
    dec = vocabulary_decoder(rec, nbest=n_max)
    rows = []
    for name, d in data.items():
        if name == "names_dev":
            continue
        t0 = time.time()
        alts = [[a.text for a in dec.decode(lp).alternatives] for lp in d["lps"]]
        for n in sorted(args.nbest):
            rows.append({"set": name, **nbest_stats(d["refs"], alts, n).to_dict()})
        log(f"{name}: {n_max}-best in {time.time() - t0:.0f} s")
    out = {"decoder": dec.describe(), "rows": rows}
    write_results(args.out, "nbest", out, nbest_markdown(out))
    return out


# ---------------------------------------------------------------------------------------------- reports
def md_table(headers: list, rows: list) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _recall_cell(r: dict) -> str:
    return f"{r['recognised']}/{r['occurrences']} ({r['recall']:.1%})" if r["occurrences"] else "-"


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def hotwords_markdown(out: dict) -> str:
    heads = ["WER %", "WER other words %", "boosted-word recall", "false alarms", "del", "ins", "decode RTF"]

    def cells(r):
        return [_pct(r["wer"]), _pct(r["wer_other"]), _recall_cell(r), r["false_alarms"], r["deletions"],
                r["insertions"], "-" if r.get("rtf") is None else f"{r['rtf']:.3f}"]

    grid = md_table(["set", "list", "boost", *heads],
                    [[g["set"], g["form"], f"{g['boost']:g}", *cells(g)] for g in out["dev_grid"]])
    table = md_table(["set", "utts", "decoder", *heads], [[r["set"], r["utterances"], r["decoder"], *cells(r)]
                                                         for r in out["rows"]])
    tuned = ", ".join(f"{f} {b:g}" for f, b in out["boosts"].items())
    tune = f" (no harm on {', '.join(out['tune_on'])})" if out.get("tune_on") else ""
    c = out.get("costs") or {}
    costs = (f"\n\nBuilding the lexicon search, CPU seconds: shared by every request (once per process) "
             f"{c['shared_lexicon_cpu_s']:.2f}; one request's trie for {c['hotwords']} hotwords "
             f"{c['request_trie_cpu_s']:.2f}." if c else "")
    return (f"Hotword list: {out['hotwords']} phrases ({out['boosted_words']} distinct words); boosts (nats per "
            f"token) tuned on names_dev{tune}: {tuned}.{costs}\n\nTuning:\n\n{grid}\n\nResults:\n\n{table}\n")


def nbest_markdown(out: dict) -> str:
    rows = [[r["set"], r["utterances"], r["n"], r["mean_alternatives"], f"{r['top1_wer']:.2f}", f"{r['oracle_wer']:.2f}",
             f"{r['ref_top']} ({r['ref_top'] / max(r['utterances'], 1):.1%})",
             f"{r['ref_in_list']} ({r['ref_in_list'] / max(r['utterances'], 1):.1%})"] for r in out["rows"]]
    table = md_table(["set", "utts", "N", "alternatives (mean)", "top-1 WER %", "oracle WER %",
                      "reference = top", "reference in list"], rows)
    return f"Decoder: {out['decoder']}.\n\n{table}\n"


def write_results(out_dir: str, name: str, data: dict, markdown: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(markdown)
    print(f"\n== {name} ==\n{markdown}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="/work/data/vocab")
    p.add_argument("--model", default="default", help="bundled model name or checkpoint path")
    p.add_argument("--other", nargs=3, action="append", metavar=("NAME", "MANIFEST", "EVERY"),
                   help="an unrelated set: every EVERY-th utterance of MANIFEST; EVERY:OFFSET from utterance OFFSET "
                        "(repeatable)")
    p.add_argument("--tune-on", nargs="+", default=[], metavar="NAME",
                   help="--other sets where a boost must do no harm to be chosen (default: none)")
    p.add_argument("--boosts", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0, 6.0],
                   help="boosts (nats per token) tried on names_dev")
    p.add_argument("--prefix-boost", type=float, default=1.5,
                   help="boost of the LM-free prefix beam search's row (1.5: its names_dev tuning, README)")
    p.add_argument("--nbest", type=int, nargs="+", default=[5, 10])
    p.add_argument("--wide-beam", type=int, default=0, metavar="N",
                   help="also prefix beam search N wide, without and with the phrases at the default boost "
                        "(the API's search is 8 wide)")
    p.add_argument("--out", default=None, help="results directory (default: <data-dir>/results)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--stage", type=int, default=1)
    p.add_argument("--stop-stage", type=int, default=3)
    args = p.parse_args(argv)
    args.out = args.out or os.path.join(args.data_dir, "results")
    return args


def main(argv=None, rec=None) -> None:
    """``rec``: a loaded :class:`asr.Recognizer` instead of --model (tests)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rec = rec or load_model(args.model)
    data = stage_log_probs(args, rec)  # stage 1 (cached): the later stages need it
    if args.stage <= 2 <= args.stop_stage:
        stage_hotwords(args, rec, data)
    if args.stage <= 3 <= args.stop_stage:
        stage_nbest(args, rec, data)


if __name__ == "__main__":
    main()
