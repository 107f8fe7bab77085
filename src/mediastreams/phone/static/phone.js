// The page is the caller: microphone to the local process, what Twilio plays to the speaker,
// the buttons and the keypad, the timeline and the event list, and the report at the end.
//
// Query options, for tests and measurements: ?tap=1 keeps a copy of what the speaker played
// (window.phone.tapPcm()), ?probe=1 notes when clicks enter the microphone and leave the
// speaker (window.phone.probes()).

import { Timeline, ms } from "./timeline.js";

const CHUNK_MS = 10; // microphone chunks sent to the local process
const PREFILL_MS = 40; // the speaker's jitter buffer: starts once this much is in
// ... and drops its oldest audio past this: a burst after a stall (a busy machine) is kept
// whole, and the delay it adds is trimmed at the next quiet moment.
const MAX_BUFFER_MS = 600;
// The timeline is redrawn at most this often, and only when it changed: drawing takes the
// CPU the audio needs on a busy machine, and 20 frames a second follow a call well enough.
const DRAW_EVERY_MS = 50;
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

const options = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const ui = {
  call: $("call"),
  hangup: $("hangup"),
  mute: $("mute"),
  aec: $("aec"),
  keypad: $("keypad"),
  status: $("status"),
  error: $("error"),
  target: $("target"),
  events: $("events"),
  report: $("report"),
  reportText: $("report-text"),
  downloads: $("downloads"),
};
const timeline = new Timeline($("timeline"));

let audio = null; // {context, capture, playback}
let state = "offline"; // offline, idle, calling, connected, ended
let callStartedAt = null;
const clock = { offsetMs: Infinity }; // epoch ms minus audio-context ms, at best
const probes = { capture: [], playback: [] };
const tap = { chunks: [], rate: null };
const speaker = { bufferedMs: 0, underruns: 0, droppedMs: 0 };

// --- the local process ------------------------------------------------------------------

// The WebSocket lives in a worker, with the audio: the main thread only draws.
const link = new Worker("static/link-worker.js");

function connect() {
  link.onmessage = (message) => {
    const data = message.data;
    if (data.text !== undefined) receive(JSON.parse(data.text));
    if (data.closed) {
      setState("offline");
      status("The local server is gone: is mediastreams phone still running?");
    }
  };
  link.postMessage({ connect: `ws://${location.host}/ws` });
}

function send(command) {
  link.postMessage({ text: JSON.stringify(command) });
}

function receive(event) {
  switch (event.type) {
    case "ready":
      ui.target.textContent = event.target;
      setState("idle");
      break;
    case "state":
      setState(event.state);
      break;
    case "error":
      showError(event.message);
      if (state === "calling") setState("idle");
      break;
    case "muted":
      ui.mute.setAttribute("aria-pressed", String(event.muted));
      break;
    case "report":
      showReport(event);
      break;
    default:
      timeline.add(event);
      logEvent(event);
  }
}

// --- audio ------------------------------------------------------------------------------

async function startAudio() {
  const echoCancellation = ui.aec.checked;
  if (audio && audio.echoCancellation === echoCancellation) return audio;
  if (audio) {
    // Echo cancellation changed: the microphone is opened again with the new setting.
    for (const track of audio.microphone.getTracks()) track.stop();
    audio.source.disconnect();
  } else {
    audio = await openAudio();
  }
  // No noise suppression or gain control: the app gets the voice as the microphone took
  // it; echo cancellation (on by default) so that the app does not hear itself.
  const microphone = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  });
  const source = audio.context.createMediaStreamSource(microphone);
  source.connect(audio.capture);
  Object.assign(audio, { microphone, source, echoCancellation });
  return audio;
}

