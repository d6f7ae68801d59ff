"""Training-run settings: :class:`TrainConfig`, read from a TOML file and ``--set key=value``.

Config files and overrides use flat keys (``lr``, ``rnn_layers``, ``voice_channel_prob``); each key
is declared, with its default and its checks, in exactly one dataclass:

* the architecture: :class:`asr.model.ModelConfig`'s own fields, as ``cfg.model`` (``n_mels`` and
  ``vocab_size`` are not options: they come from the features and the tokenizer);
* augmentation: :class:`AugmentOptions`, as ``cfg.augmentation``;
* everything else (data, units, optimisation, budgets, bookkeeping): :class:`TrainConfig` itself.

:meth:`TrainConfig.from_dict` sends each flat key to the part that declares it;
:meth:`TrainConfig.to_dict` gives the flat form back (stored in ``EXP/last.pt`` as
``train_config`` and in the log's ``start`` record, as before the split).

Data paths (:data:`PATH_KEYS`) may name environment variables, as a shell does: ``${DATA}`` or
``${DATA:-/work/data}`` (the value after ``:-`` when ``DATA`` is unset or empty). They are expanded
where the config is read (:meth:`TrainConfig.from_sources`), so checkpoints and logs hold the paths
actually used; an unset variable without a default is an error naming the option.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple

from .model import ModelConfig

__all__ = ["TrainConfig", "AugmentOptions", "MODEL_KEYS", "PATH_KEYS", "expand_env"]

# options holding file paths: ${VAR} / ${VAR:-default} in them are expanded by from_sources
PATH_KEYS = ("train_manifest", "extra_train", "dev_manifest", "extra_dev", "aug_dir", "init_from")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, key: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """``value`` with each ``${NAME}`` / ``${NAME:-default}`` replaced from ``environ`` (default:
    ``os.environ``); ``ValueError`` naming ``key`` when a variable without default is unset."""
    env = os.environ if environ is None else environ

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        raise ValueError(f"option {key}: environment variable {name} is not set (in {value!r}; "
                         f"export it, or write ${{{name}:-DEFAULT}} in the config)")

    return _VAR.sub(sub, value)

# ModelConfig fields that are training options (the other two are derived, see the module doc)
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("n_mels", "vocab_size"))


@dataclass(frozen=True)
class AugmentOptions:
    """What a run augments, and how often (the waveform augmenter's own parameters are
    :class:`asr.augment.AugmentConfig`). The field names are the flat config keys."""

    augment: bool = True  # waveform augmentation (asr.augment): speed, noise, reverb, gain, telephone band
    spec_augment: bool = True  # SpecAugment frequency/time masks
    voice_channel_prob: float = 0.0  # share of augmented utterances given VTLP + a random EQ/tilt (asr.data.voice_channel)
    codec_prob: float = 0.0  # share of augmented utterances sent through a codec round trip (asr.augment:
    # G.722 64/56/48k, GSM, G.711, G.726, MP3, Vorbis, Opus; the ones this machine has)
    aug_first_epoch: float = 0.3  # share of utterances augmented in epoch 0 (ramp: clean data first)
    aug_prob: float = 0.8  # share of utterances augmented from epoch 1 on
    aug_dir: str = ""  # noise / room-response material for asr.augment ("" = synthesized noise only);
    # recipes/synth/prepare.py writes one (its conf/*.toml point at it)

    def __post_init__(self):
        for name in ("voice_channel_prob", "codec_prob", "aug_first_epoch", "aug_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")

    def share(self, epoch: int) -> float:
        """Share of the utterances augmented in ``epoch`` (the sampler's schedule)."""
        return self.aug_first_epoch if epoch == 0 else self.aug_prob


@dataclass(frozen=True)
class TrainConfig:
    """Training run settings. Every flat key can be set in a TOML config or with ``--set key=value``
    (see the module doc for the keys of ``model`` and ``augmentation``)."""

    # ---- data (no defaults: a recipe's conf/*.toml names its manifests) ----
    train_manifest: str = ""  # JSON-lines manifest (audio, text, duration); required
    extra_train: Tuple[str, ...] = ()  # more training manifests, pooled with train_manifest (e.g. the
    # corpus recipe's train_short.jsonl of 1-2 word utterances); BPE and normalisation stats of a new
    # run are computed over the pool
    dev_manifest: str = ""  # model selection: lowest greedy select_metric here ("" = no validation, no best.pt)
    select_metric: str = "wer"  # "wer" or "cer" of dev_manifest that picks best.pt (CER: finer on one-word clips)
    extra_dev: Tuple[str, ...] = ()  # more manifests scored each epoch (reported only, never selected on)
    max_utt_seconds: float = 16.0  # longer training utterances are skipped
    valid_max_utts: int = 400  # dev utterances scored per epoch (first N)
    # ---- warm start ----
    init_from: str = ""  # a new run starts from these weights: "default" (the bundled model) or a checkpoint
    # path. Tokenizer, normalisation stats and model shape come from it (the model options must
    # match it, except that rnn_layers may be larger: the model is deepened with new layers on top that
    # start as identities, CTCModel.deepen; dropout is taken from this config); optimizer and schedule
    # start fresh (lr warm-up).
    # For fine-tuning, or a warm restart when a run's last.pt is lost. Ignored when EXP/last.pt resumes.
    # ---- units ----
    units: str = "bpe"  # "char" or "bpe" (sentencepiece, trained on the training texts)
    bpe_vocab: int = 256  # BPE pieces incl. blank; fewer tokens per second than characters, so stride 4 fits
    # ---- model: keys rnn_type, rnn_layers, rnn_hidden, conv_channels, conv_kernel, conv_strides, dropout ----
    model: ModelConfig = field(default_factory=ModelConfig)  # n_mels, vocab_size: replaced when the model is built
    # ---- optimisation ----
    max_batch_seconds: float = 160.0  # padded audio seconds per batch (batch size x longest utterance)
    lr: float = 2e-3  # peak AdamW learning rate
    warmup_steps: int = 300  # linear warm-up: short, the schedule should not wait
    decay_steps: int = 20000  # cosine decay from peak to lr*final_lr_ratio over this many steps, then flat
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 5.0  # max global gradient norm
    epochs: int = 100  # stop after this many epochs
    max_steps: int = 0  # stop after this many optimizer steps (0 = no limit)
    max_hours: float = 0.0  # stop after this many wall-clock hours in this invocation (0 = no limit)
    max_cpu_hours: float = 0.0  # stop when the run's total training-process CPU time reaches this (0 = no limit);
    # summed over DDP ranks, as the log's cpu_h is; a fair budget when several runs share the cores
    # (data-loader workers are not counted in it: the log and checkpoints report their CPU time
    # separately as loader_cpu_h / loader_cpu_hours)
    # ---- augmentation: keys augment, spec_augment, voice_channel_prob, codec_prob, aug_first_epoch, aug_prob,
    # aug_dir ----
    augmentation: AugmentOptions = field(default_factory=AugmentOptions)
    sorta_grad: bool = True  # epoch 0 ordered short to long
    # ---- bookkeeping ----
    ckpt_minutes: float = 5.0  # write EXP/last.pt at least this often
    log_every: int = 25  # steps between log lines
    cmvn_utts: int = 400  # utterances used for the global mean/variance statistics
    num_workers: int = 1  # data-loading processes (augmentation + features)
    threads: int = 2  # torch intra-op threads per process
    seed: int = 0

    def __post_init__(self):
        if self.select_metric not in ("wer", "cer"):
            raise ValueError(f"select_metric must be 'wer' or 'cer', got {self.select_metric!r}")
        if self.units not in ("char", "bpe"):
            raise ValueError(f"units must be 'char' or 'bpe', got {self.units!r}")
        positive = ("max_batch_seconds", "ckpt_minutes", "log_every", "threads")
        non_negative = ("lr", "warmup_steps", "decay_steps", "weight_decay", "epochs", "max_steps", "max_hours",
                        "max_cpu_hours", "num_workers", "valid_max_utts", "cmvn_utts")
        for name in positive + non_negative:
            v = getattr(self, name)
            if math.isnan(v) or v < 0 or (v == 0 and name in positive):
                raise ValueError(f"{name} must be {'positive' if name in positive else '>= 0'}, got {v}")

    def check_data(self) -> None:
        """What a run needs that has no default: the training manifest."""
        if not self.train_manifest:
            raise ValueError("train_manifest is not set: name it in the --config file (recipes/*/conf/*.toml do) "
                             "or with --set train_manifest=PATH")

    # ---- flat keys ----------------------------------------------------------------------------
    @classmethod
    def from_sources(cls, config_file: Optional[str], overrides: Sequence[str]) -> "TrainConfig":
        """A TOML file of flat keys, then ``key=value`` overrides (values parsed as JSON unless
        the option is a string); ``${VAR}`` in the data paths expanded (module doc)."""
        values = {}
        if config_file:
            with open(config_file, "rb") as f:
                values.update(tomllib.load(f))
        for item in overrides or []:
            if "=" not in item:
                raise ValueError(f"--set expects key=value, got {item!r}")
            k, v = item.split("=", 1)
            values[k.strip()] = v.strip()
        for k in PATH_KEYS:
            if k in values:
                v = _coerce(values[k], _FLAT[k][1], k)
                values[k] = tuple(expand_env(p, k) for p in v) if isinstance(v, tuple) else expand_env(v, k)
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """From flat keys, each coerced to its option's type (strings from ``--set`` included)."""
        parts = {"": {}, "model": {}, "augmentation": {}}
        for k, v in values.items():
            if k not in _FLAT:
                raise ValueError(f"unknown training option {k!r}")
            part, default = _FLAT[k]
            parts[part][k] = _coerce(v, default, k)
        return cls(model=ModelConfig(**parts["model"]), augmentation=AugmentOptions(**parts["augmentation"]),
                   **parts[""])

    def to_dict(self) -> dict:
        """The flat keys and their values (``from_dict(cfg.to_dict()) == cfg``)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "model":
                out.update((k, getattr(v, k)) for k in MODEL_KEYS)
            elif f.name == "augmentation":
                out.update(dataclasses.asdict(v))
            else:
                out[f.name] = v
        return out


def _flat_keys() -> dict:
    """flat key -> (the part declaring it: "" = TrainConfig, "model", "augmentation"; its default)."""
    keys = {}
    model, aug = ModelConfig(), AugmentOptions()
    for k in MODEL_KEYS:
        keys[k] = ("model", getattr(model, k))
    for f in dataclasses.fields(AugmentOptions):
        keys[f.name] = ("augmentation", getattr(aug, f.name))
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("model", "augmentation"):
            assert f.name not in keys, f"training option {f.name!r} declared twice"
            keys[f.name] = ("", f.default)
    return keys


def _coerce(v, default, key):
    if isinstance(v, str) and not isinstance(default, str):
        try:
            v = json.loads(v if not isinstance(default, bool) else v.lower())
        except json.JSONDecodeError:
            raise ValueError(f"option {key}: cannot parse {v!r}") from None
    if isinstance(default, tuple):
        return tuple(v) if isinstance(v, (list, tuple)) else (v,)
    if isinstance(default, bool):
        return bool(v)
    if isinstance(default, float):
        return float(v)
    if isinstance(default, int):
        return int(v)
    return v


_FLAT = _flat_keys()
