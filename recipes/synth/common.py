"""Small helpers shared by the synthetic speech recipe's stages: a timestamped log line and an
atomically written text file."""

from __future__ import annotations

import os
import time


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_lines(path: str, lines: list[str]) -> None:
    """``lines`` to ``path``, one a line, through a temporary file (no half-written file on a kill)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)