async function openAudio() {
  const context = new AudioContext({ latencyHint: "interactive" });
  await context.audioWorklet.addModule("static/audio-worklets.js");
  const rate = context.sampleRate;
  const capture = new AudioWorkletNode(context, "capture", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { chunkSamples: Math.round((rate * CHUNK_MS) / 1000), probe: options.has("probe") },
  });
  const playback = new AudioWorkletNode(context, "playback", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: {
      prefillSamples: Math.round((rate * PREFILL_MS) / 1000),
      maxSamples: Math.round((rate * MAX_BUFFER_MS) / 1000),
      tap: options.has("tap"),
      probe: options.has("probe"),
    },
  });
  // Audio goes between the worklets and the link worker directly, not through this thread.
  const toCapture = new MessageChannel();
  const toPlayback = new MessageChannel();
  capture.port.postMessage({ link: toCapture.port1 }, [toCapture.port1]);
  playback.port.postMessage({ link: toPlayback.port1 }, [toPlayback.port1]);
  link.postMessage({ capture: toCapture.port2, playback: toPlayback.port2 }, [toCapture.port2, toPlayback.port2]);
  // The capture node makes no sound; connected to the output through a silent gain, so the
  // browser keeps running it.
  const silent = context.createGain();
  silent.gain.value = 0;
  capture.connect(silent).connect(context.destination);
  playback.connect(context.destination);
  capture.port.onmessage = (message) => {
    const data = message.data;
    noteClock(data.time);
    if (data.onset !== undefined) probes.capture.push(data.onset);
  };
  playback.port.onmessage = (message) => {
    const data = message.data;
    if (data.tap) tap.chunks.push(new Float32Array(data.tap));
    if (data.onset !== undefined) probes.playback.push(data.onset);
    if (data.bufferedMs !== undefined) Object.assign(speaker, data);
    noteClock(data.time);
  };
  await context.resume();
  tap.rate = rate;
  return { context, capture, playback };
}

// Audio time to wall-clock time: the smallest gap seen between a worklet's time and the
// moment its message arrived is the closest to the real one.
function noteClock(audioTimeS) {
  if (audioTimeS === undefined) return;
  const gap = performance.timeOrigin + performance.now() - audioTimeS * 1000;
  clock.offsetMs = Math.min(clock.offsetMs, gap);
}

// --- controls ---------------------------------------------------------------------------

async function call() {
  ui.error.hidden = true;
  ui.call.disabled = true;
  try {
    const { context, playback } = await startAudio();
    playback.port.postMessage({ reset: true });
    send({ type: "hello", sample_rate: context.sampleRate });
  } catch (error) {
    showError(`No microphone: ${error.message}. Allow the page to use it, then call again.`);
    ui.call.disabled = false;
    return;
  }
  timeline.reset();
  window.phone.report = null;
  ui.events.replaceChildren();
  ui.report.hidden = true;
  send({ type: "call", muted: ui.mute.getAttribute("aria-pressed") === "true" });
}

function setState(next) {
  state = next;
  const inCall = next === "calling" || next === "connected";
  link.postMessage({ sending: inCall });
  ui.aec.disabled = inCall;
  ui.call.disabled = inCall || next === "offline";
  ui.hangup.disabled = !inCall;
  ui.mute.disabled = next === "offline"; // muting before calling is muting from the start
  for (const key of ui.keypad.children) key.disabled = next !== "connected";
  if (next === "calling") {
    status("Calling…");
  } else if (next === "connected") {
    callStartedAt = performance.now();
    status("In call");
  } else if (next === "ended") {
    if (!window.phone.report || window.phone.report.placed) status("Call ended");
  } else if (next === "idle") {
    status("Ready: press Call");
  }
}

function status(text) {
  ui.status.textContent = text;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

function buildKeypad() {
  for (const key of KEYS) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = key;
    button.disabled = true;
    button.addEventListener("click", () => send({ type: "dtmf", digit: key }));
    ui.keypad.append(button);
  }
}

document.addEventListener("keydown", (event) => {
  if (state === "connected" && KEYS.includes(event.key) && !event.repeat && event.target === document.body) {
    send({ type: "dtmf", digit: event.key });
  }
});

// --- the event list and the report ------------------------------------------------------

function describe(event) {
  switch (event.type) {
    case "start":
      return [event.t, `stream started (${event.stream_sid})`];
    case "stop":
      return [event.t, "the caller hung up: stop"];
    case "dtmf":
      return [event.t, `key ${event.digit} (dtmf)`];
    case "clear": {
      const marks = event.marks_echoed ? `; ${event.marks_echoed} pending mark(s) echoed` : "";
      return [event.t, `clear: ${ms(event.discarded_ms)} of queued audio discarded, ${ms(event.heard_ms)} of the reply heard${marks}`];
    }
    case "speech":
      return [event.onset_ms, `the caller spoke until ${(event.end_ms / 1000).toFixed(2)} s`];
    case "turn":
      return [event.first_reply_ms, `the app answered ${ms(event.latency_ms)} after the caller stopped`];
    case "barge-in":
      return event.clear_ms === null
        ? [event.onset_ms, `barge-in: the caller talks over the app (${ms(event.heard_before_ms)} of the reply heard)`]
        : [event.onset_ms, `barge-in cleared after ${ms(event.clear_reaction_ms)}: ${ms(event.heard_ms)} heard, ${ms(event.discarded_ms)} discarded`];
    case "violation":
      return [event.t, `${event.code} ${event.kind} (${event.sender}): ${event.message}`, event.hint];
    default:
      return null;
  }
}

