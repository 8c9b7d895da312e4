// opengenie play: keys -> latent actions over a websocket; frames back as raw RGB.
// Protocol: see src/opengenie/play/server.py. One step is in flight at a time, so a slow
// model never builds up a queue of stale key presses.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("screen");
const ctx = canvas.getContext("2d");

// Exposed for the browser test and for curious people in the console.
const state = (window.opengenie = {
  info: null,
  settings: null, // this tab's sampling settings, as the server last confirmed them
  frames: 0, // frames received since the page loaded
  meta: null, // metadata of the last frame
  connected: false,
  inflight: false,
  held: new Map(), // KeyboardEvent.code -> press order, for keys that step
  taps: [], // actions of presses not yet sent (a quick tap still steps once)
  lastAction: null,
  arrivals: [], // frame arrival times for the frame-rate display
  pressCount: 0,
  tapTimes: [], // event.timeStamp of each tap in `taps`
  pressInflight: null, // the press time of the step in flight, when a press sent it
  latencies: [], // ms from a key press to the canvas showing its frame (browser test)
});

const DIGITS = ["Digit1", "Digit2", "Digit3", "Digit4", "Digit5", "Digit6", "Digit7",
  "Digit8", "Digit9", "Digit0"];
const NUMPAD = ["Numpad1", "Numpad2", "Numpad3", "Numpad4", "Numpad5", "Numpad6", "Numpad7",
  "Numpad8", "Numpad9", "Numpad0"];
const ARROWS = ["ArrowLeft", "ArrowRight", "ArrowUp", "Space"];
let ws = null;
let fatal = false;

