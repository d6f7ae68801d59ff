"""Client side of ``tools/bench_server.py``: speech as precomputed chunks, and one real-time
``/asr`` session that times every partial and final it receives.

All clients of a run share one asyncio loop in one process; the audio is decoded, resampled
and cut into 100 ms s16le chunks before any client starts, so a client's work during the
run is a timer, a send per chunk and the parsing of the events it gets.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR, CHUNK_S = 16000, 0.1  # Hz and seconds of the chunks sent
LOOKAHEAD_S = 0.015  # a 25 ms frame reaches 15 ms past its 10 ms hop: audio a step needs past its end


# ---- input --------------------------------------------------------------------------------
def audio_paths(specs: List[str]) -> List[Path]:
    out: List[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in (".wav", ".flac", ".ogg"))
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                if line.strip():
                    out.append(p.parent / json.loads(line)["audio"])
        else:
            out.append(p)
    if not out:
        raise SystemExit(f"no audio files in {specs}")
    return out


def load_chunks(paths: List[Path], limit_s: float = 1800.0) -> List[bytes]:
    """All files at 16 kHz, joined with 0.3 s of silence, as s16le 100 ms chunks (a ring the
    clients read from at different offsets); at most ``limit_s`` seconds are kept."""
    import torch
    import torchaudio

    from asr.audio import read_audio

    parts, total = [], 0
    for p in paths:
        x, sr = read_audio(str(p))
        if sr != SR:
            x = torchaudio.functional.resample(torch.from_numpy(x), sr, SR).numpy()
        parts += [x, np.zeros(int(0.3 * SR), np.float32)]
        total += len(x) / SR
        if total >= limit_s:
            break
    pcm = np.clip(np.round(np.concatenate(parts) * 32768), -32768, 32767).astype("<i2")
    step = int(CHUNK_S * SR)
    return [pcm[i : i + step].tobytes() for i in range(0, len(pcm) - step + 1, step)]


# ---- one client session ---------------------------------------------------------------------
@dataclass
class Tally:
    partial_ms: List[float] = field(default_factory=list)
    final_ms: List[float] = field(default_factory=list)
    sessions: int = 0
    aborted: int = 0  # left on purpose without "end" (churn)
    errors: List[str] = field(default_factory=list)


async def session(url: str, ring: List[bytes], offset: int, n_chunks: int, tally: Tally,
                  abort_after: Optional[int] = None) -> None:
    """Stream ``n_chunks`` chunks of ``ring`` from ``offset`` in real time, then ``end``
    (or drop the connection after ``abort_after`` chunks)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    sent: List[float] = []  # monotonic send time of each chunk
    t_end = None
    got_done = False
    try:
        async with connect(url, open_timeout=30, compression=None, max_size=2**22) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": SR, "format": "s16le", "words": False}))
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                tally.errors.append(f"refused: {ready.get('code', ready)}")
                return

            async def send():
                nonlocal t_end
                t0 = time.monotonic()
                for k in range(n_chunks):
                    delay = t0 + k * CHUNK_S - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if abort_after is not None and k == abort_after:
                        ws.transport.abort()  # a client that vanishes: no end, no close frame
                        return
                    await ws.send(ring[(offset + k) % len(ring)])
                    sent.append(time.monotonic())
                await asyncio.sleep(max(0.0, t0 + n_chunks * CHUNK_S - time.monotonic()))
                t_end = time.monotonic()
                await ws.send('{"type": "end"}')

            sender = asyncio.create_task(send())
            try:
                async for msg in ws:
                    now = time.monotonic()
                    ev = json.loads(msg)
                    kind = ev["type"]
                    if kind == "partial" and sent:
                        k = min(len(sent) - 1, max(0, int(np.ceil((ev["end"] + LOOKAHEAD_S) / CHUNK_S - 1e-9)) - 1))
                        tally.partial_ms.append(1000 * (now - sent[k]))
                    elif kind == "final" and ev.get("reason") == "end" and t_end is not None:
                        tally.final_ms.append(1000 * (now - t_end))
                    elif kind == "done":
                        got_done = True
                    elif kind == "error":
                        tally.errors.append(f"error event: {ev.get('code')}")
            except ConnectionClosed:
                pass
            await sender
            if abort_after is not None:
                tally.aborted += 1
            elif not got_done:
                tally.errors.append(f"closed before done: {ws.close_code} {ws.close_reason}")
    except (OSError, asyncio.TimeoutError) as e:
        if abort_after is None:
            tally.errors.append(f"{e.__class__.__name__}: {e}")
    except ConnectionClosed as e:
        if abort_after is None:
            tally.errors.append(f"closed: {e}")
    tally.sessions += 1
