// AudioWorklet: microphone samples (the AudioContext's rate, e.g. 48 kHz) -> 16 kHz int16 PCM chunks.
//
// Downsampling is a windowed-sinc low-pass interpolator (any ratio, 44.1 kHz included): output
// sample n is the input band-limited to just under the target Nyquist, evaluated at input time
// n * inRate / outRate. Plain decimation would fold everything above 8 kHz into the speech band.
// Every `chunkMs` the processor posts {pcm: ArrayBuffer (Int16, little-endian), rms: level 0..1}.

class Resampler {
  constructor(inRate, outRate, halfWidth = 8) {
    this.step = inRate / outRate; // input samples per output sample
    this.cutoff = Math.min(1, outRate / inRate) * 0.92; // of the input Nyquist, below the output's
    this.half = Math.ceil(halfWidth / this.cutoff); // kernel half-width, input samples
    this.buf = new Float32Array(this.half); // history, starting with zeros (left padding)
    this.len = this.half;
    this.pos = this.half; // input-time of the next output sample, relative to buf[0]
  }

  kernel(t) {
    if (t === 0) return this.cutoff;
    if (Math.abs(t) >= this.half) return 0;
    const x = Math.PI * this.cutoff * t;
    const hann = 0.5 * (1 + Math.cos((Math.PI * t) / this.half));
    return (this.cutoff * Math.sin(x)) / x * hann;
  }

  process(input) {
    if (this.len + input.length > this.buf.length) {
      const grown = new Float32Array(Math.max(2 * this.buf.length, this.len + input.length));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
    const out = [];
    while (this.pos + this.half < this.len) {
      const c = Math.floor(this.pos);
      let acc = 0;
      for (let k = c - this.half + 1; k <= c + this.half; k++) acc += this.buf[k] * this.kernel(this.pos - k);
      out.push(acc);
      this.pos += this.step;
    }
    // drop input no future output needs
    const drop = Math.max(0, Math.floor(this.pos) - this.half);
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      this.pos -= drop;
    }
    return out;
  }
}

class PcmDownsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.targetRate = o.targetRate || 16000;
    this.chunk = Math.round((this.targetRate * (o.chunkMs || 100)) / 1000);
    this.resampler = sampleRate === this.targetRate ? null : new Resampler(sampleRate, this.targetRate);
    this.pending = new Int16Array(this.chunk);
    this.fill = 0;
    this.sumSq = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data === "stop") {
        this.flush();
        this.running = false;
      }
    };
  }

  flush() {
    if (this.fill === 0) return;
    const pcm = this.pending.slice(0, this.fill);
    const rms = Math.sqrt(this.sumSq / this.fill);
    this.port.postMessage({ pcm: pcm.buffer, rms }, [pcm.buffer]);
    this.fill = 0;
    this.sumSq = 0;
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch && this.running) {
      const y = this.resampler ? this.resampler.process(ch) : ch;
      for (let i = 0; i < y.length; i++) {
        const v = Math.max(-1, Math.min(1, y[i]));
        this.sumSq += v * v;
        this.pending[this.fill++] = v < 0 ? v * 32768 : v * 32767;
        if (this.fill === this.chunk) this.flush();
      }
    }
    return this.running;
  }
}

registerProcessor("pcm-downsampler", PcmDownsampler);
