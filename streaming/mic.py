"""``asr mic``: live microphone transcription (sounddevice).

Through a server (``--url ws://HOST:PORT/asr``) or, without ``--url``, in this
process with ``--model``. Partials are rewritten in place, finals printed line by
line; Ctrl-C ends the utterance, prints the last final and exits.

Usage::

    asr mic --list-devices
    asr mic --model exp/ckpt.pt                   # in-process
    asr mic --url ws://127.0.0.1:2700/asr         # through asr serve
    asr mic --device 3 --samplerate 44100 --url ws://server:2700/asr
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import sys
import threading
from typing import Callable, Iterable, Optional

import numpy as np

from asr.beam import add_decoder_arguments
from asr.checkpoint import add_int8_argument
from asr.decoding import EndpointConfig
from asr.errors import CLIError

__all__ = ["input_devices", "run_local", "register"]

BLOCK_S = 0.1  # audio per capture block / message, seconds


def _sd():
    try:
        import sounddevice as sd
    except OSError as e:  # the Python package is there, the PortAudio library is not
        raise CLIError(f"cannot use the sound system: {e} (install PortAudio, e.g. apt-get install libportaudio2)") from None
    return sd


def input_devices(sd) -> list:
    """[(index, device dict)] of devices with input channels."""
    try:
        devs = sd.query_devices()
    except sd.PortAudioError:
        return []
    return [(i, d) for i, d in enumerate(devs) if d.get("max_input_channels", 0) > 0]


def _pick_device(sd, device):
    inputs = input_devices(sd)
    if not inputs:
        raise CLIError("no audio input device found (no microphone, or no access to the sound system); "
                       "`asr client FILE` transcribes a file instead")
    if device is None:
        default = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
        return default if default is not None and default >= 0 else inputs[0][0], inputs
    idx = int(device) if str(device).isdigit() else None
    for i, d in inputs:
        if i == idx or (idx is None and str(device).lower() in d["name"].lower()):
            return i, inputs
    raise CLIError(f"no input device {device!r}; see `asr mic --list-devices`")


class _Capture:
    """sounddevice InputStream -> thread-safe queue of int16 blocks, or None at the end."""

    def __init__(self, sd, device, sample_rate: int):
        self.q: "queue.Queue[Optional[np.ndarray]]" = queue.Queue(maxsize=600)  # 60 s of blocks
        self.dropped = 0

        def cb(indata, frames, time_info, status):
            try:
                self.q.put_nowait(indata[:, 0].copy())
            except queue.Full:  # the consumer stalled: drop audio rather than grow without bound
                self.dropped += 1

        # finished_callback: a device that goes away ends the capture like Ctrl-C (last final printed)
        self.stream = sd.InputStream(device=device, channels=1, samplerate=sample_rate, dtype="int16",
                                     blocksize=int(round(sample_rate * BLOCK_S)), callback=cb,
                                     finished_callback=self.stop)

    def __enter__(self):
        self.stream.start()
        return self

    def stop(self):
        self.q.put(None)

    def __exit__(self, *exc):
        self.stream.stop()
        self.stream.close()

    def blocks(self):
        while True:
            b = self.q.get()
            if b is None:
                return
            yield b


def run_local(rec, blocks: Iterable[np.ndarray], sample_rate: int, on_event: Callable[[dict], None],
              endpoint: EndpointConfig = EndpointConfig(), final_decoder=None, partials: bool = True) -> list:
    """In-process recognition of ``blocks``: the same events a server sends (partial/final).

    ``final_decoder``: see :class:`asr.stream.Stream` (finals by beam search, partials greedy)."""
    from .protocol import final_event, partial_event

    st = rec.stream(sample_rate, endpoint=endpoint, final_decoder=final_decoder)
    events = []

    def emit(ev):
        events.append(ev)
        on_event(ev)

    last = ""
    for b in blocks:
        st.accept_waveform(b)
        res = st.pop_endpoint()
        if res is not None:
            emit(final_event(res, "endpoint"))
            last = ""
        p = st.partial()
        if partials and p.text and p.text != last:
            emit(partial_event(p))
        last = p.text
    emit(final_event(st.finish(), "end"))
    return events


def _main(args) -> int:
    from .client import Printer, ServerError, run_session

    sd = _sd()
    if args.list_devices:
        inputs = input_devices(sd)
        if not inputs:
            print("no audio input devices found")
            return 1
        default = sd.default.device[0] if isinstance(sd.default.device, (list, tuple)) else sd.default.device
        for i, d in inputs:
            mark = "*" if i == default else " "
            print(f"{mark} {i:3d}  {d['name']}  ({d['max_input_channels']} ch, {d['default_samplerate']:g} Hz)")
        return 0
    device, inputs = _pick_device(sd, args.device)
    info = dict(inputs)[device] if device in dict(inputs) else sd.query_devices(device)
    sr = int(args.samplerate or info["default_samplerate"])
    printer = Printer(json_lines=args.json)
    rec = decoder = None
    if args.url:
        if args.decoder != "default" or args.lm:
            raise ValueError("--decoder and --lm apply to in-process recognition; with --url the server's "
                             "decoder is used (asr serve --decoder ...)")
    else:
        from asr.beam import check_decoder_arguments, decoder_from_arguments
        from asr.checkpoint import load_model

        check_decoder_arguments(args)
        rec = load_model(args.model, int8=args.int8)
        decoder = decoder_from_arguments(args, rec)
    cap = _Capture(sd, device, sr)

    print(f"asr mic: listening on {info['name']} at {sr} Hz ({'server ' + args.url if args.url else 'model ' + rec.name}); "
          "Ctrl-C to stop", file=sys.stderr, flush=True)
    # Ctrl-C ends the capture; the queue is fed from another thread, never inside the handler
    prev = signal.signal(signal.SIGINT, lambda *a: threading.Thread(target=cap.stop, daemon=True).start())
    try:
        with cap:
            if rec is not None:
                run_local(rec, cap.blocks(), sr, printer, EndpointConfig(enabled=not args.no_endpoint), decoder,
                          partials=not args.no_partials)
            else:
                token = args.token if args.token is not None else os.environ.get("ASR_SERVER_TOKEN") or None

                async def chunks():
                    loop = asyncio.get_running_loop()
                    it = cap.blocks()
                    while True:
                        b = await loop.run_in_executor(None, next, it, None)
                        if b is None:
                            return
                        yield b

                endpoint = {"enabled": False} if args.no_endpoint else None
                try:
                    asyncio.run(run_session(args.url, chunks(), sr, "s16le", partials=not args.no_partials,
                                            words=not args.no_words, endpoint=endpoint, token=token, on_event=printer))
                except ServerError as e:
                    raise CLIError(f"server: {e}") from None
    finally:
        signal.signal(signal.SIGINT, prev)
    if cap.dropped:
        print(f"asr mic: warning: {cap.dropped} audio blocks dropped (recognition fell behind)", file=sys.stderr)
    return 0


def register(sub) -> None:
    from .client import add_connection_args

    p = sub.add_parser(
        "mic", help="live microphone transcription",
        description="Transcribe the microphone live, through `asr serve` (--url) or in this process (--model).",
    )
    p.add_argument("--url", default=None, help="server endpoint, e.g. ws://127.0.0.1:2700/asr (default: recognise in-process)")
    p.add_argument("--model", default="default", help="model for in-process recognition (default: %(default)s)")
    p.add_argument("--device", default=None, help="input device index or part of its name (default: the system default)")
    p.add_argument("--samplerate", type=int, default=None, help="capture rate, Hz (default: the device's)")
    p.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    add_connection_args(p)
    add_decoder_arguments(p, finals_only=True, default="default")  # one user: beam + LM finals are cheap
    add_int8_argument(p)
    p.set_defaults(func=_main)
