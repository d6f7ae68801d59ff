#!/usr/bin/env python3
"""A bank of neural voices from one: hibari's voice with its pitch and vocal tract changed, metered
by a real-speech recogniser, speaking the synthetic corpus's training sentences.

hibari (PyPI ``hibari-tts``, Apache-2.0) is a small neural TTS distilled from Kokoro-82M; its one
offline voice ("heart", US English, female) runs ~100x real time on one core. The network predicts,
per 12.5 ms frame, a harmonic envelope, a noise envelope, a free-phase branch (601 bins up to 12 kHz)
and F0; ``hibari.dsp.synth`` turns them into a waveform. A voice of the bank scales F0 by ``pitch``
and warps every envelope along the frequency axis by ``warp`` (a formant shift: the vocal-tract-length
change of VTLP, applied at the source instead of the features), and speaks at a ``speed`` range.
Voices are drawn from two regions (lower pitch with a longer tract, and higher pitch with a shorter
one), so the bank holds male- and female-like voices.

Each voice is metered first: PocketSphinx 5 (trained on real speech) decodes ``--meter-utts``
sentences of it, and voices above ``--max-meter-wer`` are dropped (a voice that nothing trained on
real speech understands teaches little about real speech). The kept voices share the hours
equally. A share ``--short-share`` of the utterances are 1-3 consecutive words cut from a sentence
(real prompts are often single words; the sentence pool starts at 3 words).

Usage::

    python3 recipes/neural/prepare.py --text-dir /work/data/synth/text --data-dir /work/data/neural \\
        [--hours 4] [--voices 24] [--meter-utts 8] [--max-meter-wer 40] [--seed 7]

Reads ``<text-dir>/train.txt`` and ``train.speak.txt`` (stage 1 of ``recipes/synth/prepare.py``; the
training text pool only, never dev or test text). Writes ``<data-dir>/voices.json`` (each voice's
parameters and meter WER), 16 kHz WAV under ``<data-dir>/audio/`` and ``<data-dir>/train.jsonl``
(``{"audio", "text", "duration", "voice", "engine": "hibari"}``). Re-running keeps finished WAVs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from asr.jsonl import write_jsonl
from asr.text import normalize

SR = 16000


@dataclass(frozen=True)
class Voice:
    name: str
    pitch: float  # F0 factor
    warp: float  # frequency-axis factor of the spectral envelopes (< 1: longer vocal tract, lower formants)
    speed: tuple[float, float]  # speaking-rate range (hibari's speed: > 1 is faster)
    meter_wer: float = -1.0  # PocketSphinx WER % on the meter sentences (-1: not metered)


def draw_voices(n: int, seed: int) -> list[Voice]:
    """The voice as shipped, then alternately male-like (pitch 0.5-0.72, warp 0.82-0.93) and female-like
    (pitch 0.85-1.3, warp 0.94-1.1) ones."""
    rng = np.random.default_rng(seed)
    out = [Voice("hibari-ref", 1.0, 1.0, (0.9, 1.1))]  # the voice as shipped
    for i in range(n - 1):
        if i % 2 == 0:
            pitch, warp = rng.uniform(0.5, 0.72), rng.uniform(0.82, 0.93)
        else:
            pitch, warp = rng.uniform(0.85, 1.3), rng.uniform(0.94, 1.1)
        lo = rng.uniform(0.8, 1.05)
        out.append(Voice(f"hibari-{i:02d}", round(float(pitch), 3), round(float(warp), 3),
                         (round(float(lo), 3), round(float(lo + 0.2), 3))))
    return out


def warp_bins(x: np.ndarray, warp: float) -> np.ndarray:
    """``y[k] = x[k / warp]`` along axis 0 (frequency bins), linear interpolation, edge-clamped."""
    k = np.arange(x.shape[0], dtype=np.float32) / warp
    k = np.minimum(k, x.shape[0] - 1)
    lo = np.floor(k).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    u = (k - lo)[:, None]
    return ((1 - u) * x[lo] + u * x[hi]).astype(np.float32)


class VoiceBank:
    """hibari with the per-voice pitch/formant change; ``say(text, voice, rng)`` -> 16 kHz float32."""

    def __init__(self):
        from hibari import Hibari

        self.tts = Hibari(threads=1)
        self.sr = self.tts.sample_rate

    def say(self, speak: str, voice: Voice, rng: np.random.Generator) -> np.ndarray:
        from hibari import dsp

        speed = float(rng.uniform(*voice.speed))
        parts = []
        for ps in self.tts.phonemize(speak):
            ids = self.tts.ids(ps)
            if len(ids) < 3:
                continue
            out = self.tts.sess.run(None, {"ids": np.asarray([ids], np.int64),
                                           "speed": np.asarray([speed], np.float32)})
            lh, th, ln, lr, phi, f0 = (o[0] for o in out)
            if voice.warp != 1.0:
                lh, th, ln, lr, phi = (warp_bins(a, voice.warp) for a in (lh, th, ln, lr, phi))
            parts.append(dsp.synth(lh, th, ln, lr, phi, f0 * voice.pitch, rng))
        if not parts:
            return np.zeros(0, np.float32)
        wav = np.concatenate(parts)
        wav = resample_poly(wav, 2, 3).astype(np.float32)  # 24 kHz -> 16 kHz
        peak = float(np.abs(wav).max()) or 1.0
        return wav * (0.5 / peak)


def meter_wers(say, voices: list, sentences: list[tuple[str, str]], seed: int) -> list[float]:
    """Each voice's PocketSphinx WER % on the same (normalised, spoken) sentences; ``say(text, voice, rng)``
    gives 16 kHz float32 audio. Every voice starts from the same generator state."""
    import jiwer
    from pocketsphinx import Decoder

    dec = Decoder()
    out = []
    for v in tqdm(voices, desc="meter", disable=not sys.stderr.isatty()):
        rng = np.random.default_rng(seed)
        refs, hyps = [], []
        for norm, speak in sentences:
            pcm = (np.clip(say(speak, v, rng), -1, 1) * 32767).astype(np.int16)
            dec.start_utt()
            dec.process_raw(pcm.tobytes(), full_utt=True)
            dec.end_utt()
            h = dec.hyp()
            refs.append(norm)
            hyps.append(normalize(h.hypstr if h is not None else ""))
        out.append(round(100 * jiwer.wer(refs, hyps), 1))
    return out


def meter(bank: VoiceBank, voices: list[Voice], sentences: list[tuple[str, str]], seed: int) -> list[Voice]:
    """Each voice with its PocketSphinx WER on the same sentences."""
    return [replace(v, meter_wer=w) for v, w in zip(voices, meter_wers(bank.say, voices, sentences, seed))]


def write_utterances(data_dir: Path, items, voices: list, say, seed: int, engine: str,
                     flush: int = 0) -> list[dict]:
    """Speak ``items`` ((normalised text, text to speak)) with the voices in turn into
    ``<data_dir>/audio/NNNNNN.wav`` (16 kHz, kept if already there; under 0.2 s dropped) and return
    their manifest records; with ``flush``, ``<data_dir>/train.jsonl`` is rewritten every ``flush``
    records so that a run stopped early leaves a usable manifest."""
    records = []
    audio_dir = data_dir / "audio"
    audio_dir.mkdir(exist_ok=True)
    for n, (text, speak) in enumerate(tqdm(items, desc=engine, unit="utt", mininterval=5)):
        v = voices[n % len(voices)]
        out = audio_dir / f"{n:06d}.wav"
        if not out.exists():
            wav = say(speak, v, np.random.default_rng([seed, n]))
            if len(wav) < SR // 5:
                continue
            tmp = out.with_suffix(".tmp.wav")
            sf.write(str(tmp), wav, SR, subtype="PCM_16")
            os.replace(tmp, out)
        records.append({"audio": str(out.relative_to(data_dir)), "text": normalize(text),
                        "duration": round(sf.info(str(out)).frames / SR, 3), "voice": v.name, "engine": engine})
        if flush and len(records) % flush == 0:
            write_jsonl(data_dir / "train.jsonl", records)
    return records


def plan(pool: list[tuple[str, str]], hours: float, short_share: float, rng: np.random.Generator):
    """(normalised text, text to speak) items totalling about ``hours`` (0.06 s per character + 0.5 s)."""
    items, secs = [], 0.0
    order = rng.permutation(len(pool))
    for i in order:
        norm, speak = pool[i]
        if rng.random() < short_share:
            words = norm.split()
            n = int(rng.integers(1, 4))
            s = int(rng.integers(0, max(1, len(words) - n + 1)))
            norm = speak = " ".join(words[s:s + n])
        items.append((norm, speak))
        secs += 0.06 * len(speak) + 0.5
        if secs >= hours * 3600:
            break
    return items


def add_bank_arguments(ap: argparse.ArgumentParser, hours: float, voices: int, meter_utts: int,
                       max_meter_wer: float, seed: int) -> None:
    """The options every voice bank takes (text pool, output, amount, meter, seed), with its defaults."""
    ap.add_argument("--text-dir", type=Path, required=True, help="folder with train.txt and train.speak.txt")
    ap.add_argument("--data-dir", type=Path, required=True, help="output folder")
    ap.add_argument("--hours", type=float, default=hours, help="hours of audio to write (approximate)")
    ap.add_argument("--voices", type=int, default=voices, help="voices drawn before metering")
    ap.add_argument("--meter-utts", type=int, default=meter_utts, help="sentences per voice for the PocketSphinx meter")
    ap.add_argument("--max-meter-wer", type=float, default=max_meter_wer,
                    help="drop voices whose meter WER %% is above")
    ap.add_argument("--short-share", type=float, default=0.3, help="share of 1-3 word utterances")
    ap.add_argument("--seed", type=int, default=seed)


def training_pool(ap: argparse.ArgumentParser, text_dir: Path) -> list[tuple[str, str]]:
    """(normalised, spoken) sentences of the synthetic corpus's training text (never dev or test text)."""
    for name in ("train.txt", "train.speak.txt"):
        if not (text_dir / name).exists():
            ap.error(f"{text_dir / name}: not found (run recipes/synth/prepare.py --stage 1 --stop-stage 1)")
    norm = (text_dir / "train.txt").read_text(encoding="utf-8").splitlines()
    speak = (text_dir / "train.speak.txt").read_text(encoding="utf-8").splitlines()
    return list(zip(norm, speak))


