"""JSON-lines files: the one reader and atomic writer of manifests and result files.

Kept free of torch so that recipes and tools that only move manifests start fast."""

from __future__ import annotations

import json
import os
from typing import Iterable, List

__all__ = ["read_jsonl", "write_jsonl"]


def read_jsonl(path) -> List[dict]:
    """The records of a JSON-lines file, as written (no checks; see :func:`asr.data.read_manifest`)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, records: Iterable[dict]) -> int:
    """Write records as JSON lines atomically (a temporary file renamed over ``path``); returns their number."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n
