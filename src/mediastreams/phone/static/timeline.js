// The call's timeline on a canvas: both directions on one time axis, and what happened.
//
// Times are milliseconds since the call's first `start`, as in the report. While the call
// runs, the view follows its last WINDOW_MS; once it has ended, it shows the whole call.

const WINDOW_MS = 20000;
const GUTTER = 118; // left margin for the lane labels, in CSS pixels
const COLORS = {
  caller: "#2563eb",
  heard: "#059669",
  speech: "#dbeafe",
  mark: "#6b7280",
  echo: "#0d9488",
  clear: "#dc2626",
  barge: "#ea580c",
  dtmf: "#7c3aed",
  violation: "#b91c1c",
  axis: "#9ca3af",
  grid: "#f3f4f6",
  ink: "#111827",
};
const ROWS = {
  axis: 16,
  violations: 30,
  callerTop: 44,
  callerBottom: 132,
  middle: 152,
  heardTop: 172,
  heardBottom: 260,
  marks: 276,
  clears: 300,
};

export class Timeline {
  constructor(canvas) {
    this.canvas = canvas;
    this.reset();
  }

  reset() {
    this.ticks = []; // [t, caller peaks..., heard peaks...]
    this.speech = [];
    this.speaking = null; // onset of the utterance under way
    this.turns = [];
    this.marks = []; // {t, name, echoT}
    this.clears = [];
    this.dtmf = [];
    this.bargeIns = [];
    this.violations = [];
    this.nowMs = 0;
    this.ended = false;
    this.dirty = true; // something to draw
  }

  add(event) {
    this.dirty = true;
    switch (event.type) {
      case "tick":
        this.ticks.push([event.t, event.caller, event.heard]);
        this.nowMs = Math.max(this.nowMs, event.t + 20);
        break;
      case "speech-start":
        this.speaking = event.t;
        break;
      case "speech":
        this.speech.push(event);
        this.speaking = null;
        break;
      case "turn":
        this.turns.push(event);
        break;
      case "mark":
        if (event.echo) {
          const sent = this.marks.find((m) => m.name === event.name && m.echoT === null);
          if (sent) sent.echoT = event.t;
        } else {
          this.marks.push({ t: event.t, name: event.name, echoT: null });
        }
        break;
      case "clear":
        this.clears.push(event);
        break;
      case "dtmf":
        this.dtmf.push(event);
        break;
      case "barge-in": {
        const known = this.bargeIns.findIndex((b) => b.onset_ms === event.onset_ms);
        if (known >= 0) this.bargeIns[known] = event;
        else this.bargeIns.push(event);
        break;
      }
      case "violation":
        this.violations.push(event);
        break;
      default:
        break;
    }
  }

  // After the hang-up: the report's figures are the reference.
  finish(report) {
    this.dirty = true;
    this.ended = true;
    this.nowMs = Math.max(this.nowMs, report.duration_ms || 0);
    this.speaking = null;
    this.bargeIns = report.barge_ins.map((b) => ({ ...b, type: "barge-in" }));
    this.speech = report.utterances.slice();
    this.turns = report.turns.filter((t) => t.latency_ms !== null);
  }

  view() {
    if (this.ended) return [0, Math.max(this.nowMs, 1000)];
    const end = Math.max(this.nowMs, WINDOW_MS);
    return [end - WINDOW_MS, end];
  }

  draw() {
    this.dirty = false;
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const [from, to] = this.view();
    const x = (t) => GUTTER + ((t - from) / (to - from)) * (width - GUTTER - 8);
    const visible = (t) => t >= from && t <= to;
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "middle";
    this.drawAxis(g, x, from, to, height);
    this.drawLabels(g);
    this.drawSpeech(g, x, to);
    this.drawWaves(g, x, from, to);
    this.drawMarks(g, x, visible);
    this.drawClears(g, x, visible);
    this.drawTurns(g, x, visible);
    this.drawBargeIns(g, x, visible);
    this.drawKeys(g, x, visible);
    this.drawViolations(g, x, visible);
  }

