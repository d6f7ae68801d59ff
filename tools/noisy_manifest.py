"""Make a noisy copy of a test manifest at a fixed SNR, for robustness checks.

Each utterance gets one noise source added at exactly ``--snr`` dB, drawn from the same
material ``asr.augment`` trains with (synthetic white/pink/brown noise, music on hold from
the corpus's ``aug`` directory, babble summed from utterances of the same manifest),
with a fixed seed so the set is reproducible. The noise kind goes into each row's ``noise`` field, so ``asr eval`` can break WER down by it. Then compare models on
the clean and noisy sets side by side::

    python tools/noisy_manifest.py /work/data/synth/dev.jsonl --snr 10 --out /work/data/synth/dev_snr10
    asr eval /work/data/synth/dev.jsonl /work/data/synth/dev_snr10/dev_snr10.jsonl --model M

The noise material is the training material, so this measures robustness to noise kinds
the model was augmented with, not to unseen real noise (none ships in packages here).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asr.audio import read_audio  # noqa: E402
from asr.augment import SR, AugmentConfig, Augmenter, mix_at_snr  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("manifest", help="JSON-lines manifest ({audio, text, ...}) of 16 kHz audio")
    ap.add_argument("--out", required=True, help="output directory (WAVs and OUT/NAME.jsonl)")
    ap.add_argument("--snr", type=float, default=10.0, help="signal-to-noise ratio in dB")
    ap.add_argument("--aug-dir", default="/work/data/synth/aug", help="corpus aug directory (music on hold)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rows = [json.loads(line) for line in open(args.manifest) if line.strip()]
    if not rows:
        ap.error(f"{args.manifest}: no utterances")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    aug = Augmenter(AugmentConfig(), args.aug_dir if Path(args.aug_dir).is_dir() else None,
                    babble_paths=[r["audio"] for r in rows])
    rng = np.random.default_rng(args.seed)
    manifest = out / f"{out.name}.jsonl"
    with open(manifest, "w") as f:
        for i, r in enumerate(tqdm(rows, desc=f"noise at {args.snr:g} dB", unit="utt")):
            x, sr = read_audio(r["audio"])
            if sr != SR:
                raise SystemExit(f"{r['audio']}: {sr} Hz, expected {SR}")
            kind = aug.noise_kind(rng)  # same weights as training
            y = mix_at_snr(x, aug.noise(kind, len(x), rng), args.snr)
            peak = float(np.max(np.abs(y)))
            if peak > 0.99:  # keep within full scale without clipping
                y = y * (0.99 / peak)
            path = out / f"{i:05d}.wav"
            sf.write(path, y, SR, subtype="PCM_16")
            f.write(json.dumps({**r, "audio": str(path), "noise": kind, "snr_db": args.snr}) + "\n")
    print(f"wrote {len(rows)} utterances to {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
