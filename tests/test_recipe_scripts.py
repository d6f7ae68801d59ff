"""Recipes are scripts and a package at once: tests import them as ``from recipes.synth import
prepare``, and each still runs as ``python3 recipes/X/Y.py`` from the repository root, where
``recipes`` is not on the path (a script that imports another recipe module adds the checkout).

All scripts run in one fresh interpreter (one torch import instead of one per script), each as
``python3 SCRIPT --help`` would: ``sys.path[0]`` is the script's directory, the rest the
interpreter's own path (no checkout on it), no ``recipes`` module is loaded before it runs, and
whatever path entries a script adds are removed before the next. One script is also run as a
real subprocess and must print the same help, so the in-process run stays faithful."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.relative_to(ROOT) for p in ROOT.glob("recipes/*/*.py")
                 if 'if __name__ == "__main__":' in p.read_text())

# argv: the scripts (relative to the cwd, the repository root); prints {script: [exit code, stdout, stderr]}
DRIVER = r"""
import contextlib, io, json, os, runpy, sys, traceback

interpreter_path = sys.path[1:]  # sys.path[0] is '' for `python -c`: the cwd, which a script run does not get
results = {}
for script in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "recipes" or m.startswith("recipes.")]:
        del sys.modules[name]
    sys.path[:] = [os.path.dirname(os.path.abspath(script))] + interpreter_path
    sys.argv[:] = [script, "--help"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results[script] = [code, out.getvalue(), err.getvalue()]
sys.stdout.write(json.dumps(results))
"""


def _clean_env():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def help_runs():
    p = subprocess.run([sys.executable, "-c", DRIVER, *map(str, SCRIPTS)], cwd=ROOT, env=_clean_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_scripts_are_found():
    assert Path("recipes/synth/prepare.py") in SCRIPTS and Path("recipes/eval/run.py") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_recipe_runs_as_a_script(script, help_runs):
    code, out, err = help_runs[str(script)]
    assert code == 0, err
    assert out.startswith("usage: ")


def test_in_process_run_matches_a_real_script_run(help_runs):
    script = "recipes/realspeech/prepare.py"  # imports another recipe module (needs its path entry), not torch
    p = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env=_clean_env(), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == help_runs[script][1]
