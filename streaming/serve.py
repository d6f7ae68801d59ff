"""``asr serve``: the command that runs :class:`streaming.server.ASRServer` until SIGTERM.

Usage::

    asr serve --model exp/ckpt.pt --port 2700
    asr serve --decoder beam --lm lm.arpa --certfile cert.pem --token SECRET
    asr serve --processes 2        # two server processes on one port (streaming/supervisor.py)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from typing import Optional, Tuple

from asr.argtypes import non_negative_int
from asr.beam import add_decoder_arguments, check_decoder_arguments, decoder_from_arguments
from asr.checkpoint import add_int8_argument
from asr.decoding import Decoder, EndpointConfig
from asr.errors import OptionError

from .scheduler import default_workers
from .server import ASRServer, ServerConfig, tls_context

__all__ = ["run_server", "register", "banner", "process_shares", "configure_process", "check_arguments"]

GIL_SWITCH_S = 0.0005  # sys.setswitchinterval of a server process (see configure_process)
MALLOC_ARENAS = 2  # glibc malloc arenas of a server process (see limit_malloc_arenas)
M_ARENA_MAX = -8  # glibc's mallopt parameter number


async def run_server(rec, cfg: ServerConfig, final_decoder: Optional[Decoder] = None) -> int:
    server = await ASRServer(rec, cfg, final_decoder).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (print(f"asr serve: {signal.Signals(s).name}: finishing streams",
                                                         file=sys.stderr, flush=True),
                                                   asyncio.ensure_future(server.shutdown())))
    finals = "greedy" if final_decoder is None else final_decoder.describe()
    print(banner(rec.name, finals, server.url, bool(server.static), server.cfg.certfile is not None, 1,
                 server.cfg.workers, server.cfg.max_connections), flush=True)
    await server.wait_stopped()
    print("asr serve: stopped", file=sys.stderr, flush=True)
    return 0


def banner(model: str, finals: str, url: str, page: bool, tls: bool, processes: int, workers: int,
           max_connections: int) -> str:
    """The start-up line of ``asr serve`` (on stdout once it accepts connections)."""
    http = "https" if tls else "http"
    host_port = url.split("://", 1)[1]
    procs = (f"1 process, {workers} worker(s)" if processes == 1 else
             f"{processes} processes x {workers} worker(s)")
    return (f"asr serve: model {model}; finals {finals}; {procs}, at most {max_connections} connections; "
            f"listening on {url}/asr and {url}/vosk" + (f"; page {http}://{host_port}/" if page else ""))


def default_processes() -> int:
    """One server process per core on Linux (one process never keeps two cores busy: README "Capacity
    and reliability"); 1 elsewhere, where ``SO_REUSEPORT`` does not spread connections among processes."""
    return default_workers() if sys.platform.startswith("linux") else 1


def _main(args) -> int:
    processes = args.processes or default_processes()
    if processes > 1:
        from .serverproc import start

        return start(args, processes)  # becomes the supervisor (streaming/supervisor.py)
    workers, threads = process_shares(args, 1)
    configure_process(args, threads)
    cfg = check_arguments(args)  # checks the values before the model is loaded
    from asr.checkpoint import load_model

    rec = load_model(args.model, int8=args.int8)
    return asyncio.run(run_server(rec, replace(cfg, workers=workers), decoder_from_arguments(args, rec)))


def process_shares(args, processes: int) -> Tuple[int, int]:
    """(scheduler workers per server process, torch intra-op threads): by default the cores
    shared out among the processes, then among each one's workers (at least one each).
    Workers and processes already run in parallel, so more threads only add synchronisation."""
    cores = default_workers()
    workers = args.workers or max(1, cores // processes)
    return workers, args.threads or max(1, cores // (processes * workers))


def configure_process(args, threads: int, log_format: str = "%(asctime)s %(name)s %(levelname)s %(message)s") -> None:
    """Logging, torch threads and the GIL switch interval of a process that serves."""
    import torch

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format=log_format)
    torch.set_num_threads(threads)
    # Each torch operator of a worker releases the GIL and must take it back; while the event
    # loop runs Python, a thread waiting for the GIL gets it only after the switch interval
    # (5 ms by default), which would stretch every model step under load.
    sys.setswitchinterval(GIL_SWITCH_S)
    limit_malloc_arenas()


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``; no-op elsewhere). With the default (8 per
    core), the threads of a long-running server can leave freed memory spread over many arenas
    (churn runs: README "Capacity and reliability"). Returns whether the cap was set."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False


def check_arguments(args) -> ServerConfig:
    """The server settings of the command line, every check that needs no model done."""
    if args.keyfile and not args.certfile:
        raise ValueError("--keyfile needs --certfile")
    if args.certfile:
        tls_context(args.certfile, args.keyfile)  # a missing or bad file fails now, not after loading the model
    cfg = _config(args)
    check_decoder_arguments(args)
    return cfg


def _config(args) -> ServerConfig:
    """The server settings of the command line; a value out of range is reported under its
    flag's name (the field ``idle_timeout_s`` is the flag ``--idle-timeout``)."""
    token = args.token if args.token is not None else os.environ.get("ASR_SERVER_TOKEN") or None
    try:
        return ServerConfig(
            host=args.host, port=args.port,
            endpoint=EndpointConfig(trailing_silence_s=args.trailing_silence, max_segment_s=args.max_segment,
                                    enabled=not args.no_endpoint),
            max_message_bytes=args.max_message_bytes, max_connections=args.max_connections,
            idle_timeout_s=args.idle_timeout, max_pending_s=args.max_pending, max_batch=args.max_batch,
            batch_wait_s=args.batch_wait,
            vosk_sample_rate=args.vosk_sample_rate, token=token, certfile=args.certfile, keyfile=args.keyfile,
            web=not args.no_web,
        )
    except OptionError as e:
        raise e.renamed("--" + e.option.removesuffix("_s").replace("_", "-")) from None


def register(sub) -> None:
    d = ServerConfig()
    e = d.endpoint
    p = sub.add_parser(
        "serve", help="run the WebSocket transcription server",
        description="Serve live transcription over WebSocket: /asr (JSON protocol, streaming/PROTOCOL.md), "
                    "/vosk (Vosk-compatible), / (browser microphone page), /healthz, /metrics. "
                    "SIGTERM finishes every stream with its final result, then exits.",
    )
    p.add_argument("--model", default="default", help="bundled model name or checkpoint path, fixed at start-up (default: %(default)s)")
    p.add_argument("--host", default=d.host, help="interface to listen on (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=d.port, help="TCP port, 0 for any free one (default: %(default)s)")
    p.add_argument("--trailing-silence", type=float, default=e.trailing_silence_s, metavar="S",
                   help="endpoint: non-speech after speech that ends an utterance, s (default: %(default)s)")
    p.add_argument("--max-segment", type=float, default=e.max_segment_s, metavar="S",
                   help="endpoint: utterance length after which it ends at the next pause, s (default: %(default)s)")
    p.add_argument("--no-endpoint", action="store_true", help="no endpointing by default (clients may still enable it)")
    p.add_argument("--max-connections", type=int, default=d.max_connections, metavar="N",
                   help="more WebSocket connections are refused with close code 1013; with --processes, the "
                        "limit of the whole server, shared out evenly among the processes (default: 0, derived "
                        "from the model's arithmetic and the cores, about 125 streams per core for the default "
                        "model; see streaming/capacity.py)")
    p.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, metavar="N",
                   help="largest binary message, bytes; given to clients in `ready` (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout_s, metavar="S",
                   help="close connections silent for this long (default: %(default)s)")
    p.add_argument("--max-pending", type=float, default=d.max_pending_s, metavar="S",
                   help="queued audio per connection before the server stops reading it, s (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, metavar="N", help="most streams per model step (default: %(default)s)")
    p.add_argument("--batch-wait", type=float, default=d.batch_wait_s, metavar="S",
                   help="a scheduler worker waits until the oldest queued audio is this old before stepping fewer "
                        "than --max-batch streams, so more streams share one model call: less CPU per stream, "
                        "up to this much more latency (default: %(default)s)")
    p.add_argument("--processes", type=non_negative_int, default=0, metavar="N",
                   help="server processes sharing the port (SO_REUSEPORT; the kernel spreads connections among "
                        "them), each with its own copy of the model and its own scheduler; a supervisor process "
                        "starts them, replaces one that dies, and on SIGTERM lets all finish their streams "
                        "(default: 0, one per CPU core on Linux, 1 elsewhere)")
    p.add_argument("--workers", type=non_negative_int, default=d.workers, metavar="N",
                   help="scheduler threads stepping streams in parallel, per process (default: 0, the CPU cores "
                        "divided among the processes, at least 1)")
    p.add_argument("--vosk-sample-rate", type=int, default=d.vosk_sample_rate, metavar="HZ",
                   help="/vosk sample rate when a client sends no config (default: %(default)s, as vosk-server)")
    p.add_argument("--token", default=None,
                   help="require this bearer token (Authorization header or ?token=); default: $ASR_SERVER_TOKEN if set")
    p.add_argument("--certfile", help="TLS certificate (PEM): serve wss:// and https://")
    p.add_argument("--keyfile", help="TLS private key (PEM), if not in --certfile")
    p.add_argument("--no-web", action="store_true", help="do not serve the browser page at /")
    add_decoder_arguments(p, finals_only=True)
    add_int8_argument(p)
    p.add_argument("--threads", type=non_negative_int, default=0, metavar="N",
                   help="torch intra-op CPU threads per process (default: 0, the cores divided among all the "
                        "processes' workers, at least 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="log connections and errors")
    p.set_defaults(func=_main)
