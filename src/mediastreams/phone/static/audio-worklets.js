// The page's two audio processors, on the browser's audio thread.
//
// "capture": the microphone in, as 16-bit PCM chunks posted to the link worker (which sends
// them to the local process over the WebSocket).
// "playback": what the caller hears out, from 16-bit PCM chunks posted by the link worker,
// through a small jitter buffer: it starts playing once `prefillSamples` are in, plays silence
// and fills up again when it runs dry, and drops its oldest audio past `maxSamples`. Audio that
// came in a burst (the local process caught up after a pause) would stay as added delay for
// the rest of the call: when the buffer never went below `prefillSamples` less one 20 ms frame
// in a whole second, the excess is dropped, at a quiet moment. The process sends 20 ms every
// tick, silence included, so running dry is always jitter (a busy machine, a late tick): each
// time it does, the prefill grows to cover the dry spell (how long until audio came again),
// by a frame at least, up to PREFILL_MAX_S; it shrinks back by a frame after every SETTLE_S
// without running dry. An idle machine keeps the small delay; a busy one trades some delay
// for audio without holes.
//
// The link worker's port comes as {link: MessagePort} on the node's own port, which carries
// the rest to the page: the audio time now and then (to map it to the wall clock), and the
// status of the jitter buffer.
//
// Both can report onsets (a sample of 0.25 or more, the first for 100 ms) with their audio
// time, which the page turns into wall-clock times to measure latency; "playback" can also
// post a copy of what it played (the tap), so that tests can check what the speaker got.

const ONSET_LEVEL = 0.25;
const QUIET_S = 0.1;
const STATUS_EVERY_S = 0.25;
const TRIM_WINDOW_S = 1;
const TRIM_MARGIN_S = 0.01; // excess below this is left alone
const QUIET_OUTPUT = 0.02; // a block this quiet can lose some samples unheard
const PREFILL_STEP_S = 0.02;
const PREFILL_MAX_S = 0.3;
const SETTLE_S = 5;

class OnsetProbe {
  constructor() {
    this.sinceLoud = QUIET_S * sampleRate;
  }

