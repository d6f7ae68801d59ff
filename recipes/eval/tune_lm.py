#!/usr/bin/env python3
"""Tune the beam decoder's LM weight and word score on a dev set; print a table.

    python3 recipes/eval/tune_lm.py --model default --lm /work/data/synth/lm/train_3gram.arpa \\
        --dev /work/data/synth/dev.jsonl

Log-probabilities are computed once (the streaming path, whole utterances, which equal
chunked ones) and every (lm_weight, word_score) pair of the grid is beam-decoded from them.
Tune on dev, never on a test set; the best pair is printed last as the `asr eval` flags to use.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="model name or checkpoint (default: %(default)s)")
    ap.add_argument("--lm", required=True, help="ARPA word LM (asr lm)")
    ap.add_argument("--dev", required=True, nargs="+", help="dev manifests or LibriSpeech dirs")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.6, 1.0, 1.5], help="LM weights to try")
    ap.add_argument("--word-scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0],
                    help="word scores to try")
    ap.add_argument("--beam-size", type=int, default=16, help="beam size (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N utterances (0: all)")
    args = ap.parse_args(argv)

    import torch
    from tqdm import tqdm

    from asr.beam import BeamCTCDecoder, BeamOptions
    from asr.checkpoint import load_model
    from asr.decoding import greedy_decode
    from asr.evaluate import _decode_batch, _read, load_inputs, score

    try:
        utts = load_inputs(args.dev, args.limit)
        rec = load_model(args.model)
        if not Path(args.lm).is_file():
            raise FileNotFoundError(f"no such language model: {args.lm}")
    except (ValueError, OSError) as e:
        print(f"tune_lm: error: {e}", file=sys.stderr)
        return 1
    refs = [u.text for u in utts]

    class _Keep:  # a "beam" that just hands back the streams' log-probabilities
        def decode_batch(self, lps):
            return [lp.clone() for lp in lps]

    lps = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(utts), 16), desc="log-probs", unit=" batch"):
            idx = list(range(i, min(i + 16, len(utts))))
            lps += _decode_batch(rec, _read(utts, idx), None, _Keep())

    no_lm = BeamCTCDecoder(rec.tokenizer, rec.step_s, BeamOptions(beam_size=args.beam_size))
    greedy = [greedy_decode(lp, lp.shape[0], rec.tokenizer, rec.step_s).text for lp in lps]
    rows = [("greedy", "-", "-", score(refs, greedy), 0.0)]
    t0 = time.process_time()
    s = score(refs, [r.text for r in no_lm.decode_batch(lps)])
    rows.append(("beam, no LM", "-", "-", s, time.process_time() - t0))
    for w, ws in tqdm(list(itertools.product(args.weights, args.word_scores)), desc="grid", unit=" point"):
        dec = BeamCTCDecoder(rec.tokenizer, rec.step_s,
                             BeamOptions(beam_size=args.beam_size, lm=args.lm, lm_weight=w, word_score=ws))
        t0 = time.process_time()
        hyps = [r.text for r in dec.decode_batch(lps)]
        rows.append(("beam + LM", f"{w:g}", f"{ws:g}", score(refs, hyps), time.process_time() - t0))
    audio_s = sum(lp.shape[0] for lp in lps) * rec.step_s
    print(f"\n{len(utts)} utterances, {audio_s / 60:.1f} min; model {args.model}; LM {args.lm}; beam {args.beam_size}\n")
    print("| decoder | lm weight | word score | WER % | CER % | S/D/I | search RTF (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for name, w, ws, s, cpu in rows:
        print(f"| {name} | {w} | {ws} | {100 * s.wer:.2f} | {100 * s.cer:.2f} | "
              f"{s.substitutions}/{s.deletions}/{s.insertions} | {cpu / audio_s:.4f} |")
    best = min((r for r in rows if r[0] == "beam + LM"), key=lambda r: r[3].wer)
    print(f"\nbest: --decoder beam --lm {args.lm} --lm-weight {best[1]} --word-score {best[2]} "
          f"(dev WER {100 * best[3].wer:.2f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