def write_manifest(data_dir: Path, records: list[dict], voices: int) -> None:
    write_jsonl(data_dir / "train.jsonl", records)
    hours = sum(r["duration"] for r in records) / 3600
    print(f"wrote {len(records)} utterances, {hours:.2f} h, {voices} voices -> {data_dir / 'train.jsonl'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bank_arguments(ap, hours=4.0, voices=24, meter_utts=8, max_meter_wer=40.0, seed=7)
    args = ap.parse_args(argv)
    pool = training_pool(ap, args.text_dir)
    rng = np.random.default_rng(args.seed)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    bank = VoiceBank()

    vpath = args.data_dir / "voices.json"
    if vpath.exists():
        voices = [Voice(**{**d, "speed": tuple(d["speed"])}) for d in json.loads(vpath.read_text())]
    else:
        meter_set = [pool[i] for i in rng.choice(len(pool), args.meter_utts, replace=False)]
        voices = meter(bank, draw_voices(args.voices, args.seed), meter_set, args.seed)
        vpath.write_text(json.dumps([asdict(v) for v in voices], indent=1))
    kept = [v for v in voices if 0 <= v.meter_wer <= args.max_meter_wer]
    print(f"voices: {len(kept)} of {len(voices)} kept (meter WER <= {args.max_meter_wer}%): "
          + ", ".join(f"{v.name} p{v.pitch} w{v.warp} {v.meter_wer}%" for v in voices))
    if not kept:
        print("neural: no voice passed the meter", file=sys.stderr)
        return 2

    items = plan(pool, args.hours, args.short_share, rng)
    records = write_utterances(args.data_dir, items, kept, bank.say, args.seed, "hibari")
    write_manifest(args.data_dir, records, len(kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
