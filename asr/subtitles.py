"""Segments of a transcript and the subtitle formats (SubRip, WebVTT) of ``asr transcribe``.

A long file's words are cut into segments by the endpointer's rule applied to word times: a
pause of at least ``trailing_silence_s`` between two words, or a segment already
``max_segment_s`` long, starts a new segment at the next word. Working on the final words (not
on when an endpoint happened to be noticed while feeding) keeps the output identical for any
``--chunk-ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

from .decoding import EndpointConfig, Word

__all__ = ["Segment", "segment_words", "to_srt", "to_vtt", "FORMATS"]

FORMATS = ("txt", "json", "srt", "vtt")


@dataclass(frozen=True)
class Segment:
    start: float  # seconds: first word's start
    end: float  # seconds: last word's end
    text: str  # the segment's words, space-separated

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        return cls(float(d["start"]), float(d["end"]), str(d["text"]))


def segment_words(words: Sequence[Word], cfg: EndpointConfig = EndpointConfig()) -> List[Segment]:
    """Consecutive words grouped into segments (see the module docstring); no words: no segments."""
    groups: List[List[Word]] = []
    for w in words:
        cur = groups[-1] if groups else None
        if cur is None or (cfg.enabled and (w.start - cur[-1].end >= cfg.trailing_silence_s
                                            or w.start - cur[0].start >= cfg.max_segment_s)):
            groups.append([w])
        else:
            cur.append(w)
    return [Segment(g[0].start, max(x.end for x in g), " ".join(x.word for x in g)) for g in groups]


def _stamp(t: float, sep: str) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Sequence[Segment]) -> str:
    """SubRip: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    return "".join(f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text}\n\n"
                   for i, s in enumerate(segments, 1))


def to_vtt(segments: Sequence[Segment]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    return "WEBVTT\n\n" + "".join(f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text}\n\n" for s in segments)
