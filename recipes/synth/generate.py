"""Audio of the synthetic speech recipe (stages 2-4 and 9): plan utterances over voices, synthesise
them in chunks over worker processes, and top up until a split reaches its size.

A split's work lives under ``<data-dir>/audio/<split>/``: ``_plans/rN.json`` (the jobs of round N,
written before any audio) and ``_chunks/*.jsonl`` (the manifest records of one finished chunk), so
an interrupted run resumes where it stopped and redoes nothing.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import sys
import time

import numpy as np

from asr.jsonl import read_jsonl
from recipes.synth.common import log

SEC_PER_CHAR = 0.05  # planning estimate of speech seconds per character at rate 1.0 (measured: ~0.05)
MAX_ROUNDS = 4  # the first round and up to three top-ups


def progress(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, mininterval=1.0 if sys.stderr.isatty() else 20.0,
                file=sys.stderr, dynamic_ncols=True)


def estimate_seconds(speak: str, rate: float) -> float:
    return (SEC_PER_CHAR * len(speak) + 0.25) * rate + 0.4


def hash_split(split: str) -> int:
    """A seed component of the split's name (stable across runs, unlike ``hash``)."""
    return sum(ord(c) * 31 ** i for i, c in enumerate(split)) % (2 ** 31)


def plan_jobs(split: str, pool, voices: dict, rng: np.random.Generator, start: int, *,
              target_seconds: float | None = None, n_utts: int | None = None, tag: str = "r0",
              audio_root: str = "", semitones: float = 3.0, balanced: bool = False):
    """Assign pool sentences (from index ``start``, wrapping) to voices by weight
    (``balanced``: cycle through the voices in shuffled order, equal counts)."""
    names = sorted(voices)
    w = np.array([voices[n]["weight"] for n in names], dtype=np.float64)
    w /= w.sum()
    jobs, total, i = [], 0.0, start
    while (target_seconds is not None and total < target_seconds) or (n_utts is not None and len(jobs) < n_utts):
        norm, speak = pool[i % len(pool)]
        if balanced:
            if len(jobs) % len(names) == 0:
                cycle = rng.permutation(len(names))
            vname = names[cycle[len(jobs) % len(names)]]
        else:
            vname = names[rng.choice(len(names), p=w)]
        engine = voices[vname]["engine"]
        rate = float(rng.uniform(0.85, 1.2))
        semi = float(rng.uniform(-1, 1)) * (semitones * 1.6 if engine == "espeak-ng" else semitones)
        uid = f"{split}-{tag}-{i:06d}"
        vdir = vname.replace(":", "_").replace("+", "_")
        jobs.append({"uid": uid, "text": norm, "speak": speak, "voice": vname, "rate": round(rate, 3),
                     "pitch": round(2 ** (semi / 12), 4), "level": round(float(rng.uniform(0.3, 0.95)), 3),
                     "pad": [round(float(rng.uniform(0.1, 0.3)), 3), round(float(rng.uniform(0.1, 0.3)), 3)],
                     "out": os.path.join(audio_root, vdir, uid + ".wav")})
        total += estimate_seconds(speak, rate)
        i += 1
    return jobs, i, total


def make_chunks(jobs: list[dict], chunk_dir: str, tag: str, seed: int) -> list[tuple[str, list[dict]]]:
    """Jobs grouped by voice into chunks (one engine start per chunk), in a seeded random order."""
    by_voice: dict[str, list[dict]] = {}
    for j in jobs:
        by_voice.setdefault(j["voice"], []).append(j)
    from recipes.synth.engines import ALL_VOICES
    chunks = []
    for v, js in sorted(by_voice.items()):
        size = 40 if ALL_VOICES[v]["engine"] == "festival" else 25
        for k in range(0, len(js), size):
            cid = f"{tag}-{v.replace(':', '_').replace('+', '_')}-{k // size:04d}"
            chunks.append((os.path.join(chunk_dir, cid + ".jsonl"), js[k:k + size]))
    random.Random(seed).shuffle(chunks)
    return chunks


