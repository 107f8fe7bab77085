"""A load generator for Media Streams apps: many calls, as Twilio places them, on few cores.

``mediastreams load TARGET --calls N`` (or :func:`run_load`) opens N streams the way Twilio
does, talks on each in real time and plays the app's audio back at Twilio's pace, echoing
its marks, then reports what the app did: violations, failed calls by cause, the lag of each
echoed frame, time to first audio, turn latency, reaction to barge-ins, late frames. The
generator measures its own lateness and CPU, and its report says when its figures cannot be
trusted. See ``docs/load.md``.

Example::

    from mediastreams.load import LoadConfig, run_load

    report = run_load(LoadConfig("ws://127.0.0.1:5050/media-stream", calls=200, duration_s=60))
    assert report.ok and report.trusted, report.render_text()
"""

from __future__ import annotations

from .caller import Turns
from .config import LoadConfig
from .processes import WorkerFailed, run_load, run_load_async
from .report import LoadReport
from .stats import Second

__all__ = [
    "LoadConfig",
    "LoadReport",
    "Second",
    "Turns",
    "WorkerFailed",
    "run_load",
    "run_load_async",
]