  // The index of the first onset in `samples`, or -1.
  find(samples) {
    const needed = QUIET_S * sampleRate;
    let found = -1;
    for (let i = 0; i < samples.length; i++) {
      if (Math.abs(samples[i]) >= ONSET_LEVEL) {
        if (this.sinceLoud >= needed && found < 0) found = i;
        this.sinceLoud = 0;
      } else {
        this.sinceLoud++;
      }
    }
    return found;
  }
}

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { chunkSamples, probe } = options.processorOptions;
    this.chunkSamples = chunkSamples;
    this.chunk = new Int16Array(chunkSamples);
    this.filled = 0;
    this.probe = probe ? new OnsetProbe() : null;
    this.link = null;
    this.chunks = 0;
    this.port.onmessage = (event) => {
      if (event.data.link) this.link = event.data.link;
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels.length === 0) return true; // no microphone connected (yet)
    const samples = channels[0];
    for (let i = 0; i < samples.length; i++) {
      const v = Math.max(-1, Math.min(1, samples[i]));
      this.chunk[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
      if (this.filled === this.chunkSamples) {
        if (this.link) this.link.postMessage(this.chunk.buffer, [this.chunk.buffer]);
        if (this.chunks++ % 10 === 0) this.port.postMessage({ time: currentTime });
        this.chunk = new Int16Array(this.chunkSamples);
        this.filled = 0;
      }
    }
    if (this.probe) {
      const at = this.probe.find(samples);
      if (at >= 0) this.port.postMessage({ onset: currentTime + at / sampleRate, time: currentTime });
    }
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { prefillSamples, maxSamples, tap, probe } = options.processorOptions;
    this.basePrefill = prefillSamples;
    this.prefill = prefillSamples;
    this.headroom = maxSamples - prefillSamples; // kept above the prefill as it moves
    this.max = maxSamples;
    this.settledAt = 0; // when the prefill last moved, or the buffer last ran dry
    this.dryAt = null; // when the buffer ran dry, until audio comes again
    this.chunks = [];
    this.offset = 0; // into chunks[0]
    this.buffered = 0;
    this.playing = false;
    this.underruns = 0;
    this.droppedSamples = 0;
    this.tap = tap ? new Float32Array(4096) : null;
    this.tapped = 0;
    this.probe = probe ? new OnsetProbe() : null;
    this.nextStatus = 0;
    this.lowest = Infinity; // the least buffered in this trim window
    this.windowEnd = 0;
    this.excess = 0;
    this.port.onmessage = (event) => {
      if (event.data.link) event.data.link.onmessage = (chunk) => this.receive(chunk.data);
      else this.receive(event.data);
    };
  }

  receive(data) {
    if (data.pcm) {
      const pcm = new Int16Array(data.pcm);
      if (this.dryAt !== null) {
        // Next time, cover a dry spell as long as this one, and a frame more.
        const wantedS = currentTime - this.dryAt + PREFILL_STEP_S;
        this.adapt(Math.max(PREFILL_STEP_S, wantedS - this.prefill / sampleRate));
        this.dryAt = null;
      }
      const samples = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
      this.chunks.push(samples);
      this.buffered += samples.length;
      if (this.buffered > this.max) this.drop(this.buffered - this.prefill);
    } else if (data.reset) {
      this.drop(this.buffered);
      this.playing = false;
      this.adapt(-PREFILL_MAX_S); // a new call starts from the small delay
      this.dryAt = null;
    }
  }

  drop(count) {
    this.droppedSamples += count;
    this.buffered -= count;
    while (count > 0 && this.chunks.length) {
      const left = this.chunks[0].length - this.offset;
      if (left > count) {
        this.offset += count;
        return;
      }
      count -= left;
      this.chunks.shift();
      this.offset = 0;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.buffered >= this.prefill) this.playing = true;
    let written = 0;
    if (this.playing) {
      while (written < out.length && this.chunks.length) {
        const chunk = this.chunks[0];
        const count = Math.min(out.length - written, chunk.length - this.offset);
        out.set(chunk.subarray(this.offset, this.offset + count), written);
        written += count;
        this.offset += count;
        this.buffered -= count;
        if (this.offset === chunk.length) {
          this.chunks.shift();
          this.offset = 0;
        }
      }
      if (written < out.length) {
        this.playing = false; // ran dry: fill up again before playing on
        this.underruns++;
        this.dryAt = currentTime;
      } else if (currentTime - this.settledAt >= SETTLE_S && this.prefill > this.basePrefill) {
        this.adapt(-PREFILL_STEP_S);
      }
    }
    out.fill(0, written);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.trim(out);
    this.report(out);
    return true;
  }

  adapt(stepS) {
    const most = PREFILL_MAX_S * sampleRate;
    const prefill = this.prefill + Math.round(stepS * sampleRate);
    this.prefill = Math.max(this.basePrefill, Math.min(most, prefill));
    this.max = this.prefill + this.headroom;
    this.settledAt = currentTime;
  }

  trim(out) {
    if (!this.playing) {
      this.lowest = Infinity;
      this.windowEnd = currentTime + TRIM_WINDOW_S;
      return;
    }
    this.lowest = Math.min(this.lowest, this.buffered);
    if (currentTime >= this.windowEnd) {
      const floor = this.prefill - 0.02 * sampleRate; // the low point of a steady flow
      this.excess = this.lowest - floor > TRIM_MARGIN_S * sampleRate ? this.lowest - floor : 0;
      this.lowest = Infinity;
      this.windowEnd = currentTime + TRIM_WINDOW_S;
    }
    if (this.excess > 0 && out.every((v) => Math.abs(v) < QUIET_OUTPUT)) {
      this.drop(Math.min(this.excess, this.buffered));
      this.excess = 0;
    }
  }

  report(out) {
    if (this.tap) {
      for (let i = 0; i < out.length; i++) {
        this.tap[this.tapped++] = out[i];
        if (this.tapped === this.tap.length) {
          this.port.postMessage({ tap: this.tap.buffer }, [this.tap.buffer]);
          this.tap = new Float32Array(4096);
          this.tapped = 0;
        }
      }
    }
    if (this.probe) {
      const at = this.probe.find(out);
      if (at >= 0) this.port.postMessage({ onset: currentTime + at / sampleRate, time: currentTime });
    }
    if (currentTime >= this.nextStatus) {
      this.nextStatus = currentTime + STATUS_EVERY_S;
      this.port.postMessage({
        time: currentTime,
        bufferedMs: (1000 * this.buffered) / sampleRate,
        prefillMs: (1000 * this.prefill) / sampleRate,
        underruns: this.underruns,
        droppedMs: (1000 * this.droppedSamples) / sampleRate,
      });
    }
  }
}

registerProcessor("capture", Capture);
registerProcessor("playback", Playback);
