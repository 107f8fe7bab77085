"""What one call showed beyond the emulator's report: the recording, the apps' own logs.

- ``heard``: where a known prompt starts in the recording of what the caller heard, how much
  of it played before something else (a ``clear``, the end of the call) cut it, and how much
  silence the caller heard inside it (the app's audio came late): the prompts are exact
  mu-law, so the played part matches the file sample for sample.
- ``realtime_session``: the fake Realtime server's log for the session of one call: each
  ``conversation.item.truncate`` (``audio_end_ms``) beside the audio the item had, errors,
  and when (or whether) the session closed after the call.
"""

from __future__ import annotations

import json
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediastreams.audio import mulaw, to_mulaw

SAMPLES_PER_MS = 8
_MATCH = 160  # samples (20 ms) that must match exactly where a prompt is said to start


@dataclass
class Heard:
    """One prompt in the recording: where it started and how much of it was heard."""

    prompt: str
    length_ms: float
    start_ms: float | None = None  # in stream time (ms since start), prelude taken off
    heard_ms: float | None = None
    gaps_ms: float | None = None  # silence heard inside it: the app's audio came late

    @property
    def cut_ms(self) -> float | None:
        return None if self.heard_ms is None else round(self.length_ms - self.heard_ms, 1)


def read_heard(stereo_wav: Path) -> np.ndarray:
    """The right channel (what the caller heard) of the emulator's stereo recording."""
    with wave.open(str(stereo_wav)) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return frames.reshape(-1, 2)[:, 1].astype(np.int32)


def prompt_samples(path: Path) -> np.ndarray:
    """A prompt as the caller hears it: its mu-law decoded to 16-bit samples."""
    return np.frombuffer(mulaw.decode(to_mulaw(path)), dtype="<i2").astype(np.int32)


def heard(recording: np.ndarray, prompt: Path, prelude_ms: float) -> Heard:
    """Where ``prompt`` starts in ``recording`` and how long it played unchanged."""
    template = prompt_samples(prompt)
    found = Heard(prompt.stem, round(len(template) / SAMPLES_PER_MS, 1))
    start = _locate(recording, template)
    if start is None:
        return found
    matched, gaps = _follow(recording[start:].tolist(), template.tolist())
    found.start_ms = round(start / SAMPLES_PER_MS - prelude_ms, 1)
    found.heard_ms = round(matched / SAMPLES_PER_MS, 1)
    found.gaps_ms = round(gaps / SAMPLES_PER_MS, 1)
    return found


def _follow(recording: list[int], template: list[int]) -> tuple[int, int]:
    """How many template samples played in order, and how much silence came between.

    Silence inside the prompt is an underrun (the app's audio came late) if the prompt then
    goes on, which takes 20 ms matching exactly and not silent (a silent template sample
    would match any silence); the first other difference is where something cut the prompt.
    """
    played = gaps = pending = 0
    for index, sample in enumerate(recording):
        if played == len(template):
            break
        if pending and sample == 0:
            pending += 1
        elif sample == template[played] and (
            not pending or _resumes(recording, template, index, played)
        ):
            played += 1
            gaps += pending
            pending = 0
        elif sample == 0:
            pending = 1
        else:
            break
    return played, gaps


def _resumes(recording: list[int], template: list[int], index: int, played: int) -> bool:
    ahead = recording[index : index + _MATCH]
    return ahead == template[played : played + _MATCH] and any(ahead)


def _locate(recording: np.ndarray, template: np.ndarray) -> int | None:
    # The first place where the template's first loud 20 ms appear exactly: mu-law played
    # unchanged decodes to the same samples, and 160 samples of speech do not recur by chance.
    loud = int(np.argmax(np.abs(template) > 1000))
    window = template[loud : loud + _MATCH]
    if len(window) < _MATCH:
        return None
    for index in np.nonzero(recording == window[0])[0]:
        start = int(index) - loud
        if start >= 0 and np.array_equal(recording[index : index + _MATCH], window):
            return start
    return None


@dataclass
class RealtimeSession:
    """The fake Realtime server's view of one call."""

    session: str | None = None
    truncates: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    closed_after_call_s: float | None = None  # None: still open when last looked at


def realtime_session(log: Path, opened_after: float, call_ended: float) -> RealtimeSession:
    """The session opened during a call, from the fake server's JSON Lines log."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    opened = [r for r in records if r["dir"] == "open" and r["t"] >= opened_after]
    found = RealtimeSession()
    if not opened:
        return found
    found.session = session = opened[0]["session"]
    mine = [r for r in records if r["session"] == session]
    prompts: dict[str, str] = {}
    sent: dict[str, int] = {}
    for r in mine:
        kind = r.get("type")
        if kind == "response.output_item.added":
            prompts[r["item"]["id"]] = r["item"]["prompt"]
        elif kind == "response.done":
            done = r["response"]
            sent[done["item_id"]] = done["audio_sent_ms"]
            found.responses.append(
                {
                    "prompt": prompts.get(done["item_id"]),
                    "status": done["status"],
                    "audio_sent_ms": done["audio_sent_ms"],
                }
            )
        elif kind == "error":
            found.errors.append(r["error"]["message"])
        elif kind == "close":
            found.closed_after_call_s = round(r["t"] - call_ended, 2)
    for r in mine:
        if r["dir"] == "in" and r.get("type") == "conversation.item.truncate":
            item = r.get("item_id")
            found.truncates.append(
                {
                    "item_id": item,
                    "prompt": prompts.get(item),
                    "audio_end_ms": r.get("audio_end_ms"),
                    "item_audio_ms": sent.get(item),
                }
            )
    return found


def as_dict(value: Any) -> Any:
    """Dataclasses (and lists of them) as plain data for JSON."""
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        data = asdict(value)
        if isinstance(value, Heard):
            data["cut_ms"] = value.cut_ms
        return data
    return value
