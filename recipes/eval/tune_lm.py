#!/usr/bin/env python3
"""Tune the beam decoder (LM weight, word score, pruning) on a dev set; print a table.

    python3 recipes/eval/tune_lm.py --model default --lm /work/data/synth/lm/train_3gram.arpa \\
        --dev /work/data/synth/dev.jsonl [--beam-size 128] [--beam-size-tokens 8 0] [--beam-thresholds 50 25]

Log-probabilities are computed once (the streaming path, whole utterances, which equal
chunked ones) and every point of the grid (LM weight x word score x tokens per step x
threshold) is beam-decoded from them, timing the search alone (its CPU time per audio
second: add the acoustic model's RTF for the streaming total). Tune on dev, never on a test
set; the best point (lowest WER, within ``--max-search-rtf`` if given) is printed last as
the `asr eval` flags to use.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `asr` from this checkout, even if not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv=None) -> argparse.Namespace:
    from asr.beam import BeamOptions  # the decoder's defaults

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="model name or checkpoint (default: %(default)s)")
    ap.add_argument("--lm", required=True, help="ARPA word LM (asr lm)")
    ap.add_argument("--dev", required=True, nargs="+", help="dev manifests or LibriSpeech dirs")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.6, 1.0, 1.5], help="LM weights to try")
    ap.add_argument("--word-scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0],
                    help="word scores to try")
    ap.add_argument("--beam-size", type=int, default=BeamOptions.beam_size, help="beam size (default: %(default)s)")
    ap.add_argument("--beam-size-tokens", type=int, nargs="+", default=[BeamOptions.beam_size_token], metavar="N",
                    help="values of --beam-size-token to try (0: the whole vocabulary; default: %(default)s)")
    ap.add_argument("--beam-thresholds", type=float, nargs="+", default=[BeamOptions.beam_threshold], metavar="X",
                    help="values of --beam-threshold to try (default: %(default)s)")
    ap.add_argument("--max-search-rtf", type=float, default=None, metavar="R",
                    help="pick the best point among those whose search RTF is at most R (default: any)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N utterances (0: all)")
    args = ap.parse_args(argv)
    if any(n < 0 for n in args.beam_size_tokens) or any(not x > 0 for x in args.beam_thresholds):
        ap.error("--beam-size-tokens must be 0 or more and --beam-thresholds positive")
    return args


def dev_log_probs(rec, utts) -> list:
    """Every utterance's ``(steps, vocab)`` log-probabilities from the streaming path, 16 streams at a time."""
    import torch
    from tqdm import tqdm

    from asr.evalrun import read_waves, run_streams

    lps = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(utts), 16), desc="log-probs", unit=" batch"):
            idx = list(range(i, min(i + 16, len(utts))))
            lps += [st.all_log_probs() for st in run_streams(rec, read_waves(utts, idx), None, keep_log_probs=True)]
    return lps


def grid_rows(args, rec, lps, refs) -> list:
    """``(decoder, tokens/step, threshold, LM weight, word score, Score, search RTF)`` of greedy
    decoding, of the beam without LM at each pruning point and of every grid point with the LM."""
    from tqdm import tqdm

    from asr.beam import BeamCTCDecoder, BeamOptions
    from asr.decoding import greedy_decode
    from asr.scoring import score

    audio_s = sum(lp.shape[0] for lp in lps) * rec.step_s

    def run(**kw):
        dec = BeamCTCDecoder(rec.tokenizer, rec.step_s, BeamOptions(beam_size=args.beam_size, **kw))
        t0 = time.process_time()
        hyps = [r.text for r in dec.decode_batch(lps)]
        return score(refs, hyps), (time.process_time() - t0) / audio_s

    greedy = [greedy_decode(lp, lp.shape[0], rec.tokenizer, rec.step_s).text for lp in lps]
    rows = [("greedy", "-", "-", "-", "-", score(refs, greedy), 0.0)]
    prune = list(itertools.product(args.beam_size_tokens, args.beam_thresholds))
    for n, th in prune:
        rows.append(("beam, no LM", n or "all", f"{th:g}", "-", "-",
                     *run(beam_size_token=n or None, beam_threshold=th)))
    grid = list(itertools.product(prune, args.weights, args.word_scores))
    for (n, th), w, ws in tqdm(grid, desc="grid", unit=" point"):
        rows.append(("beam + LM", n or "all", f"{th:g}", f"{w:g}", f"{ws:g}",
                     *run(beam_size_token=n or None, beam_threshold=th, lm=args.lm, lm_weight=w, word_score=ws)))
    return rows


def print_table(rows) -> None:
    print("| decoder | tokens/step | threshold | lm weight | word score | WER % | CER % | S/D/I | search RTF (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, th, w, ws, s, rtf in rows:
        print(f"| {name} | {n} | {th} | {w} | {ws} | {100 * s.wer:.2f} | {100 * s.cer:.2f} | "
              f"{s.substitutions}/{s.deletions}/{s.insertions} | {rtf:.4f} |")


def print_best(args, rows) -> int:
    """The `asr eval` flags of the LM point with the lowest WER (within --max-search-rtf); 1 if none."""
    from asr.beam import BeamOptions

    ok = [r for r in rows if r[0] == "beam + LM" and (args.max_search_rtf is None or r[6] <= args.max_search_rtf)]
    if not ok:
        print(f"\nno LM point has a search RTF of at most {args.max_search_rtf}")
        return 1
    name, n, th, w, ws, s, rtf = min(ok, key=lambda r: (r[5].wer, r[6]))
    prune_flags = ("" if n == BeamOptions.beam_size_token else f" --beam-size-token {0 if n == 'all' else n}") \
        + ("" if float(th) == BeamOptions.beam_threshold else f" --beam-threshold {th}")
    print(f"\nbest: --decoder beam --lm {args.lm} --lm-weight {w} --word-score {ws}{prune_flags} "
          f"(dev WER {100 * s.wer:.2f} %, search RTF {rtf:.4f})")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    from asr.beam import BeamOptions
    from asr.checkpoint import load_model
    from asr.corpora import load_inputs

    try:
        BeamOptions(beam_size=args.beam_size)  # a bad --beam-size fails here, before any decoding
        utts = load_inputs(args.dev, args.limit)
        rec = load_model(args.model)
        if not Path(args.lm).is_file():
            raise FileNotFoundError(f"no such language model: {args.lm}")
    except (ValueError, OSError) as e:
        print(f"tune_lm: error: {e}", file=sys.stderr)
        return 1
    lps = dev_log_probs(rec, utts)
    rows = grid_rows(args, rec, lps, [u.text for u in utts])
    audio_s = sum(lp.shape[0] for lp in lps) * rec.step_s
    print(f"\n{len(utts)} utterances, {audio_s / 60:.1f} min; model {args.model}; LM {args.lm}; beam {args.beam_size}\n")
    print_table(rows)
    return print_best(args, rows)


if __name__ == "__main__":
    raise SystemExit(main())
