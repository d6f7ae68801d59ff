"""Output units: characters or sentencepiece BPE, stored in the checkpoint.

Both tokenizers share one convention so decoding code needs no special cases:
id 0 is the CTC blank, and a piece starting with ``"▁"`` (U+2581) begins a new word.
For characters the space itself is the piece ``"▁"``.
"""

from __future__ import annotations

from typing import Iterable, List, Optional

from .text import ALPHABET

__all__ = ["Tokenizer", "CharTokenizer", "BPETokenizer", "tokenizer_from_dict", "train_bpe"]

BLANK = "<blk>"
WORD_START = "\u2581"


class Tokenizer:
    kind: str = ""
    pieces: List[str]  # id -> piece; pieces[0] is the blank

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def encode(self, text: str) -> List[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.pieces[i] for i in ids if i != 0).replace(WORD_START, " ").strip()

    def starts_word(self, token_id: int) -> bool:
        return self.pieces[token_id].startswith(WORD_START)

    def to_dict(self) -> dict:
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """Characters of the normalised alphabet: blank, word boundary, apostrophe, a-z."""

    kind = "char"

    def __init__(self):
        self.pieces = [BLANK] + [WORD_START if c == " " else c for c in ALPHABET]
        self._index = {c: i for i, c in enumerate(self.pieces)}

    def encode(self, text: str) -> List[int]:
        ids = []
        for c in text.strip():
            key = WORD_START if c == " " else c
            if key not in self._index:
                raise ValueError(f"character {c!r} is outside the model alphabet; normalise text first")
            ids.append(self._index[key])
        return ids

    def to_dict(self) -> dict:
        return {"type": "char", "pieces": self.pieces}


class BPETokenizer(Tokenizer):
    """sentencepiece BPE; the serialized model travels inside the checkpoint.

    sentencepiece's own ids are shifted by one so that id 0 is the CTC blank
    (sentencepiece is trained with ``unk`` as its only special piece, at id 0 -> our id 1).
    """

    kind = "bpe"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.pieces = [BLANK] + [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]

    def encode(self, text: str) -> List[int]:
        return [i + 1 for i in self.sp.encode(text.strip())]

    def to_dict(self) -> dict:
        return {"type": "bpe", "pieces": self.pieces, "model_proto": self.model_proto}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    if d["type"] == "char":
        tok = CharTokenizer()
        if d.get("pieces") and list(d["pieces"]) != tok.pieces:
            raise ValueError("checkpoint character set differs from this version's alphabet")
        return tok
    if d["type"] == "bpe":
        return BPETokenizer(d["model_proto"])
    raise ValueError(f"unknown tokenizer type {d['type']!r}")


def train_bpe(sentences: Iterable[str], vocab_size: int, seed_sentences: Optional[int] = None) -> BPETokenizer:
    """Train a sentencepiece BPE model in memory on normalised sentences."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_writer=buf,
        vocab_size=vocab_size - 1,  # + blank
        model_type="bpe",
        character_coverage=1.0,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        input_sentence_size=seed_sentences or 0,
        shuffle_input_sentence=True,
        required_chars=ALPHABET.replace(" ", ""),
        minloglevel=2,
    )
    return BPETokenizer(buf.getvalue())
