"""tools/filter_manifest.py: drops by field pattern, keeps the rest with absolute audio paths.

The tool's ``main(argv)`` is called in this process (a subprocess would only add an interpreter
start and a torch import)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "filter_manifest.py"


@pytest.fixture(scope="module")
def tool_main():
    return runpy.run_path(str(TOOL))["main"]


def test_drop_by_engine_and_voice(tmp_path, tool_main, capsys):
    recs = [{"audio": "a.wav", "text": "a", "duration": 3600.0, "engine": "espeak-mbrola", "voice": "mbrola:mb-us1"},
            {"audio": "b.wav", "text": "b", "duration": 1800.0, "engine": "festival", "voice": "festival:us2"},
            {"audio": "c.wav", "text": "c", "duration": 900.0, "engine": "festival", "voice": "festival:kal"},
            {"audio": "/x/d.wav", "text": "d", "duration": 900.0, "engine": "flite", "voice": "flite:us1x"}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    dst = tmp_path / "sub" / "out.jsonl"
    dst.parent.mkdir()
    assert tool_main([str(src), str(dst), "--drop", "engine", "mbrola",
                      "--drop", "voice", r"festival:(us[123]|en1)$"]) == 0
    kept = [json.loads(x) for x in dst.read_text().splitlines()]
    assert [r["text"] for r in kept] == ["c", "d"]
    assert kept[0]["audio"] == str(tmp_path / "c.wav") and kept[1]["audio"] == "/x/d.wav"
    assert "kept 2 (0.50 h), dropped 2 (1.50 h)" in capsys.readouterr().out


def test_bad_pattern_is_an_error(tmp_path, tool_main, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("")
    with pytest.raises(SystemExit) as e:
        tool_main([str(src), str(tmp_path / "o.jsonl"), "--drop", "voice", "("])
    assert e.value.code == 2 and "bad --drop pattern" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
