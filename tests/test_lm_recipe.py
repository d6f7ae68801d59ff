"""recipes/lm: Gutenberg text from clones and git directories, evaluation text kept out, a small LM."""

import json
import subprocess

import pytest

from asr.lm import arpa_vocabulary
from recipes.lm import gutenberg
from recipes.lm.prepare import main as prepare

BOOK = """The Project Gutenberg EBook of A Test, by Nobody

This eBook is for the use of anyone anywhere at no cost.

*** START OF THIS PROJECT GUTENBERG EBOOK A TEST ***

Produced by Some Volunteer

CHAPTER I

The cat sat on the mat. Mr. Brown saw the cat! Did the dog run
to the house? The dog ran to the house.

[Illustration: a dog]

It was 1984 and the big dog had 3 bones.

*** END OF THIS PROJECT GUTENBERG EBOOK A TEST ***

Full licence text: Project Gutenberg is a registered trademark. the licence words.
"""


def make_clone(path, text=BOOK, name="123.txt"):
    path.mkdir(parents=True)
    (path / name).write_text(text, encoding="utf-8")
    (path / ".git").mkdir()  # a clone's work tree is read directly
    return path


def make_git_dir(tmp_path, text=BOOK, name="456-0.txt"):
    work = tmp_path / "work"
    work.mkdir()
    (work / name).write_text(text, encoding="utf-8")
    (work / "README.rst").write_text("readme\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "book"], check=True)
    bare = tmp_path / "books" / "A-Test_456.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def test_boilerplate_and_sentences():
    body = gutenberg.strip_boilerplate(BOOK)
    assert "licence" not in body and "Gutenberg" not in body
    sents = list(gutenberg.sentences(body))
    assert sents == ["The cat sat on the mat.", "Mr. Brown saw the cat!", "Did the dog run to the house?",
                     "The dog ran to the house.", "It was 1984 and the big dog had 3 bones."]
    assert gutenberg.strip_boilerplate("no markers here\n") is None
    assert gutenberg.main_text_name(["123-8.txt", "123.txt", "README.rst"]) == "123.txt"
    assert gutenberg.main_text_name(["123-8.txt", "123-0.txt"]) == "123-0.txt"
    assert gutenberg.main_text_name(["README.rst"]) is None


def test_recipe_end_to_end(tmp_path):
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git not installed")
    books = tmp_path / "books"
    make_clone(books / "A-Test_123")
    bare = make_git_dir(tmp_path, BOOK.replace("cat", "lion"))
    make_clone(books / "No-Markers_9", "just text. No markers.\n", "9.txt")
    assert gutenberg.read_book(str(bare))[0] == "456-0.txt"
    ev = tmp_path / "eval.jsonl"
    ev.write_text("".join(json.dumps({"audio": "x.wav", "text": t}) + "\n"
                          for t in ["The dog ran to the house.", "never seen sentence"]))
    data = tmp_path / "lm"
    argv = ["--gutenberg", str(books), "--exclude", str(ev), "--data-dir", str(data),
            "--vocab-size", "8", "--prune", "0", "0", "0"]
    assert prepare(argv) == 0
    src = json.loads((data / "sources.json").read_text())
    assert src["gutenberg_total"]["books"] == 2 and "No-Markers_9" in src["skipped_books"]
    text = (data / "text" / "lm_text.txt").read_text().splitlines()
    assert "the dog ran to the house" not in text  # evaluation sentence filtered out
    assert "it was nineteen eighty four and the big dog had three bones" in text  # training normalisation
    ov = json.loads((data / "overlap.json").read_text())["eval"][str(ev)]
    assert ov["distinct_sentences"] == 2 and ov["found_in_lm_text"] == 1 and ov["found_per_source"] == {"gutenberg": 1}
    info = json.loads((data / "general_3gram.json").read_text())
    assert info["vocab"] == 8 and len(arpa_vocabulary(str(data / "general_3gram.arpa.gz"))) == 8
    assert prepare(argv) == 0  # every stage done: skipped


def test_recipe_needs_a_source(tmp_path, capsys):
    ev = tmp_path / "e.txt"
    ev.write_text("x\n")
    with pytest.raises(SystemExit):
        prepare(["--exclude", str(ev), "--data-dir", str(tmp_path / "d")])
    assert "no text source" in capsys.readouterr().err
