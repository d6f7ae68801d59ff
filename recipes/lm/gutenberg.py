"""Project Gutenberg books in git repositories (GITenberg) -> plain sentences.

A book is a clone (work tree) or a bare git directory of one GITenberg repository, e.g.::

    git clone --depth 1 https://github.com/GITenberg/Pride-and-Prejudice_1342

Its main text is the top-level ``<id>-0.txt`` (UTF-8), else ``<id>.txt``, else ``<id>-8.txt``
(Latin-1). Only the text between the ``*** START OF ... PROJECT GUTENBERG ...`` and ``*** END OF
...`` lines is kept (older files: after ``*END*THE SMALL PRINT``, before ``End of (the) Project
Gutenberg``), so the licence, header and footer never reach the LM; a book without these
markers is skipped. Paragraphs with no lower-case letter (headings, tables), with
``[Illustration`` or naming Gutenberg or a producer / transcriber are dropped; the rest is split
into sentences.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

__all__ = ["read_book", "strip_boilerplate", "sentences", "find_books", "main_text_name", "book_id"]

_RE_MAIN = re.compile(r"^(\d+)(-0|-8)?\.txt$")
_RE_START = re.compile(r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|^\s*\*END\*THE SMALL PRINT", re.I)
_RE_END = re.compile(r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|^\s*End of (the )?Project Gutenberg", re.I)
_RE_DROP = re.compile(r"\[Illustration|gutenberg|produced by|transcriber|e-?text|ebook|^\s*\[?footnote", re.I)
_RE_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]_]*\s+(?=[\"'(\[_]?[A-Z])")
_RE_ABBREV_END = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Capt|Lt|Rev|No|Vol|Mt)\.$")
_RE_WS = re.compile(r"\s+")


def _git_dir(path: Path) -> Optional[Path]:
    if (path / ".git").exists():
        return None  # a clone: read its work tree
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path  # a bare repository or a .git directory
    return None


def main_text_name(names: List[str]) -> Optional[str]:
    """The book's main text among top-level file names: ``<id>-0.txt`` > ``<id>.txt`` > ``<id>-8.txt``."""
    rank = {"-0": 0, None: 1, "-8": 2}
    cands = [(rank[m.group(2)], n) for n in names if (m := _RE_MAIN.match(n))]
    return min(cands)[1] if cands else None


def read_book(path: str) -> Tuple[str, str]:
    """(main text file name, its text) of one GITenberg clone or git directory."""
    p = Path(path)
    gd = _git_dir(p)
    if gd is None and (p / ".git").is_dir() and main_text_name([f.name for f in p.iterdir() if f.is_file()]) is None:
        gd = p / ".git"  # a repository without a checked-out work tree
    if gd is not None:
        names = subprocess.run(["git", "--git-dir", str(gd), "ls-tree", "--name-only", "HEAD"],
                               capture_output=True, text=True).stdout.split()
    else:
        names = [f.name for f in p.iterdir() if f.is_file()]
    name = main_text_name(names)
    if name is None:
        raise ValueError(f"{path}: no <id>.txt / <id>-0.txt / <id>-8.txt main text")
    if gd is not None:
        got = subprocess.run(["git", "--git-dir", str(gd), "show", f"HEAD:{name}"], capture_output=True)
        if got.returncode != 0:  # e.g. a large file missing from a partial copy
            raise ValueError(f"{path}: git show HEAD:{name} failed: {got.stderr.decode(errors='replace').strip()}")
        data = got.stdout
    else:
        data = (p / name).read_bytes()
    if name.endswith("-8.txt"):
        return name, data.decode("latin-1")
    try:
        return name, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return name, data.decode("latin-1")


def strip_boilerplate(text: str) -> Optional[str]:
    """The body between the Gutenberg start and end markers, or None if they are missing."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if _RE_START.search(ln)), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if _RE_END.search(lines[i])), len(lines))
    if end == len(lines):
        return None
    return "\n".join(lines[start + 1 : end])


def sentences(body: str) -> Iterator[str]:
    """Sentences of a book body: paragraphs (blank-line separated) joined and split at . ! ?"""
    for para in re.split(r"\n\s*\n", body):
        para = _RE_WS.sub(" ", para).strip()
        if not para or not any(c.islower() for c in para) or _RE_DROP.search(para):
            continue
        parts = _RE_SENT_SPLIT.split(para)
        buf = ""
        for s in parts:  # re-join splits after titles such as "Mr." and "St."
            buf = f"{buf} {s}".strip()
            if not _RE_ABBREV_END.search(buf):
                yield buf
                buf = ""
        if buf:
            yield buf


def find_books(paths: List[str]) -> List[str]:
    """Each path is a book (clone or git directory) or a folder of them (one level down)."""
    out = []
    for path in paths:
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"no such directory: {path}")
        if (p / ".git").exists() or _git_dir(p) is not None:
            out.append(str(p))
        else:
            subs = sorted(str(s) for s in p.iterdir() if s.is_dir() and ((s / ".git").exists() or _git_dir(s)))
            if not subs:
                raise ValueError(f"{path}: neither a git repository nor a folder of them")
            out += subs
    return out


def book_id(path: str) -> str:
    p = Path(path).resolve()
    while p.name in (".git", "repo") and p.parent != p:
        p = p.parent
    name = p.name
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[-80:] or "book"