def run_chunks(chunks, jobs: int, desc: str) -> list[dict]:
    """Synthesise the chunks not finished yet over ``jobs`` processes -> the records of all chunks."""
    from recipes.synth.engines import synth_chunk
    records, todo = [], []
    for path, js in chunks:
        if os.path.exists(path):
            records += read_jsonl(path)
        else:
            todo.append((path, js))
    if todo:
        bar = progress(sum(len(js) for _, js in todo), desc)
        ctx = mp.get_context("fork")
        with ctx.Pool(jobs) as pool:
            sizes = {p: len(js) for p, js in todo}
            for path, recs in pool.imap_unordered(synth_chunk, todo):
                records += recs
                bar.update(sizes[path])
        bar.close()
    return records


def plan_round(args, split: str, pool, voices: dict, rnd: int, start: int, records: list[dict], calib: float, *,
               audio_root: str, target_hours: float | None, n_utts: int | None, semitones: float,
               balanced: bool) -> dict | None:
    """The plan of round ``rnd`` (read back if written by an earlier run), or None when the split
    is already big enough: ``{"jobs", "next" (pool index to continue from), "estimated_seconds"}``."""
    plan_path = os.path.join(audio_root, "_plans", f"r{rnd}.json")
    if os.path.exists(plan_path):
        with open(plan_path) as f:
            return json.load(f)
    rng = np.random.default_rng([args.seed, rnd, hash_split(split)])
    tag = f"r{rnd}"
    if target_hours is not None:
        need = target_hours * 3600 - sum(r["duration"] for r in records)
        if need <= 0:
            return None
        js, nxt, est = plan_jobs(split, pool, voices, rng, start, target_seconds=need * 1.03 / calib,
                                 tag=tag, audio_root=audio_root, semitones=semitones)
    else:
        need_n = n_utts - len(records)
        if need_n <= 0 or rnd > 0 and need_n < 0.01 * n_utts:
            return None
        js, nxt, est = plan_jobs(split, pool, voices, rng, start, n_utts=need_n, tag=tag,
                                 audio_root=audio_root, semitones=semitones, balanced=balanced)
    plan = {"jobs": js, "next": nxt, "estimated_seconds": est}
    tmp = plan_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(plan, f)
    os.replace(tmp, plan_path)
    return plan


def generate(args, split: str, pool, voices: dict, *, target_hours: float | None = None,
             n_utts: int | None = None, semitones: float = 3.0, balanced: bool = False) -> list[dict]:
    """Synthesise a split (``args``: ``data_dir``, ``seed``, ``jobs``); audio-hour targets are met
    with top-up rounds, each planned from the shortfall and the previous rounds' estimate error."""
    audio_root = os.path.join(args.data_dir, "audio", split)
    chunk_dir = os.path.join(audio_root, "_chunks")
    os.makedirs(chunk_dir, exist_ok=True)
    os.makedirs(os.path.join(audio_root, "_plans"), exist_ok=True)
    records: list[dict] = []
    start, calib = 0, 1.0
    for rnd in range(MAX_ROUNDS):
        tag = f"r{rnd}"
        plan = plan_round(args, split, pool, voices, rnd, start, records, calib, audio_root=audio_root,
                          target_hours=target_hours, n_utts=n_utts, semitones=semitones, balanced=balanced)
        if plan is None:
            break
        start = plan["next"]
        t0 = time.time()
        recs = run_chunks(make_chunks(plan["jobs"], chunk_dir, tag, args.seed), args.jobs,
                          f"{split} {tag}")
        got = sum(r["duration"] for r in recs)
        calib = max(0.3, got / max(plan["estimated_seconds"], 1.0))
        log(f"{split} {tag}: {len(recs)}/{len(plan['jobs'])} utterances, {got / 3600:.2f} h "
            f"(estimated {plan['estimated_seconds'] / 3600:.2f} h) in {time.time() - t0:.0f} s")
        records += recs
        if target_hours is None and n_utts is None:
            break
    records.sort(key=lambda r: r["audio"])
    return records
