"""Voice tables and synthesis back-ends for the synthetic speech recipe.

Every back-end turns a *chunk* of jobs (same voice) into 16 kHz mono 16-bit WAV
files and returns one manifest record per successful utterance. A job is a dict::

    {"uid": str, "text": normalised text, "speak": text given to the engine,
     "voice": voice name (key of VOICES), "rate": duration stretch (>1 slower),
     "pitch": pitch factor (1.0 = natural), "out": absolute wav path, "pad": (s, s)}

Speaking rate and pitch are varied per utterance with the engine's own controls
(espeak-ng ``-s``/``-p``, HTS ``-r``/``-fm``); for festival diphone/MBROLA voices and
flite the pitch is changed by re-sampling (playing the waveform at ``pitch`` times
its rate, which also scales the formants like a different vocal-tract length) while
the engine's duration stretch is pre-compensated so the final tempo is ``rate``.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SR = 16000
MAX_SECONDS = 16.0
MIN_SECONDS = 0.4

# --------------------------------------------------------------------------- voices
#: espeak-ng formant accents and the voice variants mixed with them.
ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ["f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7",
                   "klatt", "klatt2", "klatt3", "klatt4"]
#: MBROLA voices driven by espeak-ng (all checked to speak English text; mb-sw2-en is
#: left out: it lacks many English diphones and replaces them with silence).
MBROLA_NATIVE = ["mb-us1", "mb-us2", "mb-us3", "mb-en1"]
MBROLA_ACCENTED = ["mb-af1-en", "mb-nl2-en", "mb-fr1-en", "mb-fr4-en", "mb-de1-en",
                   "mb-de2-en", "mb-de3-en", "mb-de4-en", "mb-de5-en", "mb-de6-en",
                   "mb-gr2-en", "mb-hu1-en", "mb-pl1-en", "mb-ro1-en", "mb-sw1-en"]
FESTIVAL_VOICES = {  # name -> scheme voice function
    "kal": "voice_kal_diphone", "ked": "voice_ked_diphone", "rab": "voice_rab_diphone",
    "don": "voice_don_diphone", "us1": "voice_us1_mbrola", "us2": "voice_us2_mbrola",
    "us3": "voice_us3_mbrola", "en1": "voice_en1_mbrola",
    "slt_hts": "voice_cmu_us_slt_arctic_hts",
}
FLITE_VOICES = ["kal16", "awb", "rms", "slt"]


def training_voices() -> dict[str, dict]:
    """Voice name -> {"engine", "group", "weight"}; weights are shares of the hours.

    espeak-ng formant voices get 15 % of the hours (a quarter at most is allowed),
    the rest goes to the more natural MBROLA / diphone / HTS / flite voices.
    """
    groups = {
        # group: (share of hours, engine, voice names)
        "espeak": (0.15, "espeak-ng", [f"{a}+{v}" for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]),
        "mbrola": (0.22, "espeak-mbrola", MBROLA_NATIVE),
        "mbrola-accented": (0.18, "espeak-mbrola", MBROLA_ACCENTED),
        "festival": (0.24, "festival", [v for v in FESTIVAL_VOICES if v != "slt_hts"]),
        "festival-hts": (0.06, "festival", ["slt_hts"]),
        "flite": (0.15, "flite", FLITE_VOICES),
    }
    out = {}
    for group, (share, engine, names) in groups.items():
        for n in names:
            key = f"{engine.split('-')[0] if engine != 'espeak-mbrola' else 'mbrola'}:{n}"
            out[key] = {"engine": engine, "group": group, "weight": share / len(names), "name": n}
    return out


def heldout_voices() -> dict[str, dict]:
    """Held-out test voices: engines never used for training."""
    out = {}
    for n in ["en-US", "en-GB"]:
        out[f"pico:{n}"] = {"engine": "pico2wave", "group": "pico", "weight": 1.0, "name": n}
    out["piper:en_US-joe-medium"] = {"engine": "piper", "group": "piper", "weight": 1.0,
                                     "name": "en_US-joe-medium"}
    for n in ["alan", "bdl", "clb", "slt", "evgeniy-eng", "lyubov"]:
        out[f"rhvoice:{n}"] = {"engine": "rhvoice", "group": "rhvoice", "weight": 1.0, "name": n}
    return out


ALL_VOICES = {**training_voices(), **heldout_voices()}


# --------------------------------------------------------------------------- signal
def to_16k(wave: np.ndarray, sr: int, pitch: float = 1.0) -> np.ndarray:
    """Resample ``wave`` (sample rate ``sr``) to 16 kHz, optionally playing it
    ``pitch`` times faster (pitch and formants up, duration down by ``pitch``)."""
    src = sr * pitch
    if pitch != 1.0:
        src = max(100, int(round(src / 100.0)) * 100)  # keeps the up/down ratio small
    frac = Fraction(SR, int(round(src)))
    if frac == 1:
        return wave.astype(np.float32)
    return resample_poly(wave, frac.numerator, frac.denominator).astype(np.float32)


def trim(wave: np.ndarray, pad: tuple[float, float], sr: int = SR) -> np.ndarray | None:
    """Cut leading/trailing silence, keeping ``pad`` seconds (zero-filled if needed)."""
    hop = sr // 100
    n = len(wave) // hop
    if n == 0:
        return None
    frames = wave[: n * hop].reshape(n, hop)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak = db.max()
    if peak < -60:
        return None
    voiced = np.flatnonzero(db > max(peak - 45.0, -65.0))
    start, end = voiced[0] * hop, (voiced[-1] + 1) * hop
    lead, tail = int(pad[0] * sr), int(pad[1] * sr)
    s0, e0 = max(0, start - lead), min(len(wave), end + tail)
    core = wave[s0:e0]
    z0 = lead - (start - s0)
    z1 = tail - (e0 - end)
    if z0 > 0 or z1 > 0:
        core = np.concatenate([np.zeros(max(z0, 0), np.float32), core, np.zeros(max(z1, 0), np.float32)])
    return core


def finish(wave: np.ndarray, sr: int, job: dict, pitch_by_resampling: bool) -> dict | None:
    """Resample, trim, level and write one utterance; return its manifest record."""
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    wave = to_16k(wave, sr, job["pitch"] if pitch_by_resampling else 1.0)
    wave = trim(wave, tuple(job["pad"]))
    if wave is None:
        return None
    dur = len(wave) / SR
    if not (MIN_SECONDS <= dur <= MAX_SECONDS):
        return None
    peak = float(np.abs(wave).max())
    if peak <= 0:
        return None
    wave = wave * (job["level"] / peak)
    os.makedirs(os.path.dirname(job["out"]), exist_ok=True)
    tmp = job["out"] + ".tmp.wav"
    sf.write(tmp, wave, SR, subtype="PCM_16")
    os.replace(tmp, job["out"])
    v = ALL_VOICES[job["voice"]]
    return {"audio": job["out"], "text": job["text"], "duration": round(dur, 4),
            "voice": job["voice"], "engine": v["engine"]}


def _read(path: str) -> tuple[np.ndarray, int] | None:
    try:
        wave, sr = sf.read(path, dtype="float32")
    except Exception:
        return None
    if len(wave) == 0:
        return None
    return wave, sr


def _run(cmd: list[str], stdin: str | None = None, timeout: float = 60) -> bool:
    try:
        r = subprocess.run(cmd, input=stdin, text=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return r.returncode == 0


# --------------------------------------------------------------------------- back-ends
def _clean_for_engine(text: str) -> str:
    # espeak-ng reads [[...]] as phonemes; festival strings need no backslashes/quotes
    return text.replace("[", " ").replace("]", " ").replace("\\", " ").replace('"', " ").strip()


def synth_espeak(jobs: list[dict], tmpdir: str) -> list[dict]:
    out = []
    for job in jobs:
        v = ALL_VOICES[job["voice"]]
        wav = os.path.join(tmpdir, "e.wav")
        speed = int(round(170 / job["rate"]))
        pitch = int(np.clip(round(50 + 60 * math.log2(job["pitch"])), 5, 95))
        cmd = ["espeak-ng", "-v", v["name"], "-s", str(speed), "-p", str(pitch), "-w", wav, "--stdin"]
        if _run(cmd, _clean_for_engine(job["speak"])) and (r := _read(wav)):
            rec = finish(r[0], r[1], job, pitch_by_resampling=False)
            if rec:
                out.append(rec)
    return out


def synth_flite(jobs: list[dict], tmpdir: str) -> list[dict]:
    out = []
    for job in jobs:
        v = ALL_VOICES[job["voice"]]
        wav, txt = os.path.join(tmpdir, "f.wav"), os.path.join(tmpdir, "f.txt")
        with open(txt, "w") as f:
            f.write(_clean_for_engine(job["speak"]) + "\n")
        stretch = job["rate"] * job["pitch"]
        cmd = ["flite", "-voice", v["name"], "--setf", f"duration_stretch={stretch:.3f}", "-f", txt, "-o", wav]
        if _run(cmd) and (r := _read(wav)):
            rec = finish(r[0], r[1], job, pitch_by_resampling=True)
            if rec:
                out.append(rec)
    return out


def synth_festival(jobs: list[dict], tmpdir: str) -> list[dict]:
    """One ``festival -b`` process for the whole chunk (voice loaded once)."""
    name = ALL_VOICES[jobs[0]["voice"]]["name"]
    lines = [f"({FESTIVAL_VOICES[name]})"]
    tmp_wavs = []
    for i, job in enumerate(jobs):
        wav = os.path.join(tmpdir, f"s{i}.wav")
        tmp_wavs.append(wav)
        if name == "slt_hts":
            semis = 12 * math.log2(job["pitch"])
            lines.append("(set! hts_engine_params (append cmu_us_slt_arctic_hts::hts_engine_params "
                         f"(list (list \"-r\" {1.0 / job['rate']:.3f}) (list \"-fm\" {semis:.2f}))))")
        else:
            lines.append(f"(Parameter.set 'Duration_Stretch {job['rate'] * job['pitch']:.3f})")
        text = _clean_for_engine(job["speak"])
        lines.append(f'(unwind-protect (begin (set! u (utt.synth (Utterance Text "{text}"))) '
                     f'(utt.save.wave u "{wav}" \'riff)) (print "FAILED"))')
    scm = os.path.join(tmpdir, "batch.scm")
    with open(scm, "w") as f:
        f.write("\n".join(lines) + "\n")
    _run(["festival", "-b", scm], timeout=60 + 20 * len(jobs))
    out = []
    for job, wav in zip(jobs, tmp_wavs):
        if os.path.exists(wav) and (r := _read(wav)):
            rec = finish(r[0], r[1], job, pitch_by_resampling=(name != "slt_hts"))
            if rec:
                out.append(rec)
    return out


def synth_pico(jobs: list[dict], tmpdir: str) -> list[dict]:
    out = []
    for job in jobs:
        v = ALL_VOICES[job["voice"]]
        wav = os.path.join(tmpdir, "p.wav")
        if _run(["pico2wave", "-l", v["name"], "-w", wav, _clean_for_engine(job["speak"])]) and (r := _read(wav)):
            rec = finish(r[0], r[1], job, pitch_by_resampling=True)
            if rec:
                out.append(rec)
    return out


def synth_rhvoice(jobs: list[dict], tmpdir: str) -> list[dict]:
    out = []
    for job in jobs:
        v = ALL_VOICES[job["voice"]]
        wav = os.path.join(tmpdir, "r.wav")
        rate = int(np.clip(round(100 / job["rate"]), 50, 200))
        pitch = int(np.clip(round(100 * job["pitch"]), 50, 200))
        cmd = ["RHVoice-test", "-p", v["name"], "-r", str(rate), "-t", str(pitch), "-o", wav]
        if _run(cmd, _clean_for_engine(job["speak"])) and (r := _read(wav)):
            rec = finish(r[0], r[1], job, pitch_by_resampling=False)
            if rec:
                out.append(rec)
    return out


def synth_piper(jobs: list[dict], tmpdir: str) -> list[dict]:
    from recipes.synth.piper_support import synthesize
    out = []
    for job in jobs:
        res = synthesize(job["speak"], length_scale=job["rate"])
        if res is None:
            continue
        wave, sr = res
        rec = finish(wave, sr, job, pitch_by_resampling=True)
        if rec:
            out.append(rec)
    return out


BACKENDS = {"espeak-ng": synth_espeak, "espeak-mbrola": synth_espeak, "festival": synth_festival,
            "flite": synth_flite, "pico2wave": synth_pico, "rhvoice": synth_rhvoice, "piper": synth_piper}


def synth_chunk(args: tuple[str, list[dict]]) -> tuple[str, list[dict]]:
    """Pool worker: synthesise one chunk, write its records to ``result_path``."""
    import json
    result_path, jobs = args
    engine = ALL_VOICES[jobs[0]["voice"]]["engine"]
    with tempfile.TemporaryDirectory(prefix="synth") as tmpdir:
        recs = BACKENDS[engine](jobs, tmpdir)
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, result_path)
    return result_path, recs
