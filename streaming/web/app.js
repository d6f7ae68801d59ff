// Browser microphone -> /asr WebSocket -> live partial and final text (protocol: streaming/PROTOCOL.md).
//
// getUserMedia gives the microphone; an AudioWorklet (pcm-worklet.js) downsamples it to 16 kHz
// int16 in 100 ms chunks, which are sent as binary messages after a "start" message. "Stop"
// sends "end"; the server answers with the last final and "done".
// Every event is also kept in window.asrEvents (the end-to-end browser test reads it).

"use strict";

const TARGET_RATE = 16000;
const $ = (id) => document.getElementById(id);
window.asrEvents = [];

let ws = null;
let audio = null; // {ctx, stream, node}

function serverUrl() {
  const token = new URLSearchParams(location.search).get("token");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/asr` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

function setStatus(text, kind = "") {
  const s = $("status");
  s.textContent = text;
  s.className = kind;
}

// The start message: audio format plus the vocabulary box (PROTOCOL.md, "Runtime vocabulary").
function startMessage() {
  const msg = { type: "start", sample_rate: TARGET_RATE, format: "s16le", partials: true, words: true };
  const mode = $("vocab-mode").value;
  const lines = $("phrases").value.split("\n").map((l) => l.trim()).filter((l) => l);
  if (mode === "grammar" && lines.length) msg.grammar = lines;
  if (mode === "hotwords" && lines.length) {
    msg.hotwords = lines.map((l) => {
      const m = l.match(/^(.*):\s*([0-9.]+)$/);
      return m ? { phrase: m[1].trim(), boost: Number(m[2]) } : l;
    });
  }
  const n = Number($("nbest").value);
  if (n > 1) msg.nbest = n;
  return msg;
}

function showPartial(ev) {
  const words = ev.text.split(" ");
  const k = ev.stable || 0;
  const p = $("partial");
  p.textContent = "";
  const fixed = document.createElement("span");
  fixed.className = "stable";
  fixed.textContent = words.slice(0, k).join(" ") + (k ? " " : "");
  p.appendChild(fixed);
  p.appendChild(document.createTextNode(words.slice(k).join(" ")));
}

function showFinal(ev) {
  $("partial").textContent = "";
  if (!ev.text) return;
  const p = document.createElement("p");
  p.className = "final";
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${ev.start.toFixed(1)}–${ev.end.toFixed(1)} s`;
  p.appendChild(time);
  for (const w of ev.words || [{ word: ev.text, conf: 1 }]) {
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = w.word + " ";
    if (w.start !== undefined) span.title = `${w.start.toFixed(2)}–${w.end.toFixed(2)} s, confidence ${w.conf.toFixed(2)}`;
    span.style.opacity = (0.45 + 0.55 * w.conf).toFixed(2);
    p.appendChild(span);
  }
  if (ev.alternatives && ev.alternatives.length > 1) {
    const alts = document.createElement("span");
    alts.className = "alts";
    alts.textContent = "or: " + ev.alternatives.slice(1).map((a) => `${a.text || "(nothing)"} (${a.confidence.toFixed(2)})`).join(" · ");
    p.appendChild(alts);
  }
  $("finals").appendChild(p);
  p.scrollIntoView({ block: "nearest" });
}

function onEvent(ev) {
  window.asrEvents.push(ev);
  switch (ev.type) {
    case "ready":
      setStatus(`listening · model ${ev.model} · ${audio ? audio.ctx.sampleRate : "?"} Hz → ${ev.sample_rate} Hz · ${ev.decoder || "greedy"}`, "live");
      break;
    case "partial":
      showPartial(ev);
      break;
    case "final":
      showFinal(ev);
      break;
    case "done":
      setStatus("done", "");
      break;
    case "error":
      setStatus(`error: ${ev.code}: ${ev.message}`, "error");
      break;
  }
}

async function start() {
  $("start").disabled = true;
  try {
    setStatus("asking for the microphone…");
    // raw microphone audio: the model is trained on unprocessed speech, and browser noise
    // suppression / gain control change it in ways it never saw
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule("pcm-worklet.js");
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pcm-downsampler", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { targetRate: TARGET_RATE, chunkMs: 100 },
    });
    const mute = ctx.createGain(); // keeps the graph pulled without playing the microphone back
    mute.gain.value = 0;
    source.connect(node).connect(mute).connect(ctx.destination);
    audio = { ctx, stream, node };

    ws = new WebSocket(serverUrl());
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      ws.send(JSON.stringify(startMessage()));
      $("stop").disabled = false;
    };
    ws.onmessage = (m) => onEvent(JSON.parse(m.data));
    ws.onclose = (e) => {
      if (!["done", "error"].includes((window.asrEvents.at(-1) || {}).type)) {
        setStatus(`connection closed (${e.code}${e.reason ? ": " + e.reason : ""})`, e.code === 1000 ? "" : "error");
      }
      stopAudio();
      $("start").disabled = false;
      $("stop").disabled = true;
    };
    node.port.onmessage = (e) => {
      $("level").style.width = `${Math.min(100, Math.round(300 * e.data.rms))}%`;
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(e.data.pcm);
    };
    await ctx.resume();
  } catch (err) {
    setStatus(`cannot start: ${err.message || err}`, "error");
    stopAudio();
    $("start").disabled = false;
  }
}

function stopAudio() {
  if (!audio) return;
  audio.node.port.postMessage("stop");
  audio.stream.getTracks().forEach((t) => t.stop());
  audio.ctx.close();
  audio = null;
  $("level").style.width = "0%";
}

function stop() {
  $("stop").disabled = true;
  if (audio) audio.node.port.postMessage("stop"); // flushes the last partial chunk
  setTimeout(() => {
    stopAudio();
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "end" }));
      setStatus("finishing…");
    }
  }, 50);
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("clear").addEventListener("click", () => {
  $("finals").textContent = "";
  $("partial").textContent = "";
});
