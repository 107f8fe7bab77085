"""Twilio's side of a ``<Connect><Stream>`` call, done to the docs, for tests and local runs.

Place a call against a voice webhook URL, a stream URL, or an ASGI app in the same process::

    from mediastreams.emulator import Audio, WaitForQuiet, place_call

    result = place_call("myapp.server:app", [WaitForQuiet(), Audio("hello.wav")])
    result.raise_for_violations()  # fails with every mistake the app made

In-process calls run in virtual time by default: a one-minute call takes a fraction of a
second. See ``docs/emulator.md``.
"""

from __future__ import annotations

from ..diagnostics import Finding
from .clock import ClockName, TimeDoubt, VirtualEventLoop
from .recorder import Recorder
from .report import BargeIn, CallReport, Pause, Reply, Stall, Turn
from .runner import (
    CallResult,
    load_app,
    place_call,
    place_call_async,
    place_calls,
    place_calls_async,
)
from .script import (
    Audio,
    Caller,
    CallerScript,
    Hangup,
    Press,
    Silence,
    Step,
    Utterance,
    WaitForQuiet,
    WaitForReply,
)

__all__ = [
    "Audio",
    "BargeIn",
    "CallReport",
    "CallResult",
    "Caller",
    "CallerScript",
    "ClockName",
    "Finding",
    "Hangup",
    "Pause",
    "Press",
    "Recorder",
    "Reply",
    "Silence",
    "Stall",
    "Step",
    "TimeDoubt",
    "Turn",
    "Utterance",
    "VirtualEventLoop",
    "WaitForQuiet",
    "WaitForReply",
    "load_app",
    "place_call",
    "place_call_async",
    "place_calls",
    "place_calls_async",
]