  drawAxis(g, x, from, to, height) {
    const span = to - from;
    const step = [500, 1000, 2000, 5000, 10000, 30000, 60000].find((s) => span / s <= 12) || 120000;
    g.fillStyle = COLORS.axis;
    g.textAlign = "center";
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      g.fillStyle = COLORS.grid;
      g.fillRect(x(t), ROWS.violations - 8, 1, height - ROWS.violations);
      g.fillStyle = COLORS.axis;
      g.fillText(`${(t / 1000).toFixed(step < 1000 ? 1 : 0)} s`, x(t), ROWS.axis);
    }
  }

  drawLabels(g) {
    g.textAlign = "left";
    g.fillStyle = COLORS.caller;
    g.fillText("caller → app", 4, (ROWS.callerTop + ROWS.callerBottom) / 2);
    g.fillStyle = COLORS.heard;
    g.fillText("app → caller", 4, (ROWS.heardTop + ROWS.heardBottom) / 2 - 7);
    g.fillStyle = COLORS.axis;
    g.fillText("(as played)", 4, (ROWS.heardTop + ROWS.heardBottom) / 2 + 7);
    g.fillText("turns, barge-ins", 4, ROWS.middle);
    g.fillText("marks", 4, ROWS.marks);
    g.fillText("clears", 4, ROWS.clears);
  }

  drawSpeech(g, x, to) {
    g.fillStyle = COLORS.speech;
    const spans = this.speech.map((s) => [s.onset_ms, s.end_ms]);
    if (this.speaking !== null) spans.push([this.speaking, Math.min(to, this.nowMs)]); // so far
    for (const [onset, end] of spans) {
      g.fillRect(x(onset), ROWS.callerTop, Math.max(1, x(end) - x(onset)), ROWS.callerBottom - ROWS.callerTop);
    }
  }

  // Each lane's peaks, one column per pixel: as cheap for a ten-minute call as for a short one.
  drawWaves(g, x, from, to) {
    const columns = Math.max(1, Math.ceil(x(to) - GUTTER));
    const lanes = [
      [1, ROWS.callerTop, ROWS.callerBottom, COLORS.caller],
      [2, ROWS.heardTop, ROWS.heardBottom, COLORS.heard],
    ];
    const first = firstAtOrAfter(this.ticks, from - 20);
    for (const [index, top, bottom, color] of lanes) {
      const middle = (top + bottom) / 2;
      const half = (bottom - top) / 2 - 2;
      const peaks = new Float32Array(columns + 1);
      for (let n = first; n < this.ticks.length && this.ticks[n][0] <= to; n++) {
        const [t] = this.ticks[n];
        const points = this.ticks[n][index];
        const step = 20 / points.length;
        for (let i = 0; i < points.length; i++) {
          const a = Math.max(0, Math.floor(x(t + i * step) - GUTTER));
          const b = Math.min(columns, Math.max(a, Math.ceil(x(t + (i + 1) * step) - GUTTER) - 1));
          for (let c = a; c <= b; c++) peaks[c] = Math.max(peaks[c], points[i]);
        }
      }
      g.fillStyle = color;
      g.fillRect(GUTTER, middle, columns, 0.5);
      for (let c = 0; c <= columns; c++) {
        if (peaks[c] === 0) continue;
        const h = Math.max(0.5, peaks[c] * half);
        g.fillRect(GUTTER + c, middle - h, 1, 2 * h);
      }
    }
  }

  drawMarks(g, x, visible) {
    for (const mark of this.marks) {
      if (!visible(mark.t) && (mark.echoT === null || !visible(mark.echoT))) continue;
      g.fillStyle = COLORS.mark;
      triangle(g, x(mark.t), ROWS.marks - 4, 4, 1);
      if (mark.echoT !== null) {
        g.strokeStyle = COLORS.echo;
        g.beginPath();
        g.moveTo(x(mark.t), ROWS.marks);
        g.lineTo(x(mark.echoT), ROWS.marks + 5);
        g.stroke();
        g.fillStyle = COLORS.echo;
        triangle(g, x(mark.echoT), ROWS.marks + 8, 4, -1);
      }
    }
  }

  drawClears(g, x, visible) {
    for (const clear of this.clears) {
      if (!visible(clear.t) && !visible(clear.t + clear.discarded_ms)) continue;
      const at = x(clear.t);
      const until = x(clear.t + clear.discarded_ms);
      const top = ROWS.heardTop;
      const height = ROWS.heardBottom - ROWS.heardTop;
      g.fillStyle = "rgba(220, 38, 38, 0.12)";
      g.fillRect(at, top, until - at, height);
      g.save();
      g.beginPath();
      g.rect(at, top, until - at, height);
      g.clip();
      g.strokeStyle = "rgba(220, 38, 38, 0.35)";
      g.beginPath();
      for (let hx = at - height; hx < until; hx += 8) {
        g.moveTo(hx, top + height);
        g.lineTo(hx + height, top);
      }
      g.stroke();
      g.restore();
      g.fillStyle = COLORS.clear;
      g.fillRect(at - 1, ROWS.callerTop, 2, ROWS.clears - ROWS.callerTop);
      const marks = clear.marks_echoed ? `, ${clear.marks_echoed} mark(s) echoed` : "";
      label(g, `clear: ${ms(clear.discarded_ms)} discarded${marks}`, at, ROWS.clears, 4);
    }
  }

  // The turns row is shared: each turn's path and label, then each barge-in's label, take
  // their stretch of it, and a barge-in's label goes where it crosses none.
  drawTurns(g, x, visible) {
    g.textAlign = "center";
    this.taken = [];
    for (const turn of this.turns) {
      if (!visible(turn.speech_end_ms) && !visible(turn.first_reply_ms)) continue;
      const a = x(turn.speech_end_ms);
      const b = x(turn.first_reply_ms);
      g.strokeStyle = COLORS.ink;
      g.beginPath();
      g.moveTo(a, ROWS.callerBottom);
      g.lineTo(a, ROWS.middle);
      g.lineTo(b, ROWS.middle);
      g.lineTo(b, ROWS.heardTop);
      g.stroke();
      g.fillStyle = COLORS.ink;
      const text = `reply ${ms(turn.latency_ms)}`;
      const half = g.measureText(text).width / 2;
      g.fillText(text, (a + b) / 2, ROWS.middle - 8);
      this.taken.push([Math.min(a, (a + b) / 2 - half), Math.max(b, (a + b) / 2 + half)]);
    }
  }

  drawBargeIns(g, x, visible) {
    for (const barge of this.bargeIns) {
      if (!visible(barge.onset_ms)) continue;
      const at = x(barge.onset_ms);
      g.strokeStyle = COLORS.barge;
      g.setLineDash([4, 3]);
      g.beginPath();
      g.moveTo(at, ROWS.callerTop);
      g.lineTo(at, ROWS.heardBottom);
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = COLORS.barge;
      triangle(g, at, ROWS.middle + 8, 6, 1);
      const heard = barge.heard_ms !== null ? `heard ${ms(barge.heard_ms)}` : "not cleared";
      const reaction = barge.clear_reaction_ms !== null ? `, clear +${ms(barge.clear_reaction_ms)}` : "";
      const text = `barge-in: ${heard}${reaction}`;
      this.taken.push(freeLabel(g, text, at, ROWS.middle + 8, 8, this.taken));
    }
  }

  drawKeys(g, x, visible) {
    g.textAlign = "center";
    for (const key of this.dtmf) {
      if (!visible(key.t)) continue;
      badge(g, x(key.t), ROWS.callerTop + 9, key.digit, COLORS.dtmf);
    }
  }

  drawViolations(g, x, visible) {
    g.textAlign = "center";
    for (const v of this.violations) {
      if (!visible(v.t)) continue;
      badge(g, x(v.t), ROWS.violations, String(v.code), COLORS.violation);
    }
  }
}