function logEvent(event) {
  const line = describe(event);
  if (line === null) return;
  const [t, text, hint] = line;
  const item = document.createElement("li");
  item.dataset.type = event.type;
  const time = document.createElement("time");
  time.textContent = `${(t / 1000).toFixed(2)} s`;
  item.append(time, text);
  if (hint) {
    const span = document.createElement("span");
    span.className = "hint";
    span.textContent = hint;
    item.append(span);
  }
  item.dataset.t = t;
  const atEnd = ui.events.scrollTop + ui.events.clientHeight >= ui.events.scrollHeight - 4;
  // In order of time: an utterance is known only once it is over.
  const before = [...ui.events.children].reverse().find((other) => Number(other.dataset.t) <= t);
  if (before) before.after(item);
  else ui.events.prepend(item);
  if (atEnd) ui.events.scrollTop = ui.events.scrollHeight;
}

function showReport(event) {
  timeline.finish(event.report);
  ui.reportText.textContent = event.text;
  ui.downloads.replaceChildren(
    ...event.files.map((file) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = file.url;
      link.download = `call-${event.call}-${file.name}`;
      link.textContent = file.name;
      item.append(link, ` ${file.label}`);
      return item;
    }),
  );
  ui.report.hidden = false;
  window.phone.report = event.report;
  if (!event.report.placed) status("The call could not be placed: the report says why");
}

// --- drawing, and what tests read -------------------------------------------------------

let drawnAt = -Infinity;

function frame(now) {
  if (timeline.dirty && now - drawnAt >= DRAW_EVERY_MS) {
    timeline.draw();
    drawnAt = now;
  }
  if (state === "connected" && callStartedAt !== null) {
    const seconds = Math.floor((performance.now() - callStartedAt) / 1000);
    status(`In call ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`);
  }
  requestAnimationFrame(frame);
}

window.phone = {
  timeline,
  report: null,
  state: () => state,
  speaker,
  // The microphone's settings as the browser applied them (echoCancellation...).
  microphone: () => (audio && audio.microphone ? audio.microphone.getAudioTracks()[0].getSettings() : null),
  // What the speaker played since the page opened, as base64 16-bit PCM at tapRate().
  tapRate: () => tap.rate,
  tapPcm: () => {
    const total = tap.chunks.reduce((n, c) => n + c.length, 0);
    const pcm = new Int16Array(total);
    let at = 0;
    for (const chunk of tap.chunks) {
      for (let i = 0; i < chunk.length; i++) pcm[at++] = Math.max(-32768, Math.min(32767, Math.round(chunk[i] * 32768)));
    }
    let text = "";
    const bytes = new Uint8Array(pcm.buffer);
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  },
  // Onsets of clicks as wall-clock times (ms since the epoch), and the output's latency.
  probes: () => ({
    capture: probes.capture.map((s) => s * 1000 + clock.offsetMs),
    playback: probes.playback.map((s) => s * 1000 + clock.offsetMs),
    outputLatencyMs: audio ? 1000 * ((audio.context.outputLatency || 0) + (audio.context.baseLatency || 0)) : null,
  }),
};

buildKeypad();
ui.call.addEventListener("click", call);
ui.hangup.addEventListener("click", () => send({ type: "hangup" }));
ui.mute.addEventListener("click", () => {
  const muted = ui.mute.getAttribute("aria-pressed") !== "true";
  ui.mute.setAttribute("aria-pressed", String(muted));
  if (state === "calling" || state === "connected") send({ type: "mute", muted });
});
window.addEventListener("resize", () => {
  timeline.dirty = true;
});
connect();
requestAnimationFrame(frame);
