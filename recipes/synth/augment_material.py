"""Stage 6: material for online augmentation (asr/augment.py).

Writes to ``<aug_dir>``:

* ``moh/*.wav``   music-on-hold tracks (asterisk-moh-opsound-wav, 8 kHz originals) at 16 kHz mono;
* ``rirs.npz``    a bank of simulated room impulse responses (pyroomacoustics image-source
  shoebox rooms): ``rirs`` float32 [n, max_len] (zero padded, direct path at the start, peak 1),
  ``lengths`` int [n], ``rt60`` float [n] (target, s), ``dims`` float [n, 3] (m),
  ``distance`` float [n] (source-microphone, m), ``fs`` = 16000;
* ``aug.json``    a summary.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import numpy as np

FS = 16000
MOH_DIRS = ["/usr/share/asterisk/moh"]


def _moh_files() -> list[str]:
    files = []
    for d in MOH_DIRS:
        files += glob.glob(os.path.join(d, "*.wav"))
    if not files:
        out = subprocess.run(["dpkg", "-L", "asterisk-moh-opsound-wav"], capture_output=True, text=True).stdout
        files = [p for p in out.split() if p.endswith(".wav")]
    return sorted(files)


def convert_moh(out_dir: str) -> list[dict]:
    import soundfile as sf
    from scipy.signal import resample_poly
    os.makedirs(out_dir, exist_ok=True)
    info = []
    for path in _moh_files():
        x, sr = sf.read(path, dtype="float32")
        if x.ndim > 1:
            x = x.mean(axis=1)
        from math import gcd
        g = gcd(FS, sr)
        y = resample_poly(x, FS // g, sr // g).astype(np.float32)
        peak = float(np.abs(y).max()) or 1.0
        y = y * (0.9 / peak)
        out = os.path.join(out_dir, os.path.basename(path))
        sf.write(out, y, FS, subtype="PCM_16")
        info.append({"file": out, "source": path, "seconds": round(len(y) / FS, 2)})
    return info


def _one_room(seed: int) -> tuple[np.ndarray, dict]:
    import pyroomacoustics as pra
    rng = np.random.default_rng(seed)
    dims = np.array([rng.uniform(3, 12), rng.uniform(3, 10), rng.uniform(2.4, 4.5)])
    rt60 = float(rng.uniform(0.15, 0.9))
    try:
        e_abs, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # room too small for this rt60
        rt60 = 0.3
        e_abs, max_order = pra.inverse_sabine(rt60, dims)
    max_order = int(min(max_order, 14))  # bounds the cost; late tail is approximated
    room = pra.ShoeBox(dims, fs=FS, materials=pra.Material(e_abs), max_order=max_order)
    margin = 0.4
    mic = np.array([rng.uniform(margin, d - margin) for d in dims[:2]] + [rng.uniform(0.8, 1.8)])
    for _ in range(100):
        src = np.array([rng.uniform(margin, d - margin) for d in dims[:2]] + [rng.uniform(1.2, 1.9)])
        dist = float(np.linalg.norm(src - mic))
        if 0.5 <= dist <= 5.0:
            break
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    onset = max(0, int(np.argmax(np.abs(h))) - 16)  # drop propagation delay, keep a few taps
    h = h[onset:]
    # The image-source model is truncated (max_order), so its late tail decays too early:
    # replace everything after ~80 ms by exponentially decaying noise with the target RT60,
    # level-matched to the image-source response over 30-80 ms and cross-faded in.
    n = int(FS * min(1.2, 1.1 * rt60 + 0.1))
    h = np.pad(h, (0, max(0, n - len(h))))[:n]
    t = np.arange(n) / FS
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    win = (t >= 0.03) & (t < 0.08)
    scale = np.sqrt(np.mean(h[win] ** 2) / (np.mean(tail[win] ** 2) + 1e-20))
    w = np.clip((t - 0.03) / 0.05, 0.0, 1.0)
    h = (1 - w) * h + w * scale * tail
    h = h / (np.abs(h).max() + 1e-12)
    return h.astype(np.float32), {"rt60": rt60, "dims": dims.tolist(), "distance": dist}


def make_rir_bank(path: str, n_rooms: int, seed: int, jobs: int = 2) -> dict:
    import multiprocessing as mp
    from tqdm import tqdm
    seeds = [seed * 100003 + i for i in range(n_rooms)]
    with mp.get_context("fork").Pool(jobs) as pool:
        res = list(tqdm(pool.imap(_one_room, seeds, chunksize=4), total=n_rooms, desc="rooms", mininterval=10))
    lengths = np.array([len(h) for h, _ in res])
    bank = np.zeros((n_rooms, lengths.max()), dtype=np.float32)
    for i, (h, _) in enumerate(res):
        bank[i, : len(h)] = h
    meta = [m for _, m in res]
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, rirs=bank, lengths=lengths, fs=FS,
                        rt60=np.array([m["rt60"] for m in meta], dtype=np.float32),
                        dims=np.array([m["dims"] for m in meta], dtype=np.float32),
                        distance=np.array([m["distance"] for m in meta], dtype=np.float32))
    os.replace(tmp, path)
    return {"n": n_rooms, "max_len": int(lengths.max()), "mean_len_s": float(lengths.mean() / FS),
            "rt60_range": [float(min(m["rt60"] for m in meta)), float(max(m["rt60"] for m in meta))]}


def make_aug_material(aug_dir: str, seed: int = 1234, n_rooms: int = 300, jobs: int = 2) -> dict:
    os.makedirs(aug_dir, exist_ok=True)
    summary = {"moh": convert_moh(os.path.join(aug_dir, "moh")),
               "rirs": make_rir_bank(os.path.join(aug_dir, "rirs.npz"), n_rooms, seed, jobs)}
    with open(os.path.join(aug_dir, "aug.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary["rirs"]), flush=True)
    return summary
