"""``asr serve --processes N``: the hand-over to the supervisor, and one server process of N.

:func:`start` runs in the ``asr serve`` process: it checks the flags, loads the model once (a
bad flag or model fails here, with one message; the derived connection limit is computed
here and shared out, :func:`shares`), writes the plan into a new temporary directory
(``plan.json`` for the supervisor, ``args.pickle``, the command line, for the children) and
replaces the process with :mod:`streaming.supervisor` (``os.execv``: same pid, none of the
~500 MB torch takes).

``python -m streaming.serverproc DIR INDEX PORT FD`` is one child, started by the supervisor:
an :class:`streaming.server.ASRServer` on ``PORT`` with ``SO_REUSEPORT``, its share of the
connection limit, the plan's workers and torch threads, and :class:`streaming.peers.Peers` in
``DIR`` for ``/metrics``. It writes one JSON line to file descriptor ``FD`` once it accepts
connections (``{"ready": true, "banner": ...}``), finishes its streams and exits 0 on ``stop``
on its stdin, on the end of its stdin (the supervisor is gone: then it also removes ``DIR``)
or on SIGTERM, and ignores SIGINT (the supervisor passes it on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pickle
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import List

from asr.errors import OptionError

from .capacity import default_max_connections
from .peers import Peers
from .scheduler import default_workers
from .supervisor import python_env

__all__ = ["start", "shares", "child_main"]

log = logging.getLogger("streaming.server")


def shares(total: int, processes: int) -> List[int]:
    """``total`` in ``processes`` whole parts differing by at most one (the first ones larger)."""
    return [total // processes + (k < total % processes) for k in range(processes)]


def start(args, processes: int) -> int:
    """Check, plan, and become the supervisor of ``processes`` server processes (module
    docstring): does not return, but raises if a check fails."""
    from asr.checkpoint import load_model

    from .serve import check_arguments, process_shares

    cfg = check_arguments(args)
    workers, threads = process_shares(args, processes)
    rec = load_model(args.model, int8=args.int8)  # a bad model fails here, once
    total = cfg.max_connections or default_max_connections(rec, min(processes * workers, default_workers()))
    if total < processes:
        raise OptionError("--max-connections", f"must be at least --processes ({processes}), got {total}")
    directory = tempfile.mkdtemp(prefix="asr-serve-")
    plan = {"processes": processes, "host": cfg.host, "port": cfg.port, "limits": shares(total, processes),
            "workers": workers, "threads": threads, "shutdown_timeout_s": cfg.shutdown_timeout_s}
    Path(directory, "plan.json").write_text(json.dumps(plan) + "\n")
    command = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"})
    Path(directory, "args.pickle").write_bytes(pickle.dumps(command))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "streaming.supervisor", directory], python_env())
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def child_main(argv: List[str]) -> int:
    """``python -m streaming.serverproc DIR INDEX PORT FD`` (module docstring)."""
    directory, index, port, fd = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        plan = json.loads(Path(directory, "plan.json").read_text())
        args = pickle.loads(Path(directory, "args.pickle").read_bytes())
        return asyncio.run(_serve(args, plan, Peers(directory, index, plan["processes"]), port, fd))
    except Exception as e:
        log.debug("process %d failed", index, exc_info=True)
        print(f"asr serve: process {index}: error: {e}", file=sys.stderr, flush=True)
        return 1


async def _serve(args, plan: dict, peers: Peers, port: int, fd: int) -> int:
    from asr.beam import decoder_from_arguments
    from asr.checkpoint import load_model

    from .serve import banner, check_arguments, configure_process
    from .server import ASRServer

    configure_process(args, plan["threads"], log_format="%(asctime)s process " + str(peers.index)
                      + " %(name)s %(levelname)s %(message)s")
    cfg = replace(check_arguments(args), port=port, max_connections=plan["limits"][peers.index],
                  workers=plan["workers"])
    rec = load_model(args.model, int8=args.int8)
    decoder = decoder_from_arguments(args, rec)
    server = await ASRServer(rec, cfg, decoder, peers=peers).start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(server.shutdown()))

    orphaned = False

    def from_supervisor():  # "stop", or the end of stdin: the supervisor is gone
        nonlocal orphaned
        data = os.read(0, 4096)
        if not data or b"stop" in data:
            orphaned = not data
            loop.remove_reader(0)
            asyncio.ensure_future(server.shutdown())

    loop.add_reader(0, from_supervisor)
    finals = "greedy" if decoder is None else decoder.describe()
    line = banner(rec.name, finals, server.url, bool(server.static), cfg.certfile is not None, plan["processes"],
                  plan["workers"], sum(plan["limits"]))
    os.write(fd, (json.dumps({"ready": True, "banner": line}) + "\n").encode())  # fd stays open: its end = our exit
    await server.wait_stopped()
    if orphaned:  # nobody else will remove the plan
        shutil.rmtree(peers.directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
