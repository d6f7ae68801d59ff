"""The supervisor of ``asr serve --processes N``: N server processes on one port.

A process runs Python in one thread at a time (the GIL); a server's event loop and its
scheduler workers all need it for their Python parts, so one server process does not keep
two cores busy. With ``--processes N`` the ``asr serve`` process checks the flags, loads the
model once, writes a plan to a temporary directory and becomes this supervisor
(:func:`streaming.serverproc.start`; ``os.execv``, so it keeps its pid and signals sent to
``asr serve`` reach it). The supervisor imports neither torch nor the model (a few MB instead
of ~500). It starts N children (:mod:`streaming.serverproc`), each a whole
:class:`streaming.server.ASRServer` with its own copy of the model, event loop, scheduler and
share of the connection limit, all bound to the same host and port with ``SO_REUSEPORT``: the
kernel (Linux) spreads new connections among them by a hash of the client's address and port,
so a connection may be refused ``server_busy`` by a full process while another has room. The
supervisor keeps the port bound too, without listening (it takes no connection), for its whole
life: a child that replaces one binds the same port even with ``--port 0``.

``/metrics``: the child that takes a scrape sums all of them (:mod:`streaming.peers`, over Unix
sockets in the same directory). ``/healthz`` answers for the one child it reaches.

Life cycle:

* start: the children start in parallel; the supervisor prints the start-up line (child 0's)
  once every child accepts connections. A child that fails to start stops the others; the
  supervisor exits 1.
* SIGTERM / SIGINT to the supervisor: it tells every child to stop (``stop`` on the child's
  stdin); each finishes its streams as a single-process server does; the supervisor exits 0
  once all have exited 0 (1 if one did not, or took longer than the shutdown timeout + 30 s:
  then the rest are killed). Children ignore SIGINT (a terminal's Ctrl-C reaches the whole
  process group; the supervisor passes it on once) and drain on a SIGTERM of their own too
  (a service manager may signal every process of the group).
* a child that exits while the server runs (a crash, an OOM kill) is reported on stderr and
  replaced by a new one with the same index and share of the limit; its clients' connections
  are lost, and its counters leave the ``/metrics`` sums (Prometheus sees a counter reset). A
  replacement that fails to start stops the server as above (exit 1).
* the supervisor dies: each child sees its stdin close and drains as on SIGTERM.

Usage (by :func:`streaming.serverproc.start` only)::

    python -m streaming.supervisor PLAN_DIR
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["main", "reserve_port", "Supervisor", "python_env"]

KILL_GRACE_S = 30.0  # on top of the shutdown timeout: children still running then are killed
PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def python_env() -> dict:
    """The environment for a Python process that must import this package as we do."""
    path = os.environ.get("PYTHONPATH")
    # MALLOC_ARENA_MAX: glibc reads it at start-up; the server processes also cap it at run time
    # (streaming.serve.limit_malloc_arenas), this covers what they allocate before that.
    return dict(os.environ, PYTHONPATH=PACKAGE_ROOT + (os.pathsep + path if path else ""),
                MALLOC_ARENA_MAX=os.environ.get("MALLOC_ARENA_MAX", "2"))


def _socket(family, kind, proto, reuse_port: bool) -> socket.socket:
    """The probe (``SO_REUSEADDR``, as ``loop.create_server`` without ``reuse_port``: binds past
    TIME_WAIT connections, not next to a listener) or the reservation (``SO_REUSEPORT`` only:
    the children may bind next to it, a probe of another server may not)."""
    s = socket.socket(family, kind, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT if reuse_port else socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return s


def reserve_port(host: str, port: int) -> List[socket.socket]:
    """Sockets bound, not listening, with ``SO_REUSEPORT`` to ``port`` (0: a free one) on each
    address of ``host``, as ``loop.create_server(host, port, reuse_port=True)`` binds them.
    Each address is first bound without ``SO_REUSEPORT``, so one in use fails here
    (``EADDRINUSE``) even if its holder set ``SO_REUSEPORT`` too (it would share our clients),
    and so does a second server's reservation next to ours."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    reserved: List[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            for reuse_port in (False, True):
                s = _socket(family, kind, proto, reuse_port)
                try:
                    s.bind((addr[0], port, *addr[2:]))
                except OSError as e:
                    s.close()
                    raise OSError(e.errno, f"error while attempting to bind on address {(addr[0], port)}: "
                                           f"{(e.strerror or str(e)).lower()}") from None
                port = s.getsockname()[1]
                if reuse_port:
                    reserved.append(s)
                else:
                    s.close()
    except BaseException:
        for s in reserved:
            s.close()
        raise
    return reserved


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen
    messages: Optional[int]  # read end of the child's message pipe; None once closed
    exit_fd: Optional[int]  # pidfd: readable once the child has exited (None: the pipe's end says so)
    replacement: bool = False  # replaces a child that exited
    ready: bool = False  # accepts connections
    banner: str = ""
    buffer: bytes = field(default=b"", repr=False)


