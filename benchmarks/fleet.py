"""A call-control command through Redis: its latency from the sender to the instance that
holds the call and back (``Control.clear`` over pub/sub), beside a Redis PING round trip.

Run: ``uv run python -m benchmarks.fleet [--commands 500]``; needs ``redis-server`` on the
PATH (Debian's package). It starts its own on a free loopback port and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import time
from typing import Any

from benchmarks.harness import Row, print_table


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _measure(url: str, commands: int) -> tuple[list[float], list[float]]:
    from mediastreams.control import Control
    from mediastreams.store import CallRecord, RedisState

    holder = RedisState(url, namespace="bench")

    async def on_command(command: dict[str, Any]) -> dict[str, Any]:
        return {"status": 200, "cleared": 0}  # the instance's answer, without a real stream

    await holder.start(on_command)
    await holder.register(CallRecord("CA" + "0" * 32, "MZ" + "0" * 32, holder.instance))
    control = await Control.connect(url, namespace="bench")
    client = control.state._client  # type: ignore[attr-defined]
    command_ms, ping_ms = [], []
    try:
        for _ in range(commands):
            started = time.perf_counter()
            await control.clear("CA" + "0" * 32)
            command_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await client.ping()
            ping_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await control.close()
        await holder.close()
    return command_ms, ping_ms


def _percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=500)
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        print("benchmarks.fleet: redis-server is not installed; skipped")
        return []
    port = _free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)  # a benchmark, not a test: the first command retries until Redis is up
        command_ms, ping_ms = asyncio.run(_measure(f"redis://127.0.0.1:{port}/0", args.commands))
    finally:
        redis.terminate()
        redis.wait(10)
    rows = [
        Row("control command p50", statistics.median(command_ms), statistics.median(ping_ms),
            "ms", "Redis PING p50"),
        Row("control command p99", _percentile(command_ms, 0.99), _percentile(ping_ms, 0.99),
            "ms", "Redis PING p99"),
    ]  # fmt: skip
    print_table("call control through Redis (loopback)", rows)
    return rows


if __name__ == "__main__":
    main()
