// recog-serve's page: a writing pad (pointer events) and a recorder (Web Audio -> WAV)
// over the JSON API. No dependencies, no build step. window.recog exposes the state for
// the browser test (tests/test_serve_browser.py).
"use strict";

const recog = { strokes: [], ink: null, speech: null, final: false, requests: 0 };
window.recog = recog;
const $ = (id) => document.getElementById(id);
const PAUSE_MS = 600; // no new stroke for this long: the result is final

function colour(i) { return `hsl(${(i * 67) % 360}, 75%, 42%)`; }

function showError(message) { $("error").textContent = message || ""; }

async function post(url, body, type) {
  const response = await fetch(url, { method: "POST", body, headers: { "Content-Type": type } });
  let answer;
  try { answer = await response.json(); } catch (e) { answer = { error: response.statusText }; }
  if (!response.ok) { throw new Error(answer.error || `HTTP ${response.status}`); }
  return answer;
}

function describeModel(el, m) {
  const tokens = m.tokens.slice(1).map((t) => (t === " " ? "\u2423" : t)).join(" ");
  const fe = Object.entries(m.front_end).map(([k, v]) => `${k}=${v}`).join(", ");
  el.innerHTML = "";
  const rows = [["model", m.name], ["decoding", `${m.decode.method} (beam ${m.decode.beam})`],
                [`tokens (${m.tokens.length - 1} + blank)`, tokens], ["front end", fe]];
  for (const [k, v] of rows) {
    const line = document.createElement("div");
    const code = document.createElement("code");
    code.textContent = v;
    line.append(`${k}: `, code);
    el.append(line);
  }
}

function showTokens(el, result, characters) {
  el.innerHTML = "";
  result.times.forEach((t, i) => {
    const span = document.createElement("span");
    span.textContent = characters ? t.token : t.token + " ";
    span.style.borderBottomColor = colour(i);
    el.append(span);
  });
  if (!result.times.length) { el.textContent = result.text; }
}

// ------------------------------------------------------------------ writing pad
const pad = $("pad");
const ctx = pad.getContext("2d");
let current = null;
let t0 = null;
let pauseTimer = null;
let sent = 0;

function padPoint(e) {
  const r = pad.getBoundingClientRect();
  const now = performance.now();
  if (t0 === null) { t0 = now; }
  return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height),
          Math.round(now - t0) / 1000];
}

function drawPath(points, first, last, style, width) {
  if (last < first) { return; }
  ctx.strokeStyle = style; ctx.fillStyle = style; ctx.lineWidth = width;
  ctx.lineCap = "round"; ctx.lineJoin = "round";
  if (first === last) {
    ctx.beginPath(); ctx.arc(points[first][0], points[first][1], width / 2, 0, 2 * Math.PI);
    ctx.fill(); return;
  }
  ctx.beginPath(); ctx.moveTo(points[first][0], points[first][1]);
  for (let i = first + 1; i <= last; i++) { ctx.lineTo(points[i][0], points[i][1]); }
  ctx.stroke();
}

function redraw() {
  ctx.clearRect(0, 0, pad.width, pad.height);
  for (const s of recog.strokes) { drawPath(s, 0, s.length - 1, "#999", 3); }
  if (current) { drawPath(current, 0, current.length - 1, "#222", 3); }
  if (!recog.ink) { return; }
  recog.ink.times.forEach((t, i) => {
    for (const [k, first, last] of t.ink || []) {
      const s = recog.strokes[k];
      if (s) { drawPath(s, first, Math.min(last + 1, s.length - 1), colour(i), 4); }
    }
  });
}

async function recogniseInk() {
  const mine = ++sent;
  if (!recog.strokes.length) {
    recog.ink = null; $("ink-text").textContent = ""; redraw(); return;
  }
  $("ink-state").textContent = "recognising\u2026";
  try {
    const result = await post("/api/recognize/ink", JSON.stringify({ strokes: recog.strokes }),
                              "application/json");
    recog.requests++;
    if (mine !== sent) { return; } // a newer request is on its way
    recog.ink = result;
    showTokens($("ink-text"), result, true);
    showError("");
    redraw();
    $("ink-state").textContent = recog.final ? "final" : "live";
  } catch (e) {
    if (mine === sent) { showError(e.message); $("ink-state").textContent = ""; }
  }
}

function strokesChanged() {
  recog.final = false;
  clearTimeout(pauseTimer);
  recogniseInk();
  pauseTimer = setTimeout(() => { recog.final = true; recogniseInk(); }, PAUSE_MS);
}