function message(text, isError = false) {
  const el = $("message");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function actionLabel(id) {
  if (id === null || id === undefined) return "–";
  const name = state.info && state.info.actions.names[id];
  return name ? `${id} (${name})` : String(id);
}

// -- keys -> actions ----------------------------------------------------------------------
function digitAction(code) {
  let i = DIGITS.indexOf(code);
  if (i < 0) i = NUMPAD.indexOf(code);
  if (i < 0 || !state.info || i >= state.info.num_actions) return null;
  return i; // key 1 -> action id 0
}

function keyId(name) {
  const keys = state.info ? state.info.actions.keys : {};
  return Object.prototype.hasOwnProperty.call(keys, name) ? keys[name] : null;
}

// Arrows/space -> a movement name from action_map.json -> its id; a missing combo falls back
// to its parts ("left+jump" -> "left", then "jump").
function arrowAction() {
  const order = (code) => state.held.get(code) ?? -1;
  const left = order("ArrowLeft"), right = order("ArrowRight");
  const jump = state.held.has("ArrowUp") || state.held.has("Space");
  let horizontal = null;
  if (left >= 0 || right >= 0) horizontal = left > right ? "left" : "right";
  const names = [];
  if (horizontal && jump) names.push(`${horizontal}+jump`);
  if (horizontal) names.push(horizontal);
  if (jump) names.push("jump");
  for (const name of names) {
    const id = keyId(name);
    if (id !== null) return id;
  }
  return null;
}

function heldAction() {
  // The most recently pressed digit wins; otherwise the arrows.
  let best = null, bestOrder = -1;
  for (const [code, order] of state.held) {
    const id = digitAction(code);
    if (id !== null && order > bestOrder) { best = id; bestOrder = order; }
  }
  if (best !== null) return best;
  const arrow = arrowAction();
  if (arrow !== null) return arrow;
  if ($("auto").checked) {
    const none = keyId("none");
    return none !== null ? none : state.lastAction;
  }
  return null;
}

function pump() {
  if (state.inflight || !ws || ws.readyState !== WebSocket.OPEN) return;
  const tapped = state.taps.length > 0;
  const action = tapped ? state.taps.shift() : heldAction();
  const pressed = tapped ? state.tapTimes.shift() : null;
  if (action === null || action === undefined) return;
  state.inflight = true;
  state.pressInflight = pressed;
  ws.send(JSON.stringify({ type: "step", action }));
}

function isTyping(event) {
  const tag = event.target && event.target.tagName;
  return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA";
}

window.addEventListener("keydown", (event) => {
  if (isTyping(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  const code = event.code;
  if (code === "KeyR" && !event.repeat) { reset(); event.preventDefault(); return; }
  const digit = digitAction(code);
  const arrow = ARROWS.includes(code) && state.info && Object.keys(state.info.actions.keys).length;
  if (digit === null && !arrow) return;
  event.preventDefault(); // no page scrolling on arrows/space
  if (event.repeat) return; // holding is tracked by keydown/keyup, not by auto-repeat
  state.held.set(code, ++state.pressCount);
  const action = digit !== null ? digit : arrowAction();
  if (action !== null) {
    state.taps.push(action);
    state.tapTimes.push(event.timeStamp); // same clock as performance.now()
  }
  pump();
});

window.addEventListener("keyup", (event) => { state.held.delete(event.code); });
window.addEventListener("blur", () => state.held.clear()); // no stuck keys after alt-tab

// -- frames -------------------------------------------------------------------------------
function drawFrame(buffer) {
  const view = new DataView(buffer);
  const n = view.getUint32(0, true);
  const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const rgb = new Uint8Array(buffer, 4 + n);
  const { width, height } = meta;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const image = ctx.createImageData(width, height);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    image.data[j] = rgb[i];
    image.data[j + 1] = rgb[i + 1];
    image.data[j + 2] = rgb[i + 2];
    image.data[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return meta;
}

function onFrame(buffer) {
  const meta = drawFrame(buffer);
  const pressed = state.pressInflight;
  state.pressInflight = null;
  if (pressed !== null) {
    // The frame is on screen at the next paint after drawing it.
    requestAnimationFrame(() => {
      state.latencies.push(performance.now() - pressed);
      if (state.latencies.length > 1000) state.latencies.shift();
    });
  }
  state.meta = meta;
  state.frames += 1;
  state.inflight = false;
  const now = performance.now();
  state.arrivals.push(now);
  while (state.arrivals.length && now - state.arrivals[0] > 2000) state.arrivals.shift();
  if (meta.action !== null) state.lastAction = meta.action;
  $("frame").textContent = meta.frame;
  $("ms").textContent = meta.ms.toFixed(0);
  $("action").textContent = meta.action === null ? "reset" : actionLabel(meta.action);
  document.querySelectorAll("#legend tr").forEach((row) => {
    row.classList.toggle("active", Number(row.dataset.action) === meta.action);
  });
  pump();
}

// Frames per second over the last second of arrivals (0 while no key is held).
function updateFps() {
  const now = performance.now();
  const recent = state.arrivals.filter((t) => now - t <= 1000);
  let fps = 0;
  if (recent.length >= 2) {
    const span = Math.max(recent[recent.length - 1] - recent[0], now - recent[recent.length - 1]);
    fps = ((recent.length - 1) * 1000) / Math.max(span, 1);
  }
  state.fps = fps;
  $("fps").textContent = state.frames ? fps.toFixed(fps < 10 ? 1 : 0) : "–";
}
setInterval(updateFps, 250);

// -- the page from the world's info ------------------------------------------------------
function buildLegend(info) {
  const body = $("legend").querySelector("tbody");
  body.textContent = "";
  const row = (keys, text, action) => {
    const tr = document.createElement("tr");
    if (action !== undefined) tr.dataset.action = action;
    const k = document.createElement("td");
    keys.forEach((key, i) => {
      if (i) k.append(" ");
      if (key === "+" || key === "/") { k.append(key); return; } // joiners, not keys
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      k.append(kbd);
    });
    const t = document.createElement("td");
    t.textContent = text;
    tr.append(k, t);
    body.append(tr);
  };
  for (let id = 0; id < info.num_actions && id < 10; id++) {
    const name = info.actions.names[id];
    row([String((id + 1) % 10)], `latent action ${id}${name ? ` (${name})` : ""}`, id);
  }
  const keys = info.actions.keys;
  const arrows = [["←", "left"], ["→", "right"], ["↑ / Space", "jump"],
    ["← + ↑", "left+jump"], ["→ + ↑", "right+jump"]];
  for (const [label, name] of arrows) {
    if (name in keys) row(label.split(" "), `${name} → action ${keys[name]}`);
  }
  row(["R"], "reset to the prompt");
  const none = keys.none;
  $("auto-hint").textContent = none !== undefined
    ? `(repeats "none", action ${none}, when no key is held)`
    : "(repeats the last action when no key is held)";
}

function applyInfo(info) {
  state.info = info;
  $("world").textContent = `${info.world} · ${info.num_actions} latent actions · ` +
    `${info.image_size}×${info.image_size} · dynamics ${info.dynamics_dtype}`;
  $("steps").max = info.max_steps;
  showSettings(info.settings);
  buildLegend(info);
  $("window-note").textContent = `The model saw ${info.window}-frame clips in training; ` +
    `past that each frame attends to the latest ${info.window - 1} frames (see docs/PLAY.md).`;
}

function showSettings(s) {
  state.settings = { steps: s.steps, temperature: s.temperature, mode: s.mode, guidance: s.guidance };
  $("steps").value = s.steps;
  $("temperature").value = s.temperature;
  $("guidance").value = s.guidance;
  $("mode").value = s.mode;
}

// -- controls -----------------------------------------------------------------------------
function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function reset() {
  const seed = $("seed").value.trim();
  const msg = { type: "reset" };
  if (seed !== "") msg.seed = Number(seed);
  state.taps = [];
  state.tapTimes = [];
  send(msg);
}

function sendSettings() {
  send({
    type: "settings",
    steps: Number($("steps").value),
    temperature: Number($("temperature").value),
    guidance: Number($("guidance").value),
    mode: $("mode").value,
  });
}

["steps", "temperature", "guidance", "mode"].forEach((id) => $(id).addEventListener("change", sendSettings));
$("auto").addEventListener("change", () => { canvas.focus({ preventScroll: true }); pump(); });
$("reset").addEventListener("click", () => { reset(); canvas.focus({ preventScroll: true }); });

async function upload(file) {
  if (!file || !state.info) return;
  const limit = state.info.max_upload_bytes;
  if (file.size > limit) {
    message(`upload refused: ${file.name} is ${(file.size / 1e6).toFixed(1)} MB; ` +
      `the limit is ${(limit / 1e6).toFixed(1)} MB`, true);
    return;
  }
  message(`uploading ${file.name}…`);
  sendBinary(await file.arrayBuffer());
}

function sendBinary(buffer) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(buffer);
}

$("upload").addEventListener("change", (event) => {
  upload(event.target.files[0]);
  event.target.value = ""; // choosing the same file again uploads it again
  canvas.focus({ preventScroll: true });
});
canvas.addEventListener("dragover", (event) => event.preventDefault());
canvas.addEventListener("drop", (event) => {
  event.preventDefault();
  upload(event.dataTransfer.files[0]);
});

// -- connection ---------------------------------------------------------------------------
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { state.connected = true; state.inflight = false; };
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") {
      const wasUpload = $("message").textContent.startsWith("uploading");
      onFrame(event.data);
      if (wasUpload) message("new prompt loaded");
      return;
    }
    const msg = JSON.parse(event.data);
    if (msg.type === "info") {
      applyInfo(msg);
      message("");
    } else if (msg.type === "settings") {
      showSettings(msg);
      message(`settings: ${msg.steps} steps, temperature ${msg.temperature}, ` +
        `guidance ${msg.guidance}, ${msg.mode}`);
    } else if (msg.type === "error") {
      state.inflight = false;
      state.pressInflight = null; // no frame answers that press
      if (msg.fatal) fatal = true;
      if (state.settings) showSettings(state.settings); // undo a refused change
      message(msg.message, true);
      pump();
    }
  };
  ws.onclose = (event) => {
    state.connected = false;
    state.inflight = false;
    if (fatal) return;
    const why = event.code === 1009 ? "upload too large for the server; " : "";
    message(`${why}disconnected: reconnecting…`, true);
    setTimeout(connect, 1000);
  };
}

connect();
canvas.focus({ preventScroll: true });
