"""CPU cost of the waveform augmenter (asr.augment): milliseconds of CPU per second of audio.

Usage:
    OMP_NUM_THREADS=1 python tools/bench_augment.py MANIFEST [--utts 100] [--aug-dir DIR] [--babble 200]
        [--codec-prob P]

Rows: the default ``AugmentConfig()`` chain (with ``--codec-prob``), every step forced on
(codec included), then each available codec's round trip alone (``codec_round_trip``, its settings
drawn as in training). Babble comes from the ``--babble`` manifest utterances after the measured
ones (0: no babble). CPU time of this process (``time.process_time``), audio loaded beforehand,
material (noise bank, RIRs, music) loaded by a warm-up pass; on a busy machine the figures are
approximate.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import soundfile as sf

from asr.augment import AugmentConfig, Augmenter, available_codecs, codec_round_trip


def load(manifest: str, n: int, n_babble: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``n`` 16 kHz utterances of ``manifest`` and the paths of the ``n_babble`` after them."""
    waves, babble = [], []
    with open(manifest) as f:
        for line in f:
            if len(babble) >= n_babble and len(waves) >= n:
                break
            path = json.loads(line)["audio"]
            path = path if os.path.isabs(path) else os.path.join(os.path.dirname(manifest), path)
            if len(waves) >= n:
                babble.append(path)
                continue
            x, sr = sf.read(path, dtype="float32")
            if sr == 16000:
                waves.append(x if x.ndim == 1 else x.mean(axis=1))
    return waves, babble


def cpu_ms_per_s(fn, waves: list[np.ndarray]) -> float:
    for i, x in enumerate(waves[:3]):  # warm-up: lazy material, imports, codec probes
        fn(x, np.random.default_rng(10_000 + i))
    t0 = time.process_time()
    for i, x in enumerate(waves):
        fn(x, np.random.default_rng(i))
    return (time.process_time() - t0) * 1000 / (sum(map(len, waves)) / 16000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--utts", type=int, default=100)
    ap.add_argument("--aug-dir", default=None)
    ap.add_argument("--babble", type=int, default=0, help="babble pool size (manifest utterances)")
    ap.add_argument("--codec-prob", type=float, default=0.0, help="codec_prob of the default row")
    args = ap.parse_args()
    waves, babble = load(args.manifest, args.utts, args.babble)
    secs = sum(map(len, waves)) / 16000
    print(f"{len(waves)} utterances, {secs:.0f} s of audio; codecs available: {', '.join(available_codecs())}")
    every = {k: 1.0 for k in ("speed_prob", "reverb_prob", "noise_prob", "telephone_prob", "gain_prob", "codec_prob")}
    rows = {f"default (codec_prob={args.codec_prob})": Augmenter(AugmentConfig(codec_prob=args.codec_prob),
                                                                  args.aug_dir, babble),
            "every step on": Augmenter(AugmentConfig(**every), args.aug_dir, babble)}
    for name in available_codecs():
        rows[f"codec {name} alone"] = lambda x, rng, name=name: codec_round_trip(x, name, rng)
    for label, fn in rows.items():
        print(f"{label:28s} {cpu_ms_per_s(fn, waves):7.2f} ms CPU / s of audio")


if __name__ == "__main__":
    main()
