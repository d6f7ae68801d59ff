"""Recipes are scripts and a package at once: tests import them as ``from recipes.synth import
prepare``, and each still runs as ``python3 recipes/X/Y.py`` from the repository root, where
``recipes`` is not on the path (a script that imports another recipe module adds the checkout)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.relative_to(ROOT) for p in ROOT.glob("recipes/*/*.py")
                 if 'if __name__ == "__main__":' in p.read_text())


def test_the_scripts_are_found():
    assert Path("recipes/synth/prepare.py") in SCRIPTS and Path("recipes/eval/run.py") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_recipe_runs_as_a_script(script):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: ")
