"""What a training run keeps to continue exactly: ``EXP/last.pt`` and its progress record.

``last.pt`` is a self-describing model checkpoint (:func:`asr.checkpoint.save_checkpoint`)
plus ``train_config`` (the flat options), ``optimizer``, ``scheduler``, ``progress``
(:func:`new_progress`) and ``rng`` (every random generator's state, as tensors and lists so
that it loads with ``weights_only=True``, hence also with :func:`asr.load_model`).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .checkpoint import save_checkpoint

__all__ = ["new_progress", "read_resume", "load_last", "save_last", "restore", "report_changed_options", "checkpoint_meta",
           "rng_state", "set_rng_state"]


def new_progress() -> dict:
    """A new run's progress: position (epoch, batch within it, optimizer step), clocks (seconds;
    ``cpu_s`` of the training processes, ``loader_cpu_s`` of their data-loading workers), audio
    seen, and the best ``select_metric`` so far (``best_wer``: the key predates the option);
    a warm start adds ``init_from`` (:func:`asr.trainsetup.init_meta`)."""
    return {"epoch": 0, "batch": 0, "step": 0, "wall_s": 0.0, "cpu_s": 0.0, "loader_cpu_s": 0.0, "audio_s": 0.0,
            "best_wer": None, "best_step": None}


def load_last(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # checkpoints written before RNG states were stored as tensors (our own run directory)
        return torch.load(path, map_location="cpu", weights_only=False)


def save_last(run) -> None:
    """Writes ``last.pt`` for a :class:`asr.trainsetup.TrainRun` (rank 0 only)."""
    if not run.ranks.main:
        return
    extra = {
        "train_config": run.cfg.to_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "progress": dict(run.state),
        "rng": rng_state(),
    }
    save_checkpoint(run.last_path, run.model, run.tok, run.fcfg, meta=checkpoint_meta(run.cfg, run.state, run.model),
                    extra=extra)


def restore(run, resume: dict) -> None:
    """Continues ``run`` from a loaded ``last.pt``: weights, optimizer, schedule, progress and
    random generators, so the steps that follow are those of a run that never stopped."""
    run.model.load_state_dict(resume["model"])
    run.opt.load_state_dict(resume["optimizer"])
    run.sched.load_state_dict(resume["scheduler"])
    run.state.update(resume["progress"])
    set_rng_state(resume["rng"])
    if run.ranks.main:
        st = run.state
        print(f"asr train: resumed {run.last_path} at epoch {st['epoch']} batch {st['batch']} "
              f"step {st['step']}", file=sys.stderr)


def report_changed_options(saved: dict, cfg) -> None:
    """Names the options that differ from those ``last.pt`` was written with (a resumed run
    may change them, e.g. a longer schedule)."""
    changed = {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if k in saved and norm(saved[k]) != norm(v)}
    if changed:
        print(f"asr train: resuming with changed options: {changed}", file=sys.stderr)


def norm(v):
    """Tuples and lists compare equal (TOML and JSON give lists, the config tuples)."""
    return list(v) if isinstance(v, (tuple, list)) else v


def checkpoint_meta(cfg, state: dict, model) -> dict:
    """The training record every checkpoint carries in ``meta``."""
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


def rng_state() -> dict:
    """Generator states as tensors and lists, so last.pt loads with ``weights_only=True``
    (and therefore with ``asr.load_model``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pystate, pygauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(pystate), pygauss]}


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if isinstance(st["numpy"], tuple):  # older checkpoints: numpy's own state tuple
        np.random.set_state(st["numpy"])
        random.setstate(st["python"])
        return
    kind, keys, pos, has_gauss, gauss = st["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, pystate, pygauss = st["python"]
    random.setstate((version, tuple(pystate), pygauss))


def read_resume(last_path: Path, restart: bool) -> Optional[dict]:
    """``last.pt`` when it exists and ``--restart`` was not given."""
    return load_last(last_path) if last_path.exists() and not restart else None
