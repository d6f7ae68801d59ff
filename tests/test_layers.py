"""Layers: `asr` (engine) never imports `streaming` (serving); `streaming` builds on `asr`.

The one exception is the composition root, ``asr/cli.py``: its ``COMMANDS`` table names the
serving commands' modules, imported by ``importlib`` when the parser is built (dispatch only).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_NAME = re.compile(r"streaming(\.\w+)*")


def _commands_table(tree: ast.Module) -> set:
    """Nodes of asr/cli.py's ``COMMANDS = {...}`` assignment (the allowed dispatch)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMMANDS" for t in node.targets):
            return set(ast.walk(node))
    raise AssertionError("asr/cli.py has no COMMANDS table")


def streaming_references(path: Path) -> list:
    """Imports of `streaming` anywhere in a module (top level, functions, classes), and
    strings naming a `streaming` module (``importlib.import_module("streaming.x")``)."""
    tree = ast.parse(path.read_text(), str(path))
    allowed = _commands_table(tree) if path == ROOT / "asr" / "cli.py" else set()
    found = []
    for node in ast.walk(tree):
        if node in allowed:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if MODULE_NAME.fullmatch(node.value) else []
        else:
            continue
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        found += [f"{where}:{node.lineno}: {n}" for n in names
                  if n == "streaming" or n.startswith("streaming.")]
    return found


def test_asr_never_imports_streaming():
    sources = sorted((ROOT / "asr").rglob("*.py"))
    assert len(sources) > 10
    found = [ref for p in sources for ref in streaming_references(p)]
    assert not found, "the engine imports the serving layer:\n" + "\n".join(found)


def test_the_check_sees_function_level_and_importlib_imports(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text("import os\n\ndef f():\n    from streaming.stream import Stream\n    import streaming\n"
                 "    return importlib.import_module('streaming.server'), 'streaming is fun'\n")
    assert [r.split(": ")[1] for r in streaming_references(p)] == ["streaming.stream", "streaming", "streaming.server"]


def test_the_cli_dispatch_is_the_only_exception():
    from asr.cli import COMMANDS

    assert {m for m in COMMANDS.values() if m.startswith("streaming.")} == {
        "streaming.serve", "streaming.client", "streaming.mic"}


def test_streaming_does_not_import_the_cli():
    """Serving commands share errors through asr.errors, not the CLI that dispatches to them."""
    for p in sorted((ROOT / "streaming").rglob("*.py")):
        tree = ast.parse(p.read_text(), str(p))
        mods = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert "asr.cli" not in mods, p


def test_importing_every_engine_module_loads_no_serving_module():
    code = ("import pkgutil, importlib, sys, asr\n"
            "for m in pkgutil.walk_packages(asr.__path__, 'asr.'):\n"
            "    if m.name != 'asr.__main__':\n"
            "        importlib.import_module(m.name)\n"
            "print(sorted(m for m in sys.modules if m == 'streaming' or m.startswith('streaming.')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_engine_api_from_the_package():
    import asr
    from asr import Recognizer, Result, Stream, StreamClosedError, Word, decode_streams, load_model  # noqa: F401

    assert asr.Stream.__module__ == "asr.stream" and callable(asr.load_model)
    assert not (ROOT / "streaming" / "stream.py").exists()