// Text beside x: on its right, or on its left where the right has no room.
function label(g, text, x, y, gap) {
  const room = g.canvas.clientWidth - 4;
  const width = g.measureText(text).width;
  g.textAlign = x + gap + width <= room ? "left" : "right";
  g.fillText(text, g.textAlign === "left" ? x + gap : x - gap, y);
}

// Text beside x where it overlaps none of the `taken` stretches [left, right] (on the right
// first, then the left); where both would, on the right over a white ground. Its stretch.
function freeLabel(g, text, x, y, gap, taken) {
  const width = g.measureText(text).width;
  const room = g.canvas.clientWidth - 4;
  const free = ([left, right]) =>
    left >= GUTTER && right <= room && taken.every(([a, b]) => right < a - 2 || left > b + 2);
  const right = [x + gap, x + gap + width];
  const left = [x - gap - width, x - gap];
  const chosen = free(right) ? right : free(left) ? left : right[1] <= room ? right : left;
  if (!free(chosen)) {
    g.fillStyle = "rgba(255, 255, 255, 0.9)";
    g.fillRect(chosen[0] - 2, y - 7, width + 4, 14);
  }
  g.fillStyle = COLORS.barge;
  g.textAlign = "left";
  g.fillText(text, chosen[0], y);
  return chosen;
}

// The index of the first tick at or after time t (ticks are in order of time).
function firstAtOrAfter(ticks, t) {
  let low = 0;
  let high = ticks.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (ticks[middle][0] < t) low = middle + 1;
    else high = middle;
  }
  return low;
}

function triangle(g, cx, cy, size, direction) {
  g.beginPath();
  g.moveTo(cx - size, cy - direction * size);
  g.lineTo(cx + size, cy - direction * size);
  g.lineTo(cx, cy + direction * size);
  g.closePath();
  g.fill();
}

function badge(g, cx, cy, text, color) {
  const w = g.measureText(text).width + 8;
  g.fillStyle = color;
  g.fillRect(cx - w / 2, cy - 8, w, 16);
  g.fillStyle = "#fff";
  g.fillText(text, cx, cy);
}

export function ms(value) {
  if (value === null || value === undefined) return "-";
  return value >= 10000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value).toLocaleString("en")} ms`;
}
