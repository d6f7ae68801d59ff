import numpy as np
import pytest
import torch

from asr.checkpoint import Recognizer
from asr.features import FeatureConfig
from asr.model import CTCModel, ModelConfig
from asr.tokenizer import CharTokenizer

torch.set_num_threads(1)


def make_recognizer(rnn_type: str = "gru", seed: int = 0, hidden: int = 64, layers: int = 2,
                    conv_strides=(2, 2), conv_kernel: int = 3, online_cmn: float = 0.0) -> Recognizer:
    """A small randomly initialised model with non-trivial CMVN statistics."""
    torch.manual_seed(seed)
    tok = CharTokenizer()
    model = CTCModel(ModelConfig(vocab_size=tok.vocab_size, conv_channels=32, rnn_type=rnn_type,
                                 rnn_layers=layers, rnn_hidden=hidden,
                                 conv_strides=conv_strides, conv_kernel=conv_kernel, online_cmn=online_cmn))
    g = torch.Generator().manual_seed(seed + 1)
    model.cmvn.set_stats(torch.randn(80, generator=g) - 8.0, torch.rand(80, generator=g) + 1.0)
    # sharpen the output so greedy decoding emits tokens (a fresh model mostly emits one id)
    with torch.no_grad():
        model.output.weight.mul_(8.0)
    return Recognizer(model, tok, FeatureConfig(), name=f"random-{rnn_type}")


CHAR_TOKENIZER = CharTokenizer()


class CharRec:
    """What the decoders need of a recognizer: the character tokenizer and a 40 ms step."""

    tokenizer = CHAR_TOKENIZER
    step_s = 0.04


def char_log_probs(frames) -> torch.Tensor:
    """``frames``: one dict {piece: prob} per step of the character tokenizer (the rest of the mass to
    the blank) -> (steps, vocab) log-probs."""
    tok = CHAR_TOKENIZER
    rows = []
    for fr in frames:
        p = torch.full((tok.vocab_size,), 1e-6)
        for piece, q in fr.items():
            p[tok.pieces.index(piece)] = q
        p[0] = max(1e-6, 1.0 - sum(fr.values()))
        rows.append((p / p.sum()).log())
    return torch.stack(rows)


def speechlike(seconds: float = 2.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic amplitude-modulated harmonic noise: speech-like energy variations."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)) ** 2
    x = 0.2 * env * voiced + 0.02 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture(scope="session")
def rec_gru():
    return make_recognizer("gru")


@pytest.fixture(scope="session")
def rec_lstm():
    return make_recognizer("lstm")


class ShoutingGreedy:
    """A final decoder that decodes greedily again and upper-cases the words: finals must be the
    plain stream's finals, upper-cased, with the same times (so segments and offsets are right)."""

    def __init__(self, rec):
        self.rec = rec
        self.steps = []

    def decode(self, lp, length=None):  # an asr.decoding.Decoder
        from asr.decoding import Result, Word, greedy_decode

        lp = lp if length is None else lp[:length]
        self.steps.append(lp.shape[0])
        r = greedy_decode(lp, lp.shape[0], self.rec.tokenizer, self.rec.step_s)
        words = [Word(w.word.upper(), w.start, w.end, w.conf) for w in r.words]
        return Result.of_words(words, r.start, r.end)

    def describe(self):
        return "greedy, upper-cased"
