"""Setting a training run up: data, tokenizer, model (new, warm-started or resumed), optimizer,
batches. :func:`setup_run` does it all, in the order that keeps a resumed run exact, and
returns the :class:`TrainRun` that :func:`asr.train.train_one_epoch` works on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .data import BucketBatchSampler, SpeechDataset, Utterance, collate, read_manifest
from .features import FeatureConfig, LogMel
from .model import CTCModel, ModelConfig
from .tokenizer import CharTokenizer, tokenizer_from_dict, train_bpe
from .trainconfig import TrainConfig
from .trainproc import Ranks, ignore_stop_signals
from .trainstate import new_progress, norm, read_resume, report_changed_options, restore
from .trainvalid import extra_dev_names

__all__ = ["TrainRun", "TrainData", "RunLog", "setup_run", "lr_lambda", "compute_cmvn", "load_init", "init_meta",
           "epoch_loader"]


class RunLog:
    """``EXP/log.jsonl``: one JSON record per call, time-stamped; a no-op without a path (ranks > 0)."""

    def __init__(self, path: Optional[Path]):
        self.path = path

    def __call__(self, **rec):
        if self.path is None:
            return
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **rec}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


@dataclass
class TrainData:
    train: List[Utterance]  # the pool: train_manifest + extra_train, utterances with text
    dev: List[Utterance]  # selection set (first valid_max_utts of dev_manifest)
    extra_dev: Dict[str, List[Utterance]]  # reported sets, by log key


@dataclass
class TrainRun:
    """Everything the training loop works with."""

    cfg: TrainConfig
    ranks: Ranks
    exp_dir: Path
    log: RunLog
    fcfg: FeatureConfig
    logmel: LogMel
    data: TrainData
    tok: object  # asr.tokenizer.Tokenizer
    model: CTCModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    state: dict  # progress, saved in last.pt (asr.trainstate.new_progress)
    ddp_model: Optional[torch.nn.Module] = None  # the model, or its DDP wrapper (several ranks)
    dataset: Optional[SpeechDataset] = None
    sampler: Optional[BucketBatchSampler] = None

    @property
    def last_path(self) -> Path:
        return self.exp_dir / "last.pt"

    @property
    def step_s(self) -> float:
        """Seconds per model output step."""
        return self.model.cfg.subsampling * self.fcfg.frame_shift_s


def setup_run(cfg: TrainConfig, exp: str, restart: bool = False) -> TrainRun:
    """A run ready to train: resumed from ``EXP/last.pt`` (unless ``restart``), warm-started from
    ``cfg.init_from``, or new. The order of the steps is part of exact resume: nothing may
    draw from the global random generators between :func:`restore` and the first step."""
    cfg.check_data()
    ranks = Ranks.join()
    torch.set_num_threads(cfg.threads)
    exp_dir = Path(exp)
    if ranks.main:
        exp_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(exp_dir / "log.jsonl" if ranks.main else None)
    fcfg = FeatureConfig()
    logmel = LogMel(fcfg)
    data = read_data(cfg)
    if ranks.main and not data.dev:
        print("asr train: no dev utterances (dev_manifest): no validation, no best.pt", file=sys.stderr)
    resume = read_resume(exp_dir / "last.pt", restart)
    init = None
    if resume is not None:
        if ranks.main:
            report_changed_options(resume["train_config"], cfg)
    elif cfg.init_from:
        init = load_init(cfg, fcfg)
    tok = make_tokenizer(cfg, resume, init, data.train)
    model = build_model(cfg, tok, fcfg, logmel, data.train, resume, init, ranks.device)
    opt, sched = make_optimizer(cfg, model)
    run = TrainRun(cfg, ranks, exp_dir, log, fcfg, logmel, data, tok, model, opt, sched, new_progress())
    if init is not None:
        run.state["init_from"] = init_meta(cfg, init)  # kept in last.pt's progress, reported in every checkpoint
    if resume is not None:
        restore(run, resume)
    elif ranks.main:
        log(type="start", config=cfg.to_dict(), params=model.num_params(), vocab=tok.vocab_size,
            world_size=ranks.world, train_utts=len(data.train), train_hours=sum(u.duration for u in data.train) / 3600,
            **({"init_from": run.state["init_from"]} if init is not None else {}))
    run.ddp_model = model
    if ranks.world > 1:
        ids = [ranks.device.index] if ranks.device.type == "cuda" else None
        run.ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    run.dataset, run.sampler = make_batches(cfg, data.train, tok, logmel, ranks)
    return run


def read_data(cfg: TrainConfig) -> TrainData:
    """Reads every manifest (a missing one fails here, before any work)."""
    train = [u for m in (cfg.train_manifest, *cfg.extra_train) for u in read_manifest(m) if u.text]
    dev = read_manifest(cfg.dev_manifest)[: cfg.valid_max_utts] if cfg.dev_manifest else []
    extra = {name: read_manifest(p) for name, p in extra_dev_names(cfg.extra_dev).items()}
    return TrainData(train, dev, extra)


def make_tokenizer(cfg: TrainConfig, resume: Optional[dict], init, train_utts):
    """The resumed run's or the warm start's tokenizer, else a new one (BPE trained on the pool)."""
    if resume is not None:
        return tokenizer_from_dict(resume["tokenizer"])
    if init is not None:
        return init.tokenizer
    if cfg.units == "char":
        return CharTokenizer()
    return train_bpe((u.text for u in train_utts), cfg.bpe_vocab)


def build_model(cfg: TrainConfig, tok, fcfg: FeatureConfig, logmel: LogMel, train_utts, resume: Optional[dict],
                init, device: torch.device) -> CTCModel:
    """The model, its weights initialised from ``cfg.seed``; a warm start's weights (deepened to
    ``rnn_layers``) and statistics, or new normalisation statistics. A resumed run's weights are
    loaded by :func:`asr.trainstate.restore`."""
    torch.manual_seed(cfg.seed)
    if resume is not None:
        mcfg = ModelConfig(**resume["config"])
    elif init is not None:
        mcfg = dataclasses.replace(init.model.cfg, dropout=cfg.model.dropout, rnn_layers=cfg.model.rnn_layers,
                                   online_cmn=cfg.model.online_cmn)
    else:
        mcfg = dataclasses.replace(cfg.model, vocab_size=tok.vocab_size, n_mels=fcfg.n_mels)
    model = CTCModel(mcfg).to(device)
    if init is not None:
        # incl. the normalisation stats; more rnn_layers than the source: new identity layers on top
        model.load_state_dict(init.model.deepen(cfg.model.rnn_layers).state_dict())
    elif resume is None:
        mean, std = compute_cmvn(train_utts, logmel, cfg.cmvn_utts, cfg.seed)
        model.cmvn.set_stats(mean, std)
    return model


def lr_lambda(cfg: TrainConfig):
    """The schedule's factor of ``cfg.lr`` at an optimizer step: linear warm-up, cosine decay, flat."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.decay_steps))
        return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def make_optimizer(cfg: TrainConfig, model: CTCModel):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))


