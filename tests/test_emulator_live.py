"""The emulator's live hooks: a caller that is not a script, and observers of each tick and
each finding as the call goes (what ``mediastreams phone`` is built on)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

import pytest

from emulator_apps import TONE_MULAW, correlation, nothing, sends, stream_app
from mediastreams.emulator import (
    Hangup,
    Utterance,
    VirtualEventLoop,
    place_call,
    place_call_async,
    place_calls,
)
from mediastreams.emulator.loudness import is_audible
from mediastreams.emulator.script import UtteranceCutter
from mediastreams.exceptions import EmulatorError
from mediastreams.server import ServerConfig, create_app, echo_handler
from mediastreams.violations import Finding
from mediastreams.wireformat import FRAME_BYTES, SILENCE_FRAME

DEADLINE_S = 30.0


class QueueCaller:
    """A caller fed from outside while the call runs (a
    :class:`~mediastreams.emulator.Caller`): frames and keys wait in queues, and it sends
    silence when there is nothing to say."""

    def __init__(self) -> None:
        self.frames: deque[bytes] = deque()
        self.keys = ""
        self.hang_up = False
        self.key_presses_ms: list[int] = []
        self._cutter = UtteranceCutter()

    def say(self, mulaw: bytes) -> None:
        for offset in range(0, len(mulaw) - FRAME_BYTES + 1, FRAME_BYTES):
            self.frames.append(mulaw[offset : offset + FRAME_BYTES])

    @property
    def speech(self) -> list[Utterance]:
        return self._cutter.found

    def tick(self, now_ms: int, *, quiet_ms: int, app_spoke: bool) -> tuple[bytes, str, bool]:
        if self.hang_up:
            return SILENCE_FRAME, "", True
        keys, self.keys = self.keys, ""
        if keys:
            self.key_presses_ms.append(now_ms)
        frame = self.frames.popleft() if self.frames else SILENCE_FRAME
        self._cutter.add(now_ms, is_audible(frame))
        return frame, keys, False

    def finish(self) -> None:
        self._cutter.close()


async def wait_for(condition: Any, call: asyncio.Task[Any]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert not call.done(), call.result().report.to_dict()
        assert time.monotonic() < deadline, "the call never got there"
        await asyncio.sleep(0.01)


def test_a_live_caller_talks_hears_the_echo_and_reacts_to_it() -> None:
    """The caller speaks, hears its echo tick by tick, then presses a key and hangs up: what
    it does depends on what it heard during the call, which no script can do."""
    caller = QueueCaller()
    ticks: list[tuple[int, bytes, bytes]] = []
    frames: list[tuple[float, str, str | bytes]] = []
    spoken = TONE_MULAW[:4000]  # 500 ms
    app = create_app(ServerConfig(handler=echo_handler))

    def echo_heard() -> bool:
        heard = b"".join(h for _, _, h in ticks)
        return len(heard) > len(spoken) and correlation(heard, spoken) > 0.9

    async def run() -> Any:
        caller.say(spoken)
        call = asyncio.create_task(
            place_call_async(
                app,
                caller=caller,
                on_tick=lambda t, said, heard: ticks.append((t, said, heard)),
                on_frame=lambda t, sender, frame: frames.append((t, sender, frame)),
            )
        )
        await wait_for(echo_heard, call)
        caller.keys = "5"
        await wait_for(lambda: caller.key_presses_ms != [], call)
        caller.hang_up = True
        return await asyncio.wait_for(call, DEADLINE_S)

    result = asyncio.run(run())
    report = result.report
    assert report.clock == "real" and report.ended_by == "caller" and report.findings == []
    # Every tick, in order, with the frames the recording has.
    assert [t for t, _, _ in ticks] == list(range(0, 20 * len(ticks), 20))
    assert all(len(said) == len(heard) == FRAME_BYTES for _, said, heard in ticks)
    assert b"".join(s for _, s, _ in ticks) == result.recorder.caller_mulaw
    assert b"".join(h for _, _, h in ticks) == result.heard_mulaw
    assert b"".join(s for _, s, _ in ticks).startswith(spoken)
    # The report reads the live caller's utterances and keys.
    assert report.utterances == caller.speech == [Utterance(0, 500)]
    [key_ms] = caller.key_presses_ms
    dtmf = [
        json.loads(f)
        for _, sender, f in frames
        if sender == "twilio" and isinstance(f, str) and '"dtmf"' in f
    ]
    assert [d["dtmf"]["digit"] for d in dtmf] == ["5"]
    assert key_ms > 500  # after the echo was heard


def test_cancelling_a_live_call_hangs_up_and_gives_the_result() -> None:
    caller = QueueCaller()  # never hangs up by itself
    ticks: list[int] = []

    async def run() -> Any:
        call = asyncio.create_task(
            place_call_async(
                stream_app(nothing),
                caller=caller,
                hang_up_on_cancel=True,
                on_tick=lambda t, said, heard: ticks.append(t),
            )
        )
        await wait_for(lambda: len(ticks) >= 10, call)
        call.cancel()
        return await asyncio.wait_for(call, DEADLINE_S)

    result = asyncio.run(run())
    assert result.report.ended_by == "interrupted"
    assert result.report.duration_ms == 20 * len(ticks)
    assert len(result.heard_mulaw) == FRAME_BYTES * len(ticks)


def test_each_finding_is_seen_as_it_is_found() -> None:
    bad = '{"event": "hello", "streamSid": "{sid}"}'
    seen: list[tuple[Finding, int]] = []
    ticks: list[int] = []
    result = place_call(
        stream_app(sends(bad, bad, bad)),
        [Hangup(at_ms=1000)],
        on_tick=lambda t, said, heard: ticks.append(t),
        on_finding=lambda finding: seen.append((finding, len(ticks))),
    )
    # Every occurrence, while the call ran (the report keeps one example of the three).
    assert [f.violation.code for f, _ in seen] == [31951] * 3
    assert all(f.violation.kind == seen[0][0].violation.kind for f, _ in seen)
    assert all(0 < ticks_then < len(ticks) for _, ticks_then in seen)
    assert [f.t for f, _ in seen] == sorted(f.t for f, _ in seen)
    assert len(result.report.findings) == 1 and result.report.tally.violations == 3
    assert result.report.findings[0] == seen[0][0]


def test_a_live_caller_needs_the_real_clock() -> None:
    app = stream_app(nothing)
    with pytest.raises(EmulatorError, match=r"live caller speaks in real time.*clock='real'"):
        place_call(app, caller=QueueCaller(), clock="virtual")

    async def in_virtual_time() -> None:
        await place_call_async(app, caller=QueueCaller())

    loop = VirtualEventLoop()
    try:
        with pytest.raises(EmulatorError, match="live caller speaks in real time"):
            loop.run_until_complete(in_virtual_time())
    finally:
        loop.close()


def test_a_live_caller_comes_alone() -> None:
    app = stream_app(nothing)
    with pytest.raises(EmulatorError, match="steps or a live caller, not both"):
        place_call(app, [Hangup(at_ms=100)], caller=QueueCaller())
    with pytest.raises(EmulatorError, match="live caller is on one call"):
        place_calls(app, calls=2, caller=QueueCaller())


def test_by_default_a_live_caller_runs_in_real_time() -> None:
    caller = QueueCaller()
    caller.hang_up = True
    result = place_call(stream_app(nothing), caller=caller)
    assert result.report.clock == "real" and result.report.ended_by == "caller"
