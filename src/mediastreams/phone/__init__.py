"""``mediastreams phone``: talk to a Media Streams app from the browser, through the emulator.

The page is the caller: its microphone goes to the emulator (resampled to 8 kHz mu-law, one
frame per 20 ms tick), and what Twilio would play to the caller comes back to its speaker.
The emulator is Twilio: the webhook, the signed upgrade, the frames, mark echoes, ``clear``,
the checks and the report, exactly as for ``mediastreams call``. The page draws the call as
it happens. See ``docs/phone.md``.

- :class:`LiveCaller`: the caller the line ticks, fed from the page;
- :class:`LiveTimeline`: the call's hooks as events for the page;
- :class:`Phone`, :class:`PageSession`: what to call, and one page's socket;
- :func:`create_phone_app`, :func:`run_phone`: the page's server on 127.0.0.1.
"""

from __future__ import annotations

from .caller import LiveCaller
from .server import create_phone_app, run_phone
from .session import CALL_FILES, PageSession, Phone
from .timeline import LiveTimeline

__all__ = [
    "CALL_FILES",
    "LiveCaller",
    "LiveTimeline",
    "PageSession",
    "Phone",
    "create_phone_app",
    "run_phone",
]