def make_batches(cfg: TrainConfig, train_utts, tok, logmel: LogMel, ranks: Ranks):
    """The augmenting training dataset and this rank's resumable batch sampler."""
    aug = cfg.augmentation
    augmenter = None
    if aug.augment:
        from .augment import AugmentConfig, Augmenter

        babble = [u.audio for u in random.Random(cfg.seed).sample(train_utts, min(2000, len(train_utts)))]
        augmenter = Augmenter(AugmentConfig(codec_prob=aug.codec_prob), aug.aug_dir or None, babble_paths=babble)
    ds = SpeechDataset(train_utts, tok, logmel, augmenter, spec_augment=aug.spec_augment, seed=cfg.seed,
                       voice_channel_prob=aug.voice_channel_prob)
    sampler = BucketBatchSampler(
        [u.duration for u in train_utts], cfg.max_batch_seconds, seed=cfg.seed, sorta_grad=cfg.sorta_grad,
        rank=ranks.rank, world_size=ranks.world, max_duration=cfg.max_utt_seconds, aug_schedule=aug.share,
    )
    return ds, sampler


def epoch_loader(run: TrainRun, epoch: int) -> torch.utils.data.DataLoader:
    """The data loader of one epoch (the sampler set to its epoch and start batch)."""
    cfg = run.cfg
    return torch.utils.data.DataLoader(run.dataset, batch_sampler=run.sampler, collate_fn=collate,
                                       num_workers=cfg.num_workers, persistent_workers=False,
                                       prefetch_factor=4 if cfg.num_workers else None,
                                       # own generator: creating the loader must not draw from the
                                       # global RNG (dropout), or a resumed run would diverge
                                       generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
                                       worker_init_fn=ignore_stop_signals)


def compute_cmvn(utts, logmel: LogMel, n: int, seed: int):
    """Global per-bin mean/std of log-mel over ``n`` clean training utterances."""
    from .audio import read_audio

    rnd = random.Random(seed)
    pick = rnd.sample(range(len(utts)), min(n, len(utts)))
    s = torch.zeros(logmel.cfg.n_mels, dtype=torch.float64)
    s2 = torch.zeros_like(s)
    cnt = 0
    for i in pick:
        w, _ = read_audio(utts[i].audio)
        f = logmel(torch.from_numpy(w)).double()
        s += f.sum(0)
        s2 += (f * f).sum(0)
        cnt += f.shape[0]
    mean = s / max(cnt, 1)
    std = (s2 / max(cnt, 1) - mean * mean).clamp_min(1e-8).sqrt()
    return mean.float(), std.float()


_SHAPE_OPTIONS = ("rnn_type", "rnn_layers", "rnn_hidden", "conv_channels", "conv_kernel", "conv_strides")


def load_init(cfg: TrainConfig, fcfg: FeatureConfig):
    """The :class:`~asr.checkpoint.Recognizer` named by ``cfg.init_from``, checked against the config."""
    from .checkpoint import load_model

    init = load_model(cfg.init_from)
    if init.features != fcfg:
        raise ValueError(f"init_from={cfg.init_from!r}: its feature settings {dataclasses.asdict(init.features)} "
                         f"differ from this trainer's {dataclasses.asdict(fcfg)}")
    have = init.model.cfg.to_dict()
    want = cfg.model
    diff = {k: (getattr(want, k), have[k]) for k in _SHAPE_OPTIONS if norm(getattr(want, k)) != norm(have[k])}
    if "rnn_layers" in diff and want.rnn_layers > have["rnn_layers"]:
        del diff["rnn_layers"]  # deepening: CTCModel.deepen adds identity layers on top
    if diff:
        raise ValueError(f"init_from={cfg.init_from!r}: model options differ from the checkpoint's "
                         f"(config, checkpoint): {diff}; set them to the checkpoint's values "
                         f"(rnn_layers may be larger: the extra layers start as identities)")
    return init


def init_meta(cfg: TrainConfig, init) -> dict:
    """Where a warm-started run came from: its name and the source's own training record."""
    keep = ("step", "epoch", "cpu_hours", "loader_cpu_hours", "wall_hours", "audio_hours_seen", "dev", "init_from")
    return {"model": cfg.init_from, **{k: init.meta[k] for k in keep if k in init.meta}}