class Supervisor:
    """Starts the children, waits for signals and for children that exit (module docstring)."""

    def __init__(self, directory: str, plan: dict, port: int):
        self.directory, self.plan, self.port = directory, plan, port
        self.children: Dict[int, _Child] = {}
        self.stopping = False
        self.failed = False  # exit status 1
        self.deadline: Optional[float] = None  # stopping: children still running then are killed
        self.signals: List[int] = []
        self.announced = False

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        handlers = {sig: signal.signal(sig, lambda s, _: self.signals.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        try:
            for k in range(self.plan["processes"]):
                self._start(k)
            while self.children:
                self._wait(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, h in handlers.items():
                signal.signal(sig, h)
            os.close(wake_r)
            os.close(wake_w)
            self._kill_all()
        print("asr serve: stopped" + (" (with errors)" if self.failed else ""), file=sys.stderr, flush=True)
        return 1 if self.failed else 0

    def _wait(self, wake_r: int) -> None:
        """One wake-up: signals, then messages from children, then children that exited."""
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        children = list(self.children.values())
        fds = [wake_r] + [fd for c in children for fd in (c.messages, c.exit_fd) if fd is not None]
        ready = set(select.select(fds, [], [], timeout)[0])
        if wake_r in ready:
            try:
                os.read(wake_r, 256)
            except BlockingIOError:
                pass
        signals, self.signals = self.signals, []
        for sig in signals:
            if not self.stopping:
                print(f"asr serve: {signal.Signals(sig).name}: finishing streams ({len(self.children)} processes)",
                      file=sys.stderr, flush=True)
                self._stop()
        for c in children:
            if c.messages in ready:
                self._read(c)
        for c in children:
            if c.exit_fd in ready or (c.exit_fd is None and c.messages is None):
                self._exited(c)
        if self.deadline is not None and self.children and time.monotonic() >= self.deadline:
            print(f"asr serve: {len(self.children)} process(es) did not stop in time; killing them",
                  file=sys.stderr, flush=True)
            self.failed = True
            self._kill_all()

    def _start(self, index: int, replacement: bool = False) -> None:
        r, w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streaming.serverproc", self.directory, str(index), str(self.port), str(w)],
                stdin=subprocess.PIPE, stdout=sys.stderr.fileno(),  # stray prints stay off the banner's stream
                pass_fds=(w,), env=python_env())
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        try:
            exit_fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            exit_fd = None
        self.children[index] = _Child(index, proc, r, exit_fd, replacement)

    def _read(self, c: _Child) -> None:
        data = os.read(c.messages, 65536)
        if not data:  # the child has exited (or is exiting)
            os.close(c.messages)
            c.messages = None
            return
        c.buffer += data
        while b"\n" in c.buffer:
            line, c.buffer = c.buffer.split(b"\n", 1)
            msg = json.loads(line)
            if msg.get("ready"):
                self._ready(c, msg)

    def _ready(self, c: _Child, msg: dict) -> None:
        c.ready, c.banner = True, msg["banner"]
        if c.replacement:
            print(f"asr serve: process {c.index} replaced (pid {c.proc.pid})", file=sys.stderr, flush=True)
        if not self.announced and len(self.children) == self.plan["processes"] and all(
                x.ready for x in self.children.values()):
            self.announced = True
            print(self.children[0].banner, flush=True)

    def _exited(self, c: _Child) -> None:
        code = c.proc.wait()
        self._forget(c)
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        who = f"asr serve: process {c.index} (pid {c.proc.pid})"
        if self.stopping:
            if code != 0:
                print(f"{who} {how} while stopping", file=sys.stderr, flush=True)
                self.failed = True
        elif not c.ready:
            print(f"{who} {how} before it accepted connections; stopping the server", file=sys.stderr, flush=True)
            self.failed = True
            self._stop()
        else:
            print(f"{who} {how}; starting a new one", file=sys.stderr, flush=True)
            self._start(c.index, replacement=True)

    def _stop(self) -> None:
        self.stopping = True
        self.deadline = time.monotonic() + self.plan["shutdown_timeout_s"] + KILL_GRACE_S
        for c in self.children.values():
            try:
                c.proc.stdin.write(b"stop\n")
                c.proc.stdin.flush()
            except OSError:  # its stdin is closed: it is exiting anyway
                pass

    def _kill_all(self) -> None:
        for c in list(self.children.values()):
            if c.proc.poll() is None:
                c.proc.kill()
            c.proc.wait()
            self._forget(c)

    def _forget(self, c: _Child) -> None:
        """An exited child: its pipes closed, out of the table."""
        del self.children[c.index]
        for fd in (c.messages, c.exit_fd):
            if fd is not None:
                os.close(fd)
        try:
            c.proc.stdin.close()
        except OSError:
            pass


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m streaming.supervisor PLAN_DIR``: serve until SIGTERM; the exit status."""
    directory = (argv if argv is not None else sys.argv[1:])[0]
    try:
        plan = json.loads(Path(directory, "plan.json").read_text())
        try:
            reserved = reserve_port(plan["host"], plan["port"])
        except OSError as e:
            print(f"asr serve: error: {e}", file=sys.stderr, flush=True)
            return 1
        try:
            return Supervisor(directory, plan, reserved[0].getsockname()[1]).run()
        finally:
            for s in reserved:
                s.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
