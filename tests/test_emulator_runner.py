"""Whole calls: the recording of a played file, the async API, and the report's shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emulator_apps import correlation, plays, stream_app
from mediastreams.audio import to_mulaw, wav_bytes
from mediastreams.emulator import Hangup, load_app, place_call, place_call_async
from mediastreams.exceptions import EmulatorError


def chirp_wav(path: Path, sample_rate: int = 16000, seconds: float = 2.0) -> Path:
    """A 200-3000 Hz sweep at 16 kHz: not what Twilio plays, so it must be converted."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    phase = 2 * np.pi * (200 * t + (2800 / (2 * seconds)) * t * t)
    pcm = (12000 * np.sin(phase)).astype("<i2")
    path.write_bytes(wav_bytes(pcm.tobytes(), encoding="pcm", sample_rate=sample_rate))
    return path


def test_the_recording_of_a_played_file_matches_the_file_as_mu_law(tmp_path: Path) -> None:
    source = to_mulaw(chirp_wav(tmp_path / "chirp.wav"))
    result = place_call(stream_app(plays(source, chunk_bytes=160)), [Hangup(at_ms=3000)])
    assert correlation(result.heard_mulaw, source) >= 0.99


@pytest.mark.anyio
async def test_the_async_api_runs_in_the_current_loop_in_real_time() -> None:
    result = await place_call_async(stream_app(plays(b"\x10" * 800)), [Hangup(at_ms=100)])
    assert result.report.clock == "real"
    assert result.report.duration_ms == 100
    assert result.ok


def test_the_report_as_json() -> None:
    result = place_call(stream_app(plays(b"\x10" * 8000)), [Hangup(at_ms=1500)])
    report = result.report.to_dict()
    assert report["placed"] and report["exit_code"] == 0
    assert report["marks"] == {"sent": 1, "echoed": 1, "echoed_by_clear": 0}
    assert report["audio"] == {
        "received_ms": 1000.0,
        "played_ms": 1000.0,
        "inbound_dropped_ms": 0,
        "discarded_by_clear_ms": 0,
    }
    assert report["frames"]["max_buffered_ms"] == 1000.0
    assert report["time_to_first_audio_ms"] == 0.0
    assert report["stream_sid"].startswith("MZ")
    assert result.report.to_json().startswith("{")


def test_load_app() -> None:
    assert callable(load_app("emulator_apps:TONE_MULAW.__len__"))
    with pytest.raises(EmulatorError, match="no attribute"):
        load_app("emulator_apps:missing")
    with pytest.raises(EmulatorError, match="cannot import"):
        load_app("no_such_module:app")


def test_virtual_time_needs_an_app() -> None:
    with pytest.raises(EmulatorError, match="virtual time"):
        place_call("ws://127.0.0.1:9/x", clock="virtual")


def test_rendering_the_report_for_the_terminal() -> None:
    from rich.console import Console

    from mediastreams.emulator.report import render_text

    result = place_call(stream_app(plays(b"\x10" * 800)), [Hangup(at_ms=100)])
    console = Console(record=True, width=120)
    console.print(render_text(result.report))
    text: Any = console.export_text()
    assert "time to first audio" in text


def test_many_calls_share_one_lifespan() -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    from mediastreams.emulator import place_calls

    started: list[int] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        started.append(1)
        yield

    base = stream_app(plays(b"\x10" * 800))
    app = Starlette(routes=base.routes, lifespan=lifespan)
    results = place_calls(app, [Hangup(at_ms=500)], calls=10)
    assert started == [1]
    assert [r.report.exit_code for r in results] == [0] * 10
    assert len({r.report.stream_sid for r in results}) == 10
    with pytest.raises(EmulatorError, match="one call"):
        place_calls(app, calls=2, trace="x.jsonl")


def test_every_frame_is_observed_as_it_goes(tmp_path: Path) -> None:
    seen: list[tuple[float, str, str | bytes]] = []
    trace = tmp_path / "t.jsonl"
    result = place_call(
        stream_app(plays(b"\x10" * 800)),
        [Hangup(at_ms=200)],
        trace=trace,
        on_frame=lambda t, sender, frame: seen.append((t, sender, frame)),
    )
    assert result.ok
    events = [(s, json.loads(f)["event"]) for _, s, f in seen if isinstance(f, str)]
    assert events[:2] == [("twilio", "connected"), ("twilio", "start")]
    assert ("app", "media") in events and ("app", "mark") in events
    assert ("twilio", "mark") in events and events[-1] == ("twilio", "stop")
    times = [t for t, _, _ in seen]
    assert times == sorted(times) and times[-1] >= 0.2
    assert len(seen) == len(trace.read_text().splitlines())
