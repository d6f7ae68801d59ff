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

import argparse
import sys
import time
from typing import Optional, Tuple

import torch

from .trainconfig import TrainConfig
from .trainproc import Clocks, StopOnSignal
from .trainsetup import TrainRun, epoch_loader, lr_lambda, setup_run
from .trainstate import save_last
from .trainvalid import validate

__all__ = ["TrainConfig", "train", "train_one_epoch", "lr_lambda", "register"]

# how an epoch's loop ended
EPOCH_END, BUDGET, SIGNAL = "epoch end", "budget", "signal"


def train(cfg: TrainConfig, exp: str, restart: bool = False, progress: bool = True) -> dict:
    """Run (or resume) training; returns the final summary dict."""
    run = setup_run(cfg, exp, restart)
    # SIGTERM (kill, a batch scheduler, torchrun) or Ctrl-C: finish the current step, write
    # last.pt and return, so a stopped run loses nothing; a second Ctrl-C interrupts at once.
    stop_signal = StopOnSignal()
    outcome = EPOCH_END
    try:
        clocks = Clocks(run.state)
        run.model.train()
        while run.state["epoch"] < cfg.epochs:
            epoch = run.state["epoch"]
            outcome, complete = train_one_epoch(run, clocks, stop_signal, progress)
            if outcome == SIGNAL:
                save_last(run)
                run.ranks.barrier()
                break
            end_epoch(run, clocks, epoch, partial=not complete)
            if outcome == BUDGET:  # the step, time or CPU budget is spent
                break
    finally:
        stop_signal.restore()
    return _stop(run, stop_signal.received if outcome == SIGNAL else None)


def train_one_epoch(run: TrainRun, clocks: Clocks, stop_signal: StopOnSignal,
                    progress: bool = True) -> Tuple[str, bool]:
    """Trains from ``run.state``'s position to the end of its epoch, or until a budget or a stop
    signal ends the run (all ranks at the same step). Returns how it ended (``EPOCH_END``,
    ``BUDGET``, ``SIGNAL``) and whether every batch of the epoch is done."""
    cfg, st = run.cfg, run.state
    epoch = st["epoch"]
    run.sampler.set_epoch(epoch, st["batch"])
    n_batches = len(run.sampler.batches(epoch))
    loader = epoch_loader(run, epoch)
    bar = None
    if progress and run.ranks.main:
        from tqdm import tqdm

        bar = tqdm(total=n_batches, initial=st["batch"], desc=f"epoch {epoch}", dynamic_ncols=True, mininterval=5)
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    window = _Window()
    outcome = EPOCH_END
    for x, xl, y, yl, _ in loader:
        loss, gnorm = train_step(run, ctc, x, xl, y, yl, window)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{run.sched.get_last_lr()[0]:.2e}")
        if st["step"] % cfg.log_every == 0:
            _log_train(run, clocks, window, epoch, gnorm)
        outcome = _after_step(run, clocks, stop_signal)
        if outcome is not None:
            break
    if bar is not None:
        bar.close()
    return outcome or EPOCH_END, st["batch"] >= n_batches


def train_step(run: TrainRun, ctc, x, xl, y, yl, window: "_Window") -> Tuple[float, float]:
    """One optimizer step on a batch (features ``x`` (B, T, n_mels), lengths ``xl``, token ids
    ``y``, lengths ``yl``); counts it in ``run.state`` and ``window``. Returns the loss per token
    and the gradient norm before clipping."""
    dev, st = run.ranks.device, run.state
    x, xl, y, yl = x.to(dev), xl.to(dev), y.to(dev), yl.to(dev)
    lp, ol = run.ddp_model(x, xl)
    loss_sum = ctc(lp.transpose(0, 1), y, ol, yl)
    ntok = yl.sum().clamp_min(1)
    loss = loss_sum / ntok
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip))
    run.opt.step()
    run.sched.step()
    st["step"] += 1
    st["batch"] += 1
    audio = float(xl.sum()) * run.fcfg.frame_shift_s
    st["audio_s"] += audio * run.ranks.world
    window.loss += float(loss_sum.detach())
    window.tok += int(ntok)
    window.audio += audio
    return float(loss.detach()), gnorm


class _Window:
    """Loss and audio between two ``train`` log records (this rank's)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss, self.tok, self.audio, self.t = 0.0, 0, 0.0, time.time()


def _log_train(run: TrainRun, clocks: Clocks, window: _Window, epoch: int, gnorm: float) -> None:
    st = run.state
    dt = time.time() - window.t
    run.log(type="train", step=st["step"], epoch=epoch, batch=st["batch"], loss=window.loss / max(window.tok, 1),
            lr=run.sched.get_last_lr()[0], grad_norm=gnorm, audio_s_per_s=window.audio * run.ranks.world / max(dt, 1e-9),
            wall_h=clocks.hours(), cpu_h=st["cpu_s"] / 3600,
            loader_cpu_h=st["loader_cpu_s"] / 3600, audio_h=st["audio_s"] / 3600)
    window.reset()


def _after_step(run: TrainRun, clocks: Clocks, stop_signal: StopOnSignal) -> Optional[str]:
    """The ranks' common decision at a step's end: ``SIGNAL``, ``BUDGET`` or go on (None);
    writes ``last.pt`` when ``ckpt_minutes`` have passed."""
    cfg, st = run.cfg, run.state
    sig, over_time = clocks.step_end(run.ranks, stop_signal.received is not None, cfg.max_hours)
    if sig:
        stop_signal.received = stop_signal.received or "a signal to another rank"
        return SIGNAL
    if clocks.checkpoint_due(cfg.ckpt_minutes):
        save_last(run)
        clocks.checkpointed()
    if (cfg.max_steps and st["step"] >= cfg.max_steps) or over_time or (
            cfg.max_cpu_hours and st["cpu_s"] > cfg.max_cpu_hours * 3600):
        return BUDGET
    return None


def end_epoch(run: TrainRun, clocks: Clocks, epoch: int, partial: bool) -> None:
    """After an epoch (or a budget's end within one, ``partial``): validate and keep the best
    (rank 0), write ``last.pt``, and wait for the other ranks."""
    st = run.state
    if not partial:
        st["epoch"] += 1
        st["batch"] = 0
    if run.ranks.main and run.data.dev:
        validate(run, epoch, partial)
    save_last(run)
    clocks.checkpointed()
    run.ranks.barrier()


def _stop(run: TrainRun, signal_name: Optional[str]) -> dict:
    """The run's summary, logged as its ``stop`` record."""
    st = run.state
    summary = {"step": st["step"], "epoch": st["epoch"], "best_wer": st["best_wer"], "wall_h": st["wall_s"] / 3600}
    if signal_name is not None:
        summary["signal"] = signal_name
        if run.ranks.main:
            print(f"asr train: stopped by {signal_name} at step {st['step']}; "
                  f"{run.last_path} is written, run the same command to resume", file=sys.stderr)
    run.log(type="stop", **summary)
    return summary


def _main(args) -> int:
    cfg = TrainConfig.from_sources(args.config, args.set)
    train(cfg, args.exp, restart=args.restart, progress=not args.no_progress)
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a CTC model (resumable; torchrun for DDP)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML file with TrainConfig fields (e.g. recipes/synth/conf/gru.toml); "
                   "${VAR} / ${VAR:-default} in its data paths come from the environment")
    p.add_argument("--exp", required=True, help="experiment directory (checkpoints, log.jsonl)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config fields (repeatable: --set a=1 b=2 --set c=3)")
    p.add_argument("--restart", action="store_true", help="ignore EXP/last.pt and start from scratch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_main)
