"""``asr train``: CTC training with exact resume, on one CPU or many processes (torchrun / DDP).

Usage::

    asr train --config recipes/synth/conf/gru.toml --exp exp/gru            # start or continue
    asr train --config recipes/synth/conf/gru.toml --exp exp/gru --set rnn_hidden=512 lr=1e-3
    torchrun --nproc-per-node 2 -m asr train --config ... --exp ...          # DDP (gloo on CPU, nccl on GPU)
    asr train --config ... --exp exp/ft --set init_from=default lr=6e-4      # warm start from a model's weights

Everything needed to continue is in ``EXP/last.pt`` (model, optimizer, scheduler,
sampler position, random generator states, wall-clock spent); a run started again
with the same ``--exp`` resumes from it exactly unless ``--restart`` is given. It is
written every ``ckpt_minutes`` and at each epoch end; Ctrl-C or SIGTERM (also to the whole
process group) stops the run after the current step and writes it first, so stopping a
run loses nothing (a second Ctrl-C interrupts at once, losing up to ``ckpt_minutes``).
``EXP/best.pt`` is the checkpoint with the lowest dev WER so far (self-describing,
loadable with ``asr.load_model``). Metrics go to ``EXP/log.jsonl``; plot them with
``tools/plot_training.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import sys
import threading
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import save_checkpoint
from .data import BucketBatchSampler, SpeechDataset, collate, read_manifest
from .decoding import greedy_decode
from .features import FeatureConfig, LogMel
from .model import CTCModel, ModelConfig
from .tokenizer import CharTokenizer, tokenizer_from_dict, train_bpe

__all__ = ["TrainConfig", "train", "register"]


@dataclass(frozen=True)
class TrainConfig:
    """Training run settings. Every field can be set in a TOML config or with ``--set key=value``."""

    # ---- data ----
    train_manifest: str = "/work/data/synth/train.jsonl"  # JSON-lines manifest (audio, text, duration)
    extra_train: Tuple[str, ...] = ()  # more training manifests, pooled with train_manifest (e.g. the
    # corpus recipe's train_short.jsonl of 1-2 word utterances); BPE and normalisation stats of a new
    # run are computed over the pool
    dev_manifest: str = "/work/data/synth/dev.jsonl"  # model selection: lowest greedy select_metric here
    select_metric: str = "wer"  # "wer" or "cer" of dev_manifest that picks best.pt (CER: finer on one-word clips)
    extra_dev: Tuple[str, ...] = ()  # more manifests scored each epoch (reported only, never selected on)
    aug_dir: str = "/work/data/synth/aug"  # noise / room-response material for asr.augment ("" = synthetic only)
    max_utt_seconds: float = 16.0  # longer training utterances are skipped
    valid_max_utts: int = 400  # dev utterances scored per epoch (first N)
    # ---- warm start ----
    init_from: str = ""  # a new run starts from these weights: "default" (the bundled model) or a checkpoint
    # path. Tokenizer, normalisation stats and model shape come from it (the model options below must
    # match it, except that rnn_layers may be larger: the model is deepened with new layers on top that
    # start as identities, CTCModel.deepen; dropout is taken from this config); optimizer and schedule
    # start fresh (lr warm-up).
    # For fine-tuning, or a warm restart when a run's last.pt is lost. Ignored when EXP/last.pt resumes.
    # ---- units ----
    units: str = "bpe"  # "char" or "bpe" (sentencepiece, trained on the training texts)
    bpe_vocab: int = 256  # BPE pieces incl. blank; fewer tokens per second than characters, so stride 4 fits
    # ---- model (see asr.model.ModelConfig) ----
    rnn_type: str = "gru"  # "gru" or "lstm"
    rnn_layers: int = 4
    rnn_hidden: int = 384
    conv_channels: int = 256
    conv_kernel: int = 3
    conv_strides: Tuple[int, ...] = (2, 2)  # product 4: 40 ms output steps
    dropout: float = 0.1
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
    # ---- augmentation ----
    augment: bool = True  # waveform augmentation (asr.augment): speed, noise, reverb, gain, telephone band
    spec_augment: bool = True  # SpecAugment frequency/time masks
    voice_channel_prob: float = 0.0  # share of augmented utterances given VTLP + a random EQ/tilt (asr.data.voice_channel)
    aug_first_epoch: float = 0.3  # share of utterances augmented in epoch 0 (ramp: clean data first)
    aug_prob: float = 0.8  # share of utterances augmented from epoch 1 on
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
        if not 0.0 <= self.voice_channel_prob <= 1.0:
            raise ValueError(f"voice_channel_prob must be in [0, 1], got {self.voice_channel_prob}")

    @classmethod
    def from_sources(cls, config_file: Optional[str], overrides: list) -> "TrainConfig":
        values = {}
        if config_file:
            with open(config_file, "rb") as f:
                values.update(tomllib.load(f))
        for item in overrides or []:
            if "=" not in item:
                raise ValueError(f"--set expects key=value, got {item!r}")
            k, v = item.split("=", 1)
            values[k.strip()] = v.strip()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        typed = {}
        for k, v in values.items():
            if k not in fields:
                raise ValueError(f"unknown training option {k!r}")
            default = fields[k].default
            typed[k] = _coerce(v, default, k)
        return cls(**typed)


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


# keys of a "valid" log record; an extra dev set named like one of them is renamed
_VALID_KEYS = {"time", "type", "step", "epoch", "partial_epoch", "dev", "wall_h", "cpu_h", "loader_cpu_h", "audio_h"}


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.decay_steps))
        return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def _model_config(cfg: TrainConfig, vocab_size: int, n_mels: int) -> ModelConfig:
    return ModelConfig(
        n_mels=n_mels, vocab_size=vocab_size, conv_channels=cfg.conv_channels, conv_kernel=cfg.conv_kernel,
        conv_strides=cfg.conv_strides, rnn_type=cfg.rnn_type, rnn_layers=cfg.rnn_layers,
        rnn_hidden=cfg.rnn_hidden, dropout=cfg.dropout,
    )


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


@torch.no_grad()
def evaluate_manifest(model: CTCModel, tok, logmel: LogMel, utts, step_s: float, max_seconds: float = 200.0):
    """Dev loss per token, WER and CER (greedy, offline forward == streaming path),
    scored by :func:`asr.evaluate.score` like every other evaluation."""
    from .evaluate import score

    model.eval()
    ds = SpeechDataset(utts, tok, logmel)
    sampler = BucketBatchSampler([u.duration for u in utts], max_seconds, sorta_grad=True, max_duration=1e9)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    refs, hyps = {}, {}
    tot_loss, tot_tok = 0.0, 0
    for x, xl, y, yl, idx in loader:
        lp, ol = model(x, xl)
        tot_loss += float(ctc(lp.transpose(0, 1), y, ol, yl))
        tot_tok += int(yl.sum())
        for b, i in enumerate(idx):
            hyps[i] = greedy_decode(lp[b], int(ol[b]), tok, step_s).text
            refs[i] = utts[i].text
    keys = sorted(refs)
    r = [refs[k] for k in keys]
    h = [hyps[k] for k in keys]
    sc = score(r, h)
    model.train()
    return {"loss": tot_loss / max(tot_tok, 1), "wer": sc.wer, "cer": sc.cer, "utts": len(keys),
            "examples": [{"ref": r[i], "hyp": h[i]} for i in range(min(3, len(r)))]}


class _Log:
    def __init__(self, path: Optional[Path]):
        self.path = path

    def __call__(self, **rec):
        if self.path is None:
            return
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **rec}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def train(cfg: TrainConfig, exp: str, restart: bool = False, progress: bool = True) -> dict:
    """Run (or resume) training; returns the final summary dict."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    torch.set_num_threads(cfg.threads)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    exp_dir = Path(exp)
    main_proc = rank == 0
    if main_proc:
        exp_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(exp_dir / "log.jsonl" if main_proc else None)
    last_path = exp_dir / "last.pt"

    fcfg = FeatureConfig()
    logmel = LogMel(fcfg)
    train_utts = [u for m in (cfg.train_manifest, *cfg.extra_train) for u in read_manifest(m) if u.text]
    dev_utts = read_manifest(cfg.dev_manifest)[: cfg.valid_max_utts] if cfg.dev_manifest else []
    extra_dev = {}
    for p in cfg.extra_dev:  # named by file stem; "synth_dev" for .../synth/dev.jsonl (log keys must not clash)
        name = Path(p).stem
        if name in _VALID_KEYS or name in extra_dev:
            name = f"{Path(p).parent.name}_{name}"
        extra_dev[name] = read_manifest(p)

    resume = init = None
    if last_path.exists() and not restart:
        try:
            resume = torch.load(last_path, map_location="cpu", weights_only=True)
        except Exception:
            # checkpoints written before RNG states were stored as tensors (our own run directory)
            resume = torch.load(last_path, map_location="cpu", weights_only=False)
        tok = tokenizer_from_dict(resume["tokenizer"])
        saved_cfg = resume["train_config"]
        if main_proc:
            changed = {k: (saved_cfg.get(k), v) for k, v in asdict(cfg).items()
                       if k in saved_cfg and _norm(saved_cfg[k]) != _norm(v)}
            if changed:
                print(f"asr train: resuming with changed options: {changed}", file=sys.stderr)
    elif cfg.init_from:
        init = _load_init(cfg, fcfg)
        tok = init.tokenizer
    elif cfg.units == "char":
        tok = CharTokenizer()
    elif cfg.units == "bpe":
        tok = train_bpe((u.text for u in train_utts), cfg.bpe_vocab)
    else:
        raise ValueError(f"units must be 'char' or 'bpe', got {cfg.units!r}")

    torch.manual_seed(cfg.seed)
    if resume is not None:
        mcfg = ModelConfig(**resume["config"])
    elif init is not None:
        mcfg = dataclasses.replace(init.model.cfg, dropout=cfg.dropout, rnn_layers=cfg.rnn_layers)
    else:
        mcfg = _model_config(cfg, tok.vocab_size, fcfg.n_mels)
    model = CTCModel(mcfg).to(device)
    if init is not None:
        # incl. the normalisation stats; more rnn_layers than the source: new identity layers on top
        model.load_state_dict(init.model.deepen(cfg.rnn_layers).state_dict())
    elif resume is None:
        mean, std = compute_cmvn(train_utts, logmel, cfg.cmvn_utts, cfg.seed)
        model.cmvn.set_stats(mean, std)
    step_s = mcfg.subsampling * fcfg.frame_shift_s

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    state = {"epoch": 0, "batch": 0, "step": 0, "wall_s": 0.0, "cpu_s": 0.0, "loader_cpu_s": 0.0, "audio_s": 0.0,
             "best_wer": None, "best_step": None}  # cpu_s: this process; loader_cpu_s: its data-loading workers
    if init is not None:
        state["init_from"] = _init_meta(cfg, init)  # kept in last.pt's progress, reported in every checkpoint
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        state.update(resume["progress"])
        _set_rng_state(resume["rng"])
        if main_proc:
            print(f"asr train: resumed {last_path} at epoch {state['epoch']} batch {state['batch']} "
                  f"step {state['step']}", file=sys.stderr)
    elif main_proc:
        log(type="start", config=asdict(cfg), params=model.num_params(), vocab=tok.vocab_size, world_size=world,
            train_utts=len(train_utts), train_hours=sum(u.duration for u in train_utts) / 3600,
            **({"init_from": _init_meta(cfg, init)} if init is not None else {}))

    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    augmenter = None
    if cfg.augment:
        from .augment import AugmentConfig, Augmenter

        babble = [u.audio for u in random.Random(cfg.seed).sample(train_utts, min(2000, len(train_utts)))]
        augmenter = Augmenter(AugmentConfig(), cfg.aug_dir or None, babble_paths=babble)
    ds = SpeechDataset(train_utts, tok, logmel, augmenter, spec_augment=cfg.spec_augment, seed=cfg.seed,
                       voice_channel_prob=cfg.voice_channel_prob)
    sampler = BucketBatchSampler(
        [u.duration for u in train_utts], cfg.max_batch_seconds, seed=cfg.seed, sorta_grad=cfg.sorta_grad,
        rank=rank, world_size=world, max_duration=cfg.max_utt_seconds,
        aug_schedule=lambda e: cfg.aug_first_epoch if e == 0 else cfg.aug_prob,
    )
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)

    def save_last():
        if not main_proc:
            return
        extra = {
            "train_config": asdict(cfg),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "progress": dict(state),
            "rng": _rng_state(),
        }
        save_checkpoint(last_path, model, tok, fcfg, meta=_meta(cfg, state, model), extra=extra)

    # SIGTERM (kill, a batch scheduler, torchrun) or Ctrl-C: finish the current step, write
    # last.pt and return, so a stopped run loses nothing; a second Ctrl-C interrupts at once.
    stop_signal = _StopOnSignal()
    try:
        t_start = time.time()
        wall0 = state["wall_s"]
        cpu_start, cpu0 = time.process_time(), state.get("cpu_s", 0.0)
        loader_start, loader0 = children_cpu_seconds(), state["loader_cpu_s"]
        last_ckpt = time.time()
        model.train()
        stop = False
        signalled = False  # the ranks' common decision, taken at a step's end (not a late signal)
        while state["epoch"] < cfg.epochs and not stop:
            epoch = state["epoch"]
            sampler.set_epoch(epoch, state["batch"])
            n_batches = len(sampler.batches(epoch))
            loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate,
                                                 num_workers=cfg.num_workers, persistent_workers=False,
                                                 prefetch_factor=4 if cfg.num_workers else None,
                                                 # own generator: creating the loader must not draw from the
                                                 # global RNG (dropout), or a resumed run would diverge
                                                 generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
                                                 # Ctrl-C and `kill -- -PGID` reach the whole process group:
                                                 # the workers keep serving batches while the main process
                                                 # stops cleanly (they exit with it, or if it dies)
                                                 worker_init_fn=_ignore_stop_signals)
            bar = None
            if progress and main_proc:
                from tqdm import tqdm

                bar = tqdm(total=n_batches, initial=state["batch"], desc=f"epoch {epoch}", dynamic_ncols=True, mininterval=5)
            win_loss, win_tok, win_audio, win_t = 0.0, 0, 0.0, time.time()
            for x, xl, y, yl, _ in loader:
                x, xl, y, yl = x.to(device), xl.to(device), y.to(device), yl.to(device)
                lp, ol = ddp_model(x, xl)
                loss_sum = ctc(lp.transpose(0, 1), y, ol, yl)
                ntok = yl.sum().clamp_min(1)
                loss = loss_sum / ntok
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                opt.step()
                sched.step()
                state["step"] += 1
                state["batch"] += 1
                audio = float(xl.sum()) * fcfg.frame_shift_s
                state["audio_s"] += audio * world
                win_loss += float(loss_sum.detach())
                win_tok += int(ntok)
                win_audio += audio
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
                if state["step"] % cfg.log_every == 0:
                    dt = time.time() - win_t
                    log(type="train", step=state["step"], epoch=epoch, batch=state["batch"], loss=win_loss / max(win_tok, 1),
                        lr=sched.get_last_lr()[0], grad_norm=gnorm, audio_s_per_s=win_audio * world / max(dt, 1e-9),
                        wall_h=(wall0 + time.time() - t_start) / 3600, cpu_h=state["cpu_s"] / 3600,
                        loader_cpu_h=state["loader_cpu_s"] / 3600, audio_h=state["audio_s"] / 3600)
                    win_loss, win_tok, win_audio, win_t = 0.0, 0, 0.0, time.time()
                state["wall_s"] = wall0 + time.time() - t_start
                # every rank leaves the loop at the same step (one leaving alone would hang the
                # others in their next collective): the signal and time-budget flags and the CPU
                # clocks are agreed on, and the CPU seconds are the run's total over all ranks
                sig, over_time, cpu_s, loader_s = _step_end_agreement(
                    world, stop_signal.received is not None,
                    bool(cfg.max_hours and time.time() - t_start > cfg.max_hours * 3600),
                    time.process_time() - cpu_start, children_cpu_seconds() - loader_start)
                state["cpu_s"], state["loader_cpu_s"] = cpu0 + cpu_s, loader0 + loader_s
                if sig:
                    stop_signal.received = stop_signal.received or "a signal to another rank"
                    signalled = True
                    break
                if time.time() - last_ckpt > cfg.ckpt_minutes * 60:
                    save_last()
                    last_ckpt = time.time()
                if (cfg.max_steps and state["step"] >= cfg.max_steps) or over_time or (
                    cfg.max_cpu_hours and state["cpu_s"] > cfg.max_cpu_hours * 3600):
                    stop = True
                    break
            if bar is not None:
                bar.close()
            if signalled:
                save_last()
                if world > 1:
                    dist.barrier()
                break
            partial_epoch = stop and state["batch"] < n_batches
            if not partial_epoch:
                state["epoch"] += 1
                state["batch"] = 0
            # ---- end of epoch (or of the step/time budget): validate, keep the best ----
            if main_proc and dev_utts:
                res = evaluate_manifest(model, tok, logmel, dev_utts, step_s)
                extra = {name: evaluate_manifest(model, tok, logmel, u, step_s) for name, u in extra_dev.items()}
                log(type="valid", step=state["step"], epoch=epoch, partial_epoch=partial_epoch, dev=res,
                    **{k: {kk: vv for kk, vv in v.items() if kk != "examples"} for k, v in extra.items()},
                    wall_h=state["wall_s"] / 3600, cpu_h=state["cpu_s"] / 3600,
                    loader_cpu_h=state["loader_cpu_s"] / 3600, audio_h=state["audio_s"] / 3600)
                print(f"epoch {epoch}: dev loss {res['loss']:.3f} WER {res['wer']:.3f} CER {res['cer']:.3f}  "
                      + "  ".join(f"{k} WER {v['wer']:.3f}" for k, v in extra.items()), file=sys.stderr)
                # state["best_wer"] holds the best select_metric value (the key predates the option)
                if state["best_wer"] is None or res[cfg.select_metric] < state["best_wer"]:
                    state["best_wer"], state["best_step"] = res[cfg.select_metric], state["step"]
                    meta = _meta(cfg, state, model)
                    meta["dev"] = {k: v for k, v in res.items() if k != "examples"}
                    meta["extra_dev"] = {k: {kk: vv for kk, vv in v.items() if kk != "examples"} for k, v in extra.items()}
                    save_checkpoint(exp_dir / "best.pt", model, tok, fcfg, meta=meta)
            save_last()
            last_ckpt = time.time()
            if world > 1:
                dist.barrier()
            if partial_epoch:
                break
    finally:
        stop_signal.restore()
    summary = {"step": state["step"], "epoch": state["epoch"], "best_wer": state["best_wer"],
               "wall_h": state["wall_s"] / 3600}
    if signalled:
        summary["signal"] = stop_signal.received
        if main_proc:
            print(f"asr train: stopped by {stop_signal.received} at step {state['step']}; "
                  f"{last_path} is written, run the same command to resume", file=sys.stderr)
    log(type="stop", **summary)
    return summary


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's child processes, the data-loading
    workers: those already reaped (``RUSAGE_CHILDREN``) plus the live ones (``/proc``, Linux;
    elsewhere live children are not seen until they exit). Differences of this clock are
    what the training log reports as ``loader_cpu_h``."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ru.ru_utime + ru.ru_stime
    pids = set()
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
    except OSError:
        return total
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        except OSError:  # exited meanwhile: counted by RUSAGE_CHILDREN from now on
            continue
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def _ignore_stop_signals(_worker_id: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


class _StopOnSignal:
    """Turns the first SIGTERM/SIGINT into a request to stop after the current step (the
    previous handlers come back after it, so a second Ctrl-C interrupts at once). Only the
    main thread can install handlers; elsewhere (a notebook's worker thread) this is inert."""

    def __init__(self):
        self.received: Optional[str] = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.received = signal.Signals(signum).name
        self.restore()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _step_end_agreement(world: int, signalled: bool, over_time: bool, cpu_s: float,
                        loader_cpu_s: float) -> tuple:
    """What all ranks agree on at a step's end, with one collective:
    ``(any rank signalled, any rank over its time budget, CPU seconds, loader CPU seconds)``,
    the two clocks summed over ranks (each rank passes its own, since this invocation began).
    On one process the inputs come back unchanged."""
    if world == 1:
        return signalled, over_time, cpu_s, loader_cpu_s
    t = torch.tensor([float(signalled), float(over_time), cpu_s, loader_cpu_s], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return bool(t[0] > 0), bool(t[1] > 0), float(t[2]), float(t[3])


def _rng_state() -> dict:
    """Generator states as tensors and lists, so last.pt loads with ``weights_only=True``
    (and therefore with ``asr.load_model``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pystate, pygauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(pystate), pygauss]}


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if isinstance(st["numpy"], tuple):  # older checkpoints: numpy's own state tuple
        np.random.set_state(st["numpy"])
        random.setstate(st["python"])
        return
    kind, keys, pos, has_gauss, gauss = st["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, pystate, pygauss = st["python"]
    random.setstate((version, tuple(pystate), pygauss))


_SHAPE_OPTIONS = ("rnn_type", "rnn_layers", "rnn_hidden", "conv_channels", "conv_kernel", "conv_strides")


def _load_init(cfg: TrainConfig, fcfg: FeatureConfig):
    """The :class:`~asr.checkpoint.Recognizer` named by ``cfg.init_from``, checked against the config."""
    from .checkpoint import load_model

    init = load_model(cfg.init_from)
    if init.features != fcfg:
        raise ValueError(f"init_from={cfg.init_from!r}: its feature settings {asdict(init.features)} differ "
                         f"from this trainer's {asdict(fcfg)}")
    have = init.model.cfg.to_dict()
    diff = {k: (getattr(cfg, k), have[k]) for k in _SHAPE_OPTIONS if _norm(getattr(cfg, k)) != _norm(have[k])}
    if "rnn_layers" in diff and cfg.rnn_layers > have["rnn_layers"]:
        del diff["rnn_layers"]  # deepening: CTCModel.deepen adds identity layers on top
    if diff:
        raise ValueError(f"init_from={cfg.init_from!r}: model options differ from the checkpoint's "
                         f"(config, checkpoint): {diff}; set them to the checkpoint's values "
                         f"(rnn_layers may be larger: the extra layers start as identities)")
    return init


def _init_meta(cfg: TrainConfig, init) -> dict:
    """Where a warm-started run came from: its name and the source's own training record."""
    keep = ("step", "epoch", "cpu_hours", "loader_cpu_hours", "wall_hours", "audio_hours_seen", "dev", "init_from")
    return {"model": cfg.init_from, **{k: init.meta[k] for k in keep if k in init.meta}}


def _norm(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def _meta(cfg, state, model) -> dict:
    return {
        "train_manifest": cfg.train_manifest,
        **({"extra_train": list(cfg.extra_train)} if cfg.extra_train else {}),
        "step": state["step"],
        "epoch": state["epoch"],
        "wall_hours": round(state["wall_s"] / 3600, 3),
        "cpu_hours": round(state.get("cpu_s", 0.0) / 3600, 3),
        "loader_cpu_hours": round(state["loader_cpu_s"] / 3600, 3),
        "audio_hours_seen": round(state["audio_s"] / 3600, 2),
        "params": model.num_params(),
        **({"init_from": state["init_from"]} if state.get("init_from") else {}),
    }


def _main(args) -> int:
    cfg = TrainConfig.from_sources(args.config, args.set)
    train(cfg, args.exp, restart=args.restart, progress=not args.no_progress)
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a CTC model (resumable; torchrun for DDP)",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file with TrainConfig fields (e.g. recipes/synth/conf/gru.toml)")
    p.add_argument("--exp", required=True, help="experiment directory (checkpoints, log.jsonl)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config fields (repeatable: --set a=1 b=2 --set c=3)")
    p.add_argument("--restart", action="store_true", help="ignore EXP/last.pt and start from scratch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_main)