pad.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) { return; }
  pad.setPointerCapture(e.pointerId);
  current = [padPoint(e)];
  clearTimeout(pauseTimer);
  recog.final = false;
  e.preventDefault();
});
pad.addEventListener("pointermove", (e) => {
  if (!current) { return; }
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const c of (events.length ? events : [e])) { current.push(padPoint(c)); }
  redraw();
});
function endStroke(e) {
  if (!current) { return; }
  if (e.type === "pointerup") { current.push(padPoint(e)); }
  recog.strokes.push(current);
  current = null;
  redraw();
  strokesChanged();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
$("undo").addEventListener("click", () => { recog.strokes.pop(); strokesChanged(); });
$("clear").addEventListener("click", () => {
  recog.strokes = []; t0 = null; strokesChanged();
});

// ------------------------------------------------------------------ audio
function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buffer);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) { v.setUint8(o + i, s.charCodeAt(i)); } };
  text(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true);
  v.setUint16(34, 16, true); text(36, "data"); v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const x = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + 2 * i, x < 0 ? x * 32768 : x * 32767, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

function drawPosteriorgram(result, tokens) {
  const canvas = $("posteriorgram");
  const g = canvas.getContext("2d");
  const post = result.posteriors || [];
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!post.length) { return; }
  const left = 50;
  const rowH = canvas.height / tokens.length;
  const colW = (canvas.width - left) / post.length;
  g.font = `${Math.min(12, rowH)}px monospace`;
  g.textBaseline = "middle";
  tokens.forEach((t, j) => {
    g.fillStyle = "#333";
    g.fillText(j === 0 ? "blank" : t, 2, (j + 0.5) * rowH);
  });
  post.forEach((frame, f) => {
    frame.forEach((p, j) => {
      g.fillStyle = `rgba(20, 60, 160, ${p.toFixed(3)})`;
      g.fillRect(left + f * colW, j * rowH, Math.ceil(colW), Math.ceil(rowH));
    });
  });
}

let speechTokens = [];
let speechCharacters = false;

async function recogniseAudio(blob) {
  $("speech-state").textContent = "recognising\u2026";
  try {
    const result = await post("/api/recognize/audio?posteriors=1", blob, "audio/wav");
    recog.speech = result;
    showTokens($("speech-text"), result, speechCharacters);
    drawPosteriorgram(result, speechTokens);
    showError("");
    $("speech-state").textContent = `${result.tokens.length} tokens`;
  } catch (e) {
    showError(e.message); $("speech-state").textContent = "";
  }
}

async function toWav(file) {
  if (/\.wav$/i.test(file.name) || /wav/.test(file.type)) { return file; }
  const actx = new AudioContext();
  try {
    const audio = await actx.decodeAudioData(await file.arrayBuffer());
    const mono = new Float32Array(audio.length);
    for (let c = 0; c < audio.numberOfChannels; c++) {
      const ch = audio.getChannelData(c);
      for (let i = 0; i < ch.length; i++) { mono[i] += ch[i] / audio.numberOfChannels; }
    }
    return encodeWav(mono, audio.sampleRate);
  } finally { actx.close(); }
}

async function recogniseFile(file) {
  try { await recogniseAudio(await toWav(file)); } catch (e) { showError(`${file.name}: ${e.message}`); }
}

let recorder = null;
$("record").addEventListener("click", async () => {
  if (recorder) { // stop
    const { actx, node, stream, chunks } = recorder;
    recorder = null;
    node.disconnect(); stream.getTracks().forEach((t) => t.stop());
    const n = chunks.reduce((a, c) => a + c.length, 0);
    const all = new Float32Array(n);
    let o = 0;
    for (const c of chunks) { all.set(c, o); o += c.length; }
    const rate = actx.sampleRate;
    actx.close();
    $("record").textContent = "Record"; $("record").classList.remove("on");
    recogniseAudio(encodeWav(all, rate));
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const actx = new AudioContext();
    const source = actx.createMediaStreamSource(stream);
    const node = actx.createScriptProcessor(4096, 1, 1);
    const chunks = [];
    node.onaudioprocess = (e) => { chunks.push(new Float32Array(e.inputBuffer.getChannelData(0))); };
    source.connect(node); node.connect(actx.destination);
    recorder = { actx, node, stream, chunks };
    $("record").textContent = "Stop"; $("record").classList.add("on");
    $("speech-state").textContent = "recording\u2026";
  } catch (e) {
    showError(`microphone: ${e.message}`);
  }
});
$("file").addEventListener("change", (e) => { if (e.target.files[0]) { recogniseFile(e.target.files[0]); } });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) { recogniseFile(e.dataTransfer.files[0]); }
});

// ------------------------------------------------------------------ start
fetch("/api/models").then((r) => r.json()).then(({ models }) => {
  for (const m of models) {
    if (m.modality === "ink") {
      $("ink").hidden = false; describeModel($("ink-model"), m);
    } else {
      $("speech").hidden = false; describeModel($("speech-model"), m);
      speechTokens = m.tokens;
      speechCharacters = m.characters;
    }
  }
  $("none").hidden = models.length > 0;
  recog.ready = true;
}).catch((e) => showError(`models: ${e.message}`));
