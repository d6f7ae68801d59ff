#!/usr/bin/env python3
"""Hotwords and n-best measured with a model: the two measurements of issue 27's runtime vocabulary.

Usage:
    nice -n 5 python3 recipes/vocab/evaluate.py [--data-dir /work/data/vocab] [--model default] \\
        [--other heldout /work/data/synth/test_heldout.jsonl 4] [--other dev_real /work/data/realwords/dev_real.jsonl 5] \\
        [--boosts 0.5 1 1.5 2 3 4 6] [--nbest 5 10] [--wide-beam 32] [--out /work/data/vocab/results] \\
        [--stage 1] [--stop-stage 3]

Sets: ``names_dev`` / ``names_test`` from ``recipes/vocab/prepare.py``, and each ``--other NAME MANIFEST EVERY``
(every EVERY-th utterance of an unrelated set). The hotword list is the whole ``hotwords.txt`` (every name
of the names set: a user's contact list), the same on every set.

Stages:

    1  log-probs: each set through the model once, as ``rec.stream(sr, keep_log_probs=True)`` fed the whole
       file and finished (tail padding included); the log-probs and the greedy text cached in
       ``<data-dir>/logprobs/SET.pt`` (reused while the model file and the set are the same)
    2  hotwords: the boost tuned on ``names_dev`` only (the WER-best of --boosts), then on ``names_test``
       and the other sets: WER, boosted-word recall and false alarms for greedy, the model's default
       decoder (beam + bundled LM, if it has one), prefix beam search without hotwords and with them
       (what ``rec.stream(sr, hotwords=[...])`` decodes with) -> ``<out>/hotwords.{json,md}``
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

if __package__ in (None, ""):  # run as a script: `asr` and `recipes` from this checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from asr.audio import read_audio  # noqa: E402
from asr.checkpoint import available_models, load_model  # noqa: E402
from asr.hotwords import DEFAULT_BOOST, parse_hotwords  # noqa: E402
from asr.jsonl import read_jsonl, write_jsonl  # noqa: E402
from asr.prefixbeam import PrefixBeamDecoder, PrefixBeamOptions  # noqa: E402
from asr.scoring import score  # noqa: E402
from asr.stream import feed_chunks  # noqa: E402
from asr.vocab import vocabulary_decoder  # noqa: E402
from recipes.vocab.metrics import boosted_words, nbest_stats, word_recall  # noqa: E402

NAMES_SETS = ("names_dev", "names_test")


def log(msg: str) -> None:
    print(f"[vocab-eval {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- sets
def load_sets(args) -> dict:
    """Set name -> (manifest path, every) for the names halves and each ``--other``."""
    sets = {s: (os.path.join(args.data_dir, f"{s}.jsonl"), 1) for s in NAMES_SETS}
    for name, path, every in args.other or []:
        if name in sets:
            raise SystemExit(f"--other {name}: the name is taken")
        sets[name] = (path, int(every))
    return sets


def read_set(path: str, every: int) -> list:
    return read_jsonl(path)[::every]


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


def hotword_list(data_dir: str) -> list:
    with open(os.path.join(data_dir, "hotwords.txt"), encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


#: forms of the hotword list: the list as a user gives it (a contact list: "siobhan kowalski", "tallinn"),
#: and each of its words on its own (a partly matched phrase keeps its bonus while the search holds it)
LIST_FORMS = ("phrases", "words")


def list_forms(phrases: list) -> dict:
    return {"phrases": list(phrases), "words": sorted(boosted_words(phrases))}


def hotwords_label(form: str, boost: float) -> str:
    return f"prefix beam + hotwords ({form}, boost {boost:g})"


def row(set_name: str, decoder: str, refs, hyps, words) -> dict:
    wr, sc = word_recall(refs, hyps, words), score(refs, hyps)
    return {"set": set_name, "decoder": decoder, "utterances": len(refs), "wer": round(100 * sc.wer, 2),
            "deletions": sc.deletions, "insertions": sc.insertions, **wr.to_dict()}


def tune_boost(rec, dev: dict, form: str, entries: list, boosts: list, words: set) -> tuple:
    """The boost of ``boosts`` with the lowest WER on ``names_dev`` (ties: the smaller boost), and the grid."""
    grid = []
    for b in boosts:
        t0 = time.time()
        dec = vocabulary_decoder(rec, hotwords=[(p, b) for p in entries])
        grid.append({**row("names_dev", hotwords_label(form, b), dev["refs"], decode_texts(dec, dev["lps"]), words),
                     "form": form, "boost": b})
        log(f"{form}, boost {b:g}: dev WER {grid[-1]['wer']:.2f} %, recall {grid[-1]['recall']:.3f} "
            f"({time.time() - t0:.0f} s)")
    best = min(grid, key=lambda g: (g["wer"], g["boost"]))
    return best["boost"], grid


def hotword_decoders(rec, forms: dict, tuned: dict, wide_beam: int = 0) -> list:
    """(label, decoder): the model's default decoder (if it has an LM), prefix beam search without hotwords,
    with each list form at its tuned boost, and with the phrases at the shipped default boost; with
    ``wide_beam``: prefix beam search of that width without and with the phrases at the default boost."""
    out = [("prefix beam", PrefixBeamDecoder(rec))]  # the same search without hotwords
    default = rec.default_decoder()
    if default is not None:
        out.insert(0, (f"default: {default.describe()}", default))
    boosts = [(form, tuned[form]) for form in forms]
    if tuned["phrases"] != DEFAULT_BOOST:
        boosts.append(("phrases", DEFAULT_BOOST))
    for form, b in boosts:
        out.append((hotwords_label(form, b), vocabulary_decoder(rec, hotwords=[(p, b) for p in forms[form]])))
    if wide_beam:  # a diagnostic the API does not offer: is the harm of the boost the beam's pruning?
        opts = PrefixBeamOptions(beam=wide_beam)
        out.append((f"prefix beam {wide_beam}", PrefixBeamDecoder(rec, opts=opts)))
        hot = parse_hotwords([(p, DEFAULT_BOOST) for p in forms["phrases"]])
        out.append((hotwords_label("phrases", DEFAULT_BOOST) + f", beam {wide_beam}", PrefixBeamDecoder(rec, hot, opts=opts)))
    return out


def stage_hotwords(args, rec, data: dict) -> dict:
    phrases = hotword_list(args.data_dir)
    words, forms = boosted_words(phrases), list_forms(phrases)
    dev = data["names_dev"]
    grid = [{**row("names_dev", "prefix beam", dev["refs"], decode_texts(PrefixBeamDecoder(rec), dev["lps"]), words),
             "form": "none", "boost": 0.0}]  # the baseline of the tuning
    tuned = {}
    for form in LIST_FORMS:
        tuned[form], g = tune_boost(rec, dev, form, forms[form], args.boosts, words)
        grid += g
    decoders = hotword_decoders(rec, forms, tuned, args.wide_beam)
    rows, hyps = [], []
    for name, d in data.items():
        if name == "names_dev":
            continue
        rows.append(row(name, "greedy", d["refs"], d["greedy"], words))
        for label, dec in decoders:
            t0 = time.time()
            texts = decode_texts(dec, d["lps"])
            rows.append(row(name, label, d["refs"], texts, words))
            hyps += [{"set": name, "decoder": label, "ref": r, "hyp": h} for r, h in zip(d["refs"], texts)]
            log(f"{name} / {label}: WER {rows[-1]['wer']:.2f} % ({time.time() - t0:.0f} s)")
    out = {"hotwords": len(phrases), "boosted_words": len(words), "boosts": tuned, "dev_grid": grid, "rows": rows}
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


def hotwords_markdown(out: dict) -> str:
    grid = md_table(["list", "boost", "names_dev WER %", "boosted-word recall", "false alarms", "del", "ins"],
                    [[g["form"], f"{g['boost']:g}", f"{g['wer']:.2f}", _recall_cell(g), g["false_alarms"],
                      g["deletions"], g["insertions"]] for g in out["dev_grid"]])
    rows = [[r["set"], r["utterances"], r["decoder"], f"{r['wer']:.2f}", _recall_cell(r), r["false_alarms"],
             r["deletions"], r["insertions"]] for r in out["rows"]]
    table = md_table(["set", "utts", "decoder", "WER %", "boosted-word recall", "false alarms", "del", "ins"], rows)
    tuned = ", ".join(f"{f} {b:g}" for f, b in out["boosts"].items())
    return (f"Hotword list: {out['hotwords']} phrases ({out['boosted_words']} distinct words); boosts (nats per "
            f"token) tuned on names_dev: {tuned}.\n\nTuning on names_dev:\n\n{grid}\n\nResults:\n\n{table}\n")


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
                   help="an unrelated set: every EVERY-th utterance of MANIFEST (repeatable)")
    p.add_argument("--boosts", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
                   help="boosts (nats per token) tried on names_dev")
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
