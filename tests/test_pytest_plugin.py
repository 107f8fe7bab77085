"""The ``twilio_call`` fixture, as a user's test would use it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from emulator_apps import TONE_MULAW, plays, stream_app
from mediastreams.emulator import CallResult, Hangup


def test_a_users_test_is_a_few_lines(twilio_call: Callable[..., CallResult]) -> None:
    result = twilio_call(stream_app(plays(TONE_MULAW)), [Hangup(at_ms=2000)])
    assert result.report.violations == []
    assert result.report.clock == "virtual"
    assert result.heard_mulaw[160:8160] == TONE_MULAW


@pytest.mark.anyio
async def test_the_fixture_works_from_an_async_test(
    twilio_call: Callable[..., CallResult],
) -> None:
    result = twilio_call(stream_app(plays(TONE_MULAW)), [Hangup(at_ms=500)])
    assert result.ok


def test_importing_the_plugin_imports_nothing_else() -> None:
    code = (
        "import sys, mediastreams; before = set(sys.modules); "
        "import mediastreams.pytest_plugin; "
        "extra = {m for m in set(sys.modules) - before if m.startswith('mediastreams')}; "
        "assert extra == {'mediastreams.pytest_plugin'}, extra"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_fixture_places_the_call_at_the_apps_public_url(
    twilio_call: Callable[..., CallResult],
) -> None:
    from mediastreams.server import ServerConfig, create_app

    async def handler(stream: object) -> None:
        await stream.play(TONE_MULAW)  # type: ignore[attr-defined]

    app = create_app(
        ServerConfig(handler=handler, public_url="https://abc.ngrok.app", auth_token="t0ken")
    )
    options = {"webhook_path": "/incoming-call", "auth_token": "t0ken"}
    result = twilio_call(app, [Hangup(at_ms=2000)], public_url="https://abc.ngrok.app", **options)
    assert result.ok, result.report.findings
    assert result.report.stream_url == "wss://abc.ngrok.app/media-stream"
    assert not twilio_call(app, [Hangup(at_ms=2000)], **options).ok  # signed for testserver
