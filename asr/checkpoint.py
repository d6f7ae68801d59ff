"""Self-describing checkpoints and the registry of bundled models.

A checkpoint file is a ``torch.save`` dictionary:

* ``format``: ``"asr-ctc/1"``
* ``config``: :class:`~asr.model.ModelConfig` as a dict
* ``features``: :class:`~asr.features.FeatureConfig` as a dict
* ``tokenizer``: the vocabulary (and the sentencepiece model for BPE)
* ``model``: the state dict, global CMVN statistics included (``cmvn.mean``, ``cmvn.istd``)
* ``meta``: free-form provenance (data, steps, metrics)

It loads with ``weights_only=True``: no code is unpickled.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import torch

from .decoding import Decoder
from .features import FeatureConfig, LogMel
from .model import CTCModel, ModelConfig, quantize_int8
from .stream import Stream, feed_chunks
from .tokenizer import Tokenizer, tokenizer_from_dict

if TYPE_CHECKING:
    from .beam import BeamOptions

__all__ = ["Recognizer", "load_model", "model_path", "save_checkpoint", "available_models", "ModelNotFoundError", "FORMAT"]

FORMAT = "asr-ctc/1"
MODELS_DIR = Path(__file__).parent / "models"


class ModelNotFoundError(FileNotFoundError):
    pass


@dataclass
class Recognizer:
    """Everything needed to turn audio into text: one shared, stateless model.

    Streams (:class:`asr.stream.Stream`) hold all per-utterance state; any number of
    them can share one ``Recognizer``.

    ``decoding``: how final results are decoded by default: beam search with the word LM bundled
    with the model (:mod:`asr.lmbundle`; set by :func:`load_model`), or None: greedy. Partial
    results are always greedy. ``decoder="greedy"`` (:meth:`transcribe`) / ``final_decoder="greedy"``
    (:meth:`stream`) asks for greedy finals once; ``rec.decoding = None`` for good.
    """

    model: CTCModel
    tokenizer: Tokenizer
    features: FeatureConfig
    name: str = "unnamed"
    meta: dict = field(default_factory=dict)
    decoding: Optional["BeamOptions"] = None

    def __post_init__(self):
        self.model.eval()
        self.logmel = LogMel(self.features)

    @property
    def step_s(self) -> float:
        """Seconds per output step."""
        return self.model.cfg.subsampling * self.features.frame_shift_s

    def default_decoder(self) -> Optional[Decoder]:
        """The final decoder of :attr:`decoding`: the process's shared beam decoder with the bundled
        LM (built on first use, :func:`asr.lmbundle.shared_decoder`), or None (greedy)."""
        if self.decoding is None:
            return None
        from .lmbundle import shared_decoder

        return shared_decoder(self, self.decoding)

    def final_decoder(self, decoder: Union[str, Decoder, None] = "default") -> Optional[Decoder]:
        """``"default"``: :meth:`default_decoder`; ``"greedy"`` or None: None (greedy finals);
        an :class:`asr.decoding.Decoder`: itself."""
        if isinstance(decoder, str):
            if decoder not in ("default", "greedy"):
                raise ValueError(f"decoder must be 'default', 'greedy', None or a Decoder, got {decoder!r}")
            return self.default_decoder() if decoder == "default" else None
        return decoder

    def stream(self, sample_rate: int = 16000, grammar=None, hotwords=None, nbest: int = 1,
               final_decoder: Union[str, Decoder, None] = "default", **kwargs) -> Stream:
        """A new :class:`asr.stream.Stream` over this model (``kwargs``: its options).

        ``final_decoder``: see :meth:`final_decoder` (default: the bundled LM's beam search if the
        model has one, else greedy). ``grammar`` (phrases, optionally ``"[unk]"``), ``hotwords``
        (phrases or ``(phrase, boost)`` pairs) and ``nbest`` (alternatives per final) choose the
        stream's final decoder from that one (:func:`asr.vocab.vocabulary_decoder`): hotwords join the
        LM's beam search if ``final_decoder`` is one, else an LM-free prefix beam search."""
        if grammar is not None or hotwords is not None or nbest != 1:
            from .vocab import vocabulary_decoder

            base = self.final_decoder(final_decoder) if hotwords is not None and nbest == 1 else None
            dec = vocabulary_decoder(self, grammar, hotwords, nbest, base)
        else:
            dec = self.final_decoder(final_decoder)
        return Stream(self, sample_rate=sample_rate, final_decoder=dec, **kwargs)

    def transcribe(self, samples, sample_rate: int = 16000, chunk_samples: Optional[int] = None,
                   decoder: Union[str, Decoder, None] = "default"):
        """Offline transcription = feed a stream (in chunks of ``chunk_samples``), finish it,
        and return the whole stream's :class:`~asr.decoding.Result`.

        ``decoder``: ``"default"`` (beam search with the model's bundled LM if it has one, else greedy),
        ``"greedy"``, or an :class:`asr.decoding.Decoder` run over the stream's ``(steps, vocab)``
        log-probabilities, e.g. :class:`asr.beam.BeamCTCDecoder` (beam search, optionally with a word LM)."""
        st = feed_chunks(self.stream(sample_rate, final_decoder=decoder), samples, chunk_samples)
        st.finish()
        return st.full_result()

    def int8(self) -> "Recognizer":
        """A copy with int8 RNN and linear weights (:func:`asr.model.quantize_int8`), named ``NAME-int8``;
        this recognizer is left unchanged."""
        return Recognizer(quantize_int8(self.model), self.tokenizer, self.features, self.name + "-int8", dict(self.meta),
                          self.decoding)

    def save(self, path: Union[str, Path], meta: Optional[dict] = None, half: bool = False) -> None:
        save_checkpoint(path, self.model, self.tokenizer, self.features, meta or self.meta, half=half)


