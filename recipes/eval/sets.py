"""The test sets of recipes/eval/run.py and the cache keys of its finished work."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def resolve_sets(names, data_dir: str, out: Path, limit: int = 0):
    """-> list of (set name, manifest path, source path).

    ``limit``: keep N utterances spread evenly over each set (manifests are often
    ordered by voice, so the first N would be one voice); both systems read this subset.

    Every set is rewritten as ``OUT/manifests/SET.jsonl`` with absolute audio paths (the
    PocketSphinx script resolves paths against its working directory), LibriSpeech
    directories included; a file is only rewritten when its content changes, so cache
    keys stay valid.
    """
    from asr.corpora import load_inputs

    sets = []
    for name in names:
        p = Path(name)
        cand = [p, Path(data_dir) / name, Path(data_dir) / f"{name}.jsonl"]
        path = next((c for c in cand if c.exists()), None)
        if path is None:
            log(f"WARNING: set {name!r} not found (looked for {', '.join(map(str, cand[1:]))}); skipped. "
                "Is the corpus recipe (recipes/synth/prepare.py) finished?")
            continue
        utts = load_inputs([str(path)])
        set_name = utts[0].extra["set"]
        if limit and limit < len(utts):
            utts = [utts[i * len(utts) // limit] for i in range(limit)]
        if any(s == set_name for s, _, _ in sets):
            raise SystemExit(f"run.py: error: two sets are named {set_name!r}")
        manifest = out / "manifests" / f"{set_name}.jsonl"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({**u.to_dict(), "audio": os.path.abspath(u.audio)}, ensure_ascii=False) + "\n"
                       for u in utts)
        if not manifest.exists() or manifest.read_text(encoding="utf-8") != text:
            manifest.write_text(text, encoding="utf-8")
        sets.append((set_name, str(manifest.resolve()), str(path.resolve())))
    if not sets:
        raise SystemExit("run.py: error: no test set found")
    return sets


def file_key(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime": int(st.st_mtime)}


def cached(dirpath: Path, key: dict, force: bool) -> bool:
    """Whether ``dirpath`` holds finished results (a ``summary.json``) made with inputs ``key``."""
    kf = dirpath / "key.json"
    if force or not kf.exists() or not (dirpath / "summary.json").exists():
        return False
    return json.loads(kf.read_text()) == json.loads(json.dumps(key))


def mark_done(dirpath: Path, key: dict) -> None:
    (dirpath / "key.json").write_text(json.dumps(key, indent=1))
