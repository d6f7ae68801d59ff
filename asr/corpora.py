"""Reading test and training corpora: JSON-lines manifests and LibriSpeech-layout directories.

A LibriSpeech-layout tree holds ``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` transcripts,
lines ``UTT-ID TEXT``, next to ``UTT-ID.flac`` (or ``.wav``), found recursively.
:func:`read_librispeech_dir` reads one as :class:`asr.data.Utterance` items (``asr eval``);
:func:`librispeech_records` as manifest records (``recipes/librispeech/prepare.py``); both
parse utterance ids with :func:`parse_utterance_id`. :func:`load_inputs` reads a mix of
manifests and directories for evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .data import ManifestError, Utterance, read_manifest

__all__ = ["parse_utterance_id", "iter_librispeech", "read_librispeech_dir", "librispeech_records", "load_inputs"]


def parse_utterance_id(uid: str) -> Optional[Tuple[str, str]]:
    """``(speaker, chapter)`` of a LibriSpeech id ``SPEAKER-CHAPTER-NNNN``
    (``"1089-134686-0000"`` -> ``("1089", "134686")``); None for ids of another shape."""
    parts = uid.split("-")
    return (parts[0], parts[1]) if len(parts) == 3 else None


def _audio_file(folder: Path, uid: str) -> Optional[Path]:
    return next((folder / (uid + ext) for ext in (".flac", ".wav") if (folder / (uid + ext)).exists()), None)


def iter_librispeech(root) -> Iterator[Utterance]:
    """The utterances of a LibriSpeech-layout tree, transcript files in sorted order, lines in
    file order; raw text. ``extra``: ``id``, and ``speaker`` and ``chapter`` when the id has
    their shape. Errors name the transcript file and line."""
    import soundfile as sf

    for tf in sorted(Path(root).rglob("*.trans.txt")):
        with open(tf, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                audio = _audio_file(tf.parent, uid)
                if audio is None:
                    raise ManifestError(f"{tf}:{n}: audio file not found: {tf.parent / (uid + '.flac')}")
                try:
                    duration = sf.info(str(audio)).duration
                except Exception as e:  # noqa: BLE001  (libsndfile error types vary by version)
                    raise ManifestError(f"{tf}:{n}: cannot read audio {audio}: {e}") from None
                extra = {"id": uid}
                ids = parse_utterance_id(uid)
                if ids:
                    extra.update(speaker=ids[0], chapter=ids[1])
                yield Utterance(str(audio), text, float(duration), extra)


def read_librispeech_dir(root) -> List[Utterance]:
    """All utterances of a LibriSpeech-layout tree (``*.trans.txt`` + ``.flac``/``.wav``).

    ``speaker`` and ``chapter`` come from ``SPEAKER-CHAPTER-NNNN`` utterance ids. Errors
    name the transcript file and line.
    """
    root = Path(root)
    if next(root.rglob("*.trans.txt"), None) is None:
        raise ValueError(f"{root}: no *.trans.txt transcripts found (expected a LibriSpeech-layout directory)")
    return list(iter_librispeech(root))


def librispeech_records(subset_dir) -> Iterator[dict]:
    """Manifest records of one LibriSpeech subset directory, as :func:`iter_librispeech` finds
    them: ``audio`` (absolute path), ``text`` (normalised), ``duration`` (s, 3 decimals),
    ``speaker``, ``chapter``, ``id``. An id not shaped ``SPEAKER-CHAPTER-NNNN`` is an error."""
    from .text import normalize

    for u in iter_librispeech(subset_dir):
        uid = u.extra["id"]
        if "speaker" not in u.extra:
            raise ManifestError(f"{u.audio}: utterance id {uid!r} is not SPEAKER-CHAPTER-NNNN")
        yield {"audio": str(Path(u.audio).resolve()), "text": normalize(u.text), "duration": round(u.duration, 3),
               "speaker": u.extra["speaker"], "chapter": u.extra["chapter"], "id": uid}


def load_inputs(paths: Sequence[str], limit: int = 0) -> List[Utterance]:
    """Utterances of manifests and LibriSpeech directories, raw (unnormalised) text.

    Each utterance's ``extra`` gains ``id`` (when missing: the audio file's stem) and
    ``set`` (the manifest's file stem / the directory's name). ``limit`` keeps the
    first N utterances of each input.
    """
    utts: List[Utterance] = []
    names: Dict[str, int] = {}
    for p in paths:
        path = Path(p)
        if path.is_dir():
            got = read_librispeech_dir(path)
            name = path.resolve().name
        elif path.exists():
            got = read_manifest(path, normalise=False)
            name = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
        else:
            raise FileNotFoundError(f"{p}: no such manifest or directory")
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name}#{names[name]}"
        if limit:
            got = got[:limit]
        for u in got:
            u.extra.setdefault("id", Path(u.audio).stem)
            u.extra["id"] = str(u.extra["id"])
            u.extra["set"] = name
        utts += got
    if not utts:
        raise ValueError(f"no utterances to evaluate in {', '.join(map(str, paths))}")
    return utts
