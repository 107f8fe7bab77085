"""A deploy drops no call: SIGTERM drains on every backend (real processes, 127.0.0.1)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fleet import Instance
from mediastreams.audio import wav_bytes
from mediastreams.emulator import Silence, place_call_async
from mediastreams.server import BACKENDS
from waiting import DEADLINE_S, await_for

pytestmark = pytest.mark.anyio


def tone_wav(path: Path, seconds: float) -> Path:
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    path.write_bytes(wav_bytes(pcm.tobytes(), encoding="pcm", sample_rate=8000))
    return path


async def streams_on(instance: Instance) -> int:
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        return int((await client.get(f"{instance.url}/healthz")).json()["streams"])


async def readyz(instance: Instance) -> int:
    async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
        return (await client.get(f"{instance.url}/readyz")).status_code


async def wait_exit(instance: Instance, deadline_s: float = 30.0) -> int:
    give_up = time.monotonic() + deadline_s
    while instance.process.poll() is None:
        assert time.monotonic() < give_up, "serve did not exit"
        await asyncio.sleep(0.05)
    return instance.process.returncode


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigterm_lets_the_call_play_to_its_end(tmp_path: Path, backend: str) -> None:
    wav = tone_wav(tmp_path / "tone.wav", 3.0)
    args = ["--play", str(wav), "--hangup-after-play", "--backend", backend]
    instance = Instance(args, tmp_path)
    try:
        assert await readyz(instance) == 200
        call = asyncio.create_task(
            place_call_async(f"{instance.url}/incoming-call", [Silence(10_000)], end_quiet_ms=None)
        )
        await await_for(lambda: streams_on(instance), "the stream to start")
        instance.signal(signal.SIGTERM)
        await await_for(lambda: _is(readyz(instance), 503), "/readyz to answer 503")
        result = await asyncio.wait_for(call, 30)
        assert result.report.ok, result.report.findings
        assert result.report.audio_played_ms >= 2900
        assert await wait_exit(instance) == 0
    finally:
        instance.stop()
    assert "draining" in instance.text()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_drain_timeout_closes_with_1001_a_normal_end(
    tmp_path: Path, backend: str
) -> None:
    instance = Instance(["--echo", "--drain-timeout", "1", "--backend", backend], tmp_path)
    try:
        call = asyncio.create_task(
            place_call_async(
                f"{instance.url}/incoming-call",
                [Silence(20_000)],
                end_quiet_ms=None,
                max_duration_s=40,
            )
        )
        await await_for(lambda: streams_on(instance), "the stream to start")
        instance.signal(signal.SIGTERM)
        result = await asyncio.wait_for(call, 30)
        assert result.report.ok, result.report.findings
        assert 31921 not in result.report.codes()
        assert result.report.duration_ms < 15_000
        assert await wait_exit(instance) == 0
    finally:
        instance.stop()
    assert "1001" in instance.text()


async def _is(value: object, expected: int) -> bool:
    assert asyncio.iscoroutine(value)
    return bool(await value == expected)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_second_sigterm_stops_at_once_with_1001(tmp_path: Path, backend: str) -> None:
    instance = Instance(["--echo", "--backend", backend], tmp_path)  # drain timeout: 600 s
    try:
        call = asyncio.create_task(
            place_call_async(
                f"{instance.url}/incoming-call",
                [Silence(30_000)],
                end_quiet_ms=None,
                max_duration_s=60,
            )
        )
        await await_for(lambda: streams_on(instance), "the stream to start")
        instance.signal(signal.SIGTERM)
        await await_for(lambda: _is(readyz(instance), 503), "/readyz to answer 503")
        assert instance.process.poll() is None  # draining: the call goes on
        instance.signal(signal.SIGTERM)
        assert await wait_exit(instance) == 0
        result = await asyncio.wait_for(call, 30)
        assert result.report.ok, result.report.findings
        assert 31921 not in result.report.codes()
        assert result.report.duration_ms < 25_000
    finally:
        instance.stop()
    assert "closing stream" in instance.text() and "1001" in instance.text()
