"""The processes of one ``asr serve --processes N`` server answer for each other's metrics.

The kernel hands each connection, a ``/metrics`` scrape included, to any one of the server
processes (they share the port with ``SO_REUSEPORT``), so the process that takes a scrape
asks the others for their numbers and renders the sum (:func:`streaming.metrics.render`):
``/metrics`` describes the whole server, not one process.

Every process listens on a Unix socket ``DIR/K.sock`` (``DIR``: a directory the supervisor
made for this server, ``K``: the process's index); whoever connects gets one JSON line, that
process's :meth:`streaming.metrics.Metrics.snapshot` at that moment, and the end of the
connection. A process that does not answer within the timeout (it died and is being
replaced, or is stuck) is left out of the sum, and ``asr_processes`` is one less.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Callable, List, Optional

__all__ = ["Peers"]

log = logging.getLogger("streaming.server")

ASK_TIMEOUT_S = 5.0  # longest wait for one other process's snapshot during a scrape


class Peers:
    """Process ``index`` of ``processes`` sharing a port; their sockets are in ``directory``."""

    def __init__(self, directory: str, index: int, processes: int):
        if not 0 <= index < processes:
            raise ValueError(f"process index {index} not in 0..{processes - 1}")
        self.directory, self.index, self.processes = Path(directory), index, processes
        self._server: Optional[asyncio.AbstractServer] = None
        self._snapshot: Optional[Callable[[], dict]] = None

    def path(self, index: int) -> Path:
        return self.directory / f"{index}.sock"

    async def start(self, snapshot: Callable[[], dict]) -> None:
        """Answer the other processes with ``snapshot()`` (called on this event loop)."""
        self._snapshot = snapshot
        path = self.path(self.index)
        path.unlink(missing_ok=True)  # left by a process this one replaces
        self._server = await asyncio.start_unix_server(self._answer, str(path))

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(self._snapshot()).encode() + b"\n")
            await writer.drain()
        except (OSError, ConnectionError):
            pass  # the asking process gave up
        finally:
            writer.close()

    async def gather(self) -> List[dict]:
        """The snapshots of the other processes that answer (in index order)."""
        found = await asyncio.gather(*(self._ask(k) for k in range(self.processes) if k != self.index))
        return [s for s in found if s is not None]

    async def _ask(self, index: int) -> Optional[dict]:
        async def ask():
            reader, writer = await asyncio.open_unix_connection(str(self.path(index)))
            try:
                return json.loads(await reader.read())
            finally:
                writer.close()

        try:
            return await asyncio.wait_for(ask(), ASK_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            log.warning("metrics: process %d did not answer: %s", index, e.__class__.__name__)
            return None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        try:
            os.unlink(self.path(self.index))
        except FileNotFoundError:
            pass