def save_checkpoint(path, model: CTCModel, tokenizer: Tokenizer, features: FeatureConfig, meta=None, half=False, extra=None) -> None:
    """Write a self-describing checkpoint atomically (temp file + rename)."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        sd = {k: (v.half() if v.is_floating_point() and not k.startswith("cmvn.") else v) for k, v in sd.items()}
    ckpt = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "features": asdict(features),
        "tokenizer": tokenizer.to_dict(),
        "model": sd,
        "meta": meta or {},
    }
    if extra:
        ckpt.update(extra)
    atomic_save(ckpt, path)


def atomic_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a model file is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def available_models() -> dict:
    """Bundled model name -> path (only those whose file is present)."""
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.pt"))}


def model_path(name_or_path: Union[str, Path] = "default") -> Path:
    """The checkpoint file of a bundled model name (``"default"``) or a checkpoint path;
    :class:`ModelNotFoundError` when there is none."""
    path = Path(name_or_path)
    bundled = available_models()
    if str(name_or_path) in bundled:
        path = bundled[str(name_or_path)]
    elif not path.suffix and not path.exists():
        known = ", ".join(bundled) or "none yet"
        if str(name_or_path) == "default":
            raise ModelNotFoundError(
                "no bundled model 'default' exists yet (bundled models: none); "
                "train one with `asr train` and pass its checkpoint with --model PATH"
            )
        raise ModelNotFoundError(f"unknown model {str(name_or_path)!r} (bundled models: {known})")
    if not path.exists():
        raise ModelNotFoundError(f"model file not found: {path}")
    return path


def load_model(name_or_path: Union[str, Path] = "default", device: str = "cpu", int8: bool = False) -> Recognizer:
    """Load a bundled model by name (``"default"``) or any checkpoint path (:func:`model_path`).

    A decoding file ``NAME.lm.json`` next to checkpoint ``NAME.pt`` (:mod:`asr.lmbundle`) makes
    beam search with its word LM the model's default for final results (``Recognizer.decoding``).
    ``int8=True``: RNN and linear weights quantised to int8 for faster single-stream CPU
    decoding (:func:`asr.model.quantize_int8`; the name gets an ``-int8`` suffix)."""
    path = model_path(name_or_path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # corrupt file, not a torch checkpoint
        raise ValueError(f"{path}: not a readable model checkpoint ({e.__class__.__name__}: {e})") from None
    rec = recognizer_from_checkpoint(ckpt, name=path.stem, int8=int8)
    from .lmbundle import lm_options

    rec.decoding = lm_options(path)
    return rec


def add_int8_argument(parser) -> None:
    """The ``--int8`` option shared by the commands that load a model."""
    parser.add_argument("--int8", action="store_true",
                        help="quantise RNN and linear weights to int8 at load time: faster single-stream CPU "
                             "decoding; chunked output then matches whole-file output only within quantisation noise")


def recognizer_from_checkpoint(ckpt: dict, name: str = "unnamed", int8: bool = False) -> Recognizer:
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} checkpoint")
    cfg = ModelConfig(**ckpt["config"])
    model = CTCModel(cfg)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    model.load_state_dict(sd)
    rec = Recognizer(
        model=model,
        tokenizer=tokenizer_from_dict(ckpt["tokenizer"]),
        features=FeatureConfig(**ckpt["features"]),
        name=name,
        meta=dict(ckpt.get("meta", {})),
    )
    return rec.int8() if int8 else rec
