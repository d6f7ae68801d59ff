"""The processes of a training run: DDP ranks, stop signals, and the clocks budgets are judged on.

* :class:`Ranks`: this process's place in a ``torchrun`` job (or a single process);
* :class:`StopOnSignal`: the first SIGTERM / Ctrl-C becomes "stop after this step";
* :class:`Clocks`: wall, CPU and data-loader CPU time of the run, continued across resumes and
  agreed on by all ranks at every step's end (:func:`step_end_agreement`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

__all__ = ["Ranks", "StopOnSignal", "Clocks", "children_cpu_seconds", "ignore_stop_signals",
           "step_end_agreement"]


@dataclass(frozen=True)
class Ranks:
    """This process in a ``torchrun`` job (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), or alone."""

    world: int
    rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes checkpoints and the log, and validates."""
        return self.rank == 0

    @classmethod
    def join(cls) -> "Ranks":
        """Joins the process group (nccl on GPUs, gloo on CPU) when there is more than one rank."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        cuda = torch.cuda.is_available()
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
        return cls(world, rank, device)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


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


def ignore_stop_signals(_worker_id: int) -> None:
    """A data-loader worker's ``worker_init_fn``: Ctrl-C and ``kill -- -PGID`` reach the whole
    process group, and the workers must keep serving batches while the main process stops
    cleanly (they exit with it, or if it dies)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


class StopOnSignal:
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


def step_end_agreement(world: int, signalled: bool, over_time: bool, cpu_s: float,
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


class Clocks:
    """The run's clocks in ``state`` (``wall_s``, ``cpu_s``, ``loader_cpu_s``: totals over every
    invocation; CPU summed over ranks), continued from the values this invocation starts with.
    Also the time of the last ``last.pt`` write (``ckpt_minutes``)."""

    def __init__(self, state: dict):
        self.state = state
        self.t_start = time.time()
        self.wall0 = state["wall_s"]
        self.cpu_start, self.cpu0 = time.process_time(), state.get("cpu_s", 0.0)
        self.loader_start, self.loader0 = children_cpu_seconds(), state["loader_cpu_s"]
        self.last_ckpt = time.time()

    def hours(self) -> float:
        """Wall-clock hours of the run so far (all invocations)."""
        return (self.wall0 + time.time() - self.t_start) / 3600

    def step_end(self, ranks: Ranks, signalled: bool, max_hours: float) -> tuple:
        """Updates the clocks in ``state`` at a step's end and returns the ranks' common
        ``(any rank signalled, this invocation over max_hours)``: every rank leaves the loop at
        the same step (one leaving alone would hang the others in their next collective)."""
        st = self.state
        st["wall_s"] = self.wall0 + time.time() - self.t_start
        sig, over_time, cpu_s, loader_s = step_end_agreement(
            ranks.world, signalled, bool(max_hours and time.time() - self.t_start > max_hours * 3600),
            time.process_time() - self.cpu_start, children_cpu_seconds() - self.loader_start)
        st["cpu_s"], st["loader_cpu_s"] = self.cpu0 + cpu_s, self.loader0 + loader_s
        return sig, over_time

    def checkpoint_due(self, minutes: float) -> bool:
        return time.time() - self.last_ckpt > minutes * 60

    def checkpointed(self) -> None:
        self.last_ckpt = time.time()
