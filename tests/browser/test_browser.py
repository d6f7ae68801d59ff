"""The browser page end to end in headless Chromium: fake microphone (a WAV file) ->
getUserMedia -> AudioWorklet downsampling -> /asr WebSocket -> partial and final text on the page.

Checks that the audio the server received is the WAV's signal (correlation after the page's
resampling), that the page shows exactly the server's transcription of that audio, and saves a
screenshot taken mid-transcription (copied to $ASR_BROWSER_SCREENSHOT if set, e.g.
``streaming/web/screenshot.png``).

Needs Debian's chromium (``.ci/browser-setup.sh``); skipped with a reason when it is absent.
"""

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from asr.checkpoint import load_model
from streaming.server import BackgroundServer, ServerConfig

from cdp import Browser, find_chromium
from conftest import make_recognizer, speechlike

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="chromium not installed (bash .ci/browser-setup.sh installs Debian's chromium)")

SR = 16000


def bursts_with_pauses(seconds_per_burst=(1.2, 1.0, 1.4)):
    """Speech-like bursts with noise gaps (the random model emits blanks there: endpoints fire)."""
    rng = np.random.default_rng(7)
    parts = []
    for i, d in enumerate(seconds_per_burst):
        parts.append(speechlike(d, SR, seed=90 + i))
        parts.append((0.1 * rng.standard_normal(int(1.5 * SR))).astype(np.float32))
    return np.concatenate(parts)


class Recording:
    """Wraps a Recognizer so every stream the server opens records the audio it is fed
    (everything else, e.g. the model the server sizes its limits by, is the recognizer's)."""

    def __init__(self, rec):
        self.rec = rec
        self.name = rec.name
        self.fed = []

    def __getattr__(self, name):
        return getattr(self.rec, name)

    def stream(self, sample_rate, **kw):
        st = self.rec.stream(sample_rate, **kw)
        chunks = []
        self.fed.append((sample_rate, chunks))
        windows = st._windows  # where Stream.feed and the server's batched feed_streams both pass

        def recording_windows(samples):
            chunks.append(np.array(samples, copy=True))
            return windows(samples)

        st._windows = recording_windows
        return st


def lowpass(x: np.ndarray, hz: float = 2000.0) -> np.ndarray:
    """Brick-wall low-pass: the page's resampling delays the signal by a fraction of a sample,
    which decorrelates broadband noise at integer lags but not the band below 2 kHz."""
    spec = np.fft.rfft(x.astype(np.float64))
    spec[int(hz / SR * len(x)) :] = 0
    return np.fft.irfft(spec, len(x))


def best_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Max over lags of the normalised cross-correlation of ``a`` with (looped) ``b``, via FFT."""
    n = len(a)
    a = a.astype(np.float64)
    a = (a - a.mean()) / (a.std() + 1e-12)
    bb = np.concatenate([b, b[:n]]).astype(np.float64)
    nfft = 1 << int(np.ceil(np.log2(len(bb) + n)))
    dots = np.fft.irfft(np.fft.rfft(bb, nfft) * np.conj(np.fft.rfft(a, nfft)), nfft)[: len(b)]
    c1 = np.concatenate([[0.0], np.cumsum(bb)])
    c2 = np.concatenate([[0.0], np.cumsum(bb * bb)])
    mean = (c1[n : n + len(b)] - c1[: len(b)]) / n
    var = (c2[n : n + len(b)] - c2[: len(b)]) / n - mean**2
    return float(np.max(dots / (n * np.sqrt(np.maximum(var, 1e-12)))))


def test_browser_microphone_page(tmp_path):
    wave = bursts_with_pauses()
    wav = tmp_path / "speech.wav"
    sf.write(wav, wave, SR, subtype="PCM_16")
    ckpt = tmp_path / "random.pt"
    make_recognizer("gru").save(ckpt)
    rec = Recording(load_model(str(ckpt)))
    with BackgroundServer(rec, ServerConfig(port=0)) as srv:
        page_url = srv.url.replace("ws://", "http://") + "/"
        browser = Browser(tmp_path / "profile", extra_flags=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
        ])
        try:
            browser.navigate(page_url)
            assert browser.eval("document.title") == "Live transcription"
            browser.eval("document.getElementById('start').click()", gesture=True)
            browser.wait_for("window.asrEvents.some(e => e.type === 'ready')", timeout=20)
            ready = browser.eval("window.asrEvents.find(e => e.type === 'ready')")
            assert ready["sample_rate"] == SR and ready["format"] == "s16le"
            # mid-transcription: a final on the page and a partial in progress
            browser.wait_for("document.querySelectorAll('#finals .final').length >= 1 && "
                             "document.getElementById('partial').textContent.length > 0", timeout=40)
            shot = tmp_path / "screenshot.png"
            browser.screenshot(shot)
            assert shot.stat().st_size > 10_000
            if os.environ.get("ASR_BROWSER_SCREENSHOT"):
                shutil.copy(shot, os.environ["ASR_BROWSER_SCREENSHOT"])
            browser.wait_for("document.querySelectorAll('#finals .final').length >= 2", timeout=40)
            browser.eval("document.getElementById('stop').click()", gesture=True)
            browser.wait_for("window.asrEvents.some(e => e.type === 'done')", timeout=20)
            events = browser.eval("window.asrEvents")
            page_finals = browser.eval("[...document.querySelectorAll('#finals .final')]"
                                       ".map(p => [...p.querySelectorAll('.word')].map(w => w.textContent.trim()).join(' '))")
            status = browser.eval("document.getElementById('status').textContent")
        finally:
            browser.close()
        metrics = srv.server.render_metrics()

    kinds = [e["type"] for e in events]
    assert kinds[0] == "ready" and kinds[-1] == "done" and "error" not in kinds, kinds
    assert "partial" in kinds
    finals = [e for e in events if e["type"] == "final"]
    assert finals[-1]["reason"] == "end"
    assert sum(f["reason"] == "endpoint" for f in finals) >= 1
    assert page_finals == [f["text"] for f in finals if f["text"]]  # the page shows what the server sent
    assert status == "done"

    # the server received the WAV's signal, downsampled to 16 kHz by the page's worklet
    assert len(rec.fed) == 1
    rate, chunks = rec.fed[0]
    got = np.concatenate(chunks).astype(np.float32) / 32768.0
    seconds = len(got) / rate
    assert rate == SR and seconds > 3.0
    # (in 0.5 s windows: a capture glitch under CPU load breaks the alignment of a window, not all)
    got_lp, wave_lp = lowpass(got), lowpass(wave)
    corrs = [best_correlation(got_lp[i : i + SR // 2], wave_lp) for i in range(SR // 2, len(got) - SR // 2, SR // 2)]
    corr = float(np.median(corrs))
    print(f"\nbrowser: {seconds:.1f} s of audio, {len(finals)} finals, correlation with the WAV: "
          f"median {corr:.3f}, min {min(corrs):.3f} over {len(corrs)} windows")
    assert corr > 0.95

    # and the page's text is exactly the offline transcription of that audio
    ref = rec.rec.transcribe(np.concatenate(chunks), SR).text
    assert "".join(f["text"] for f in finals).replace(" ", "") == ref.replace(" ", "")
    assert "asr_connections_total{endpoint=\"asr\"} 1" in metrics
