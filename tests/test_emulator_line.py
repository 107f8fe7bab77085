"""The emulator's line on its own: ending a call whatever its background work is doing."""

from __future__ import annotations

import asyncio
import threading

import httpx

from mediastreams.emulator.line import Line
from mediastreams.emulator.recorder import Recorder
from mediastreams.emulator.report import CallReport
from mediastreams.emulator.script import CallerScript
from mediastreams.emulator.webhook import TwilioRequests, call_parameters
from waiting import DEADLINE_S


def test_closing_right_after_background_work_ended_returns() -> None:
    # The work has ended but the callback that takes it out of the line's set waits for the
    # next turn of the loop: close() must give it one (gather() over finished tasks returns
    # at once since Python 3.12, and a loop on the set alone would spin for ever).
    closed = threading.Event()

    async def run() -> None:
        params = call_parameters()
        async with httpx.AsyncClient() as client:
            line = Line(
                CallerScript([]),
                Recorder(),
                CallReport(target="an app", clock="real"),
                lambda plan: None,
                TwilioRequests(client, params),
                call_sid=params["CallSid"],
                account_sid=params["AccountSid"],
                max_duration_ms=1000,
            )

            async def work() -> None:
                pass

            line._spawn(work())
            await asyncio.sleep(0)  # the work runs and ends; its done callback is queued
            await line.close()
        closed.set()

    # In a thread of its own: a loop that spins never yields, so no asyncio timeout could
    # end it; the thread is given up on instead.
    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert closed.wait(DEADLINE_S), "Line.close() did not return"
    thread.join(DEADLINE_S)
