"""Where a server's CPU goes: a py-spy profile (collapsed stacks) summed into named costs.

Run: ``uv run python -m benchmarks.hotspots PROFILE.txt [PROFILE.txt ...]``, on files written
by ``python -m benchmarks.server --profile DIR`` (py-spy's ``raw`` format, ``--native``).

Each sample is put in one bucket, by the innermost frame that a rule names (so the buckets
are self time and sum to 100%), and the busy samples only: those waiting in ``epoll_wait``
(idle) and those in start-up (imports, the upgrade handshake, a stream's opening) are left
out. A second table gives inclusive shares of the functions on the per-frame path.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (what a frame's text contains, or starts with after "^"; the bucket), tried on each frame
# from the innermost out.
RULES: list[tuple[tuple[str, ...], str]] = [
    (("gc_collect", "gc_collect_main"), "garbage collection"),
    (
        ("PyObject_Malloc", "PyObject_Free", "_PyObject_GC_", "malloc", "_int_free", "cfree"),
        "allocation (malloc/free)",
    ),
    (("b64decode", "b64encode", "a2b_base64", "b2a_base64", "base64"), "base64"),
    (("msgspec", "json/decoder", "json/encoder", "json/__init__"), "JSON decode/encode"),
    (("messages.py",), "frames: typed decode/encode (messages.py)"),
    (("protocol.py",), "protocol: order and streamSid checks (protocol.py)"),
    (("Pacer.", "_Play.", "_MarkPoint", "_Handle.done"), "pacer: frames and marks to send"),
    (
        (
            "MediaStream._publish",
            "_Subscriber",
            "MediaStream.events",
            "_EventQueue",
            "EventQueue.",
            "Inbound.publish",
            "Inbound._publish_media",
            "Inbound._to_audio_readers",
        ),
        "session: fan-out to readers",
    ),
    (
        (
            "MediaStream._feed",
            "echo_handler",
            "caller_audio",
            "_mulaw_chunks",
            "AudioFeed.",
            "Playback.feed",
            "Playback._feed",
            "<lambda> (mediastreams/server/streams.py",
        ),
        "session: feeding a play (the echo handler)",
    ),
    (
        ("MediaStream._flush", "MediaStream._write", "Playback.pump", "Playback.flush"),
        "session: writer",
    ),
    (("Playback.", "playback.py"), "session: plays and marks (playback.py)"),
    (
        ("MediaStream._arm_watchdog", "MediaStream._watch", "Watchdog."),
        "session: idle watchdog",
    ),
    (("connections.py",), "connection guard (connections.py)"),
    (
        (
            "MediaStream._read",
            "MediaStream._receive",
            "MediaStream._dispatch",
            "Inbound.on_frame",
            "Inbound.run",
            "Inbound._dispatch",
            "Inbound.check",
            "Inbound._count",
        ),
        "session: reader",
    ),
    (("^send (", "^sock_send", "^__send", "^sendmsg (", "^writev ("), "write syscalls"),
    (("^recv (", "^sock_recv", "^__recv", "^read ("), "read syscalls"),
    # In a Python-only profile, what picows does in C (its send and the write syscall, its
    # reads and framing) shows as the Python frame that called it.
    (
        ("PicowsTransport.send",),
        "PicowsTransport.send/send_now (in Python-only: picows' send, syscall)",
    ),
    (("^Handle._run",), "loop callbacks (in Python-only: picows' reads and framing in C)"),
    (
        (
            "PicowsTransport.receive",
            "PicowsTransport._put",
            "PicowsTransport._push",
            "PicowsTransport.on_ws",
        ),
        "adapter: picows -> session (adapters/picows.py)",
    ),
    (("picows",), "picows: WebSocket framing (C)"),
    (("aiofastnet",), "aiofastnet: picows' transport (C)"),
    (("floor.py",), "floor: framing in Python (floor.py)"),
    (("selector_events", "selectors.py"), "asyncio transport (Python)"),
    (
        ("_asynciomodule", "task_step", "future_", "asyncio/", "Task", "Future"),
        "event loop, tasks and futures",
    ),
    (("logging/",), "logging checks"),
]
# In a Python-only profile the wait in epoll shows as the selector's frame.
IDLE = ("epoll_wait", "select_epoll_poll", "epoll_pwait", "EpollSelector.select")
STARTUP = (
    "_find_and_load",
    "_compile_bytecode",
    "WSProtocol__negotiate",
    "MediaStream.open",
    "connection_made",
    "_handshake",
    "create_server",
)
INCLUSIVE = [  # functions on the per-frame path, for the inclusive table
    "MediaStream._read",
    "Inbound.on_frame",
    "AppProtocol.receive",
    "parse (mediastreams/messages.py",
    "MediaStream._dispatch",
    "MediaStream._publish",
    "MediaStream._feed",
    "AudioFeed.write",
    "MediaStream._flush",
    "Playback.pump",
    "Pacer.frames_to_send",
    "Pacer.pump",
    "AppProtocol.send_media",
    "PicowsTransport.send",
    "PicowsTransport.receive",
    "PicowsTransport.on_ws_frame",
    "gc_collect_main",
    "task_step",
    "FloorProtocol._frames",
]


def bucket(frames: list[str]) -> str:
    """The bucket of one sample, from its frames (outermost first)."""
    for frame in reversed(frames):
        for needles, name in RULES:
            if any(_matches(needle, frame) for needle in needles):
                return name
    return "other (interpreter)"


def _matches(needle: str, frame: str) -> bool:
    if needle.startswith("^"):
        return frame.startswith(needle[1:])
    return needle in frame


def read(path: Path) -> tuple[Counter[str], Counter[str], int, int]:
    """Buckets, inclusive counts, busy samples and samples left out, of one profile."""
    buckets: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = skipped = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        if any(idle in frames[-1] for idle in IDLE) or any(
            start in frame for frame in frames for start in STARTUP
        ):
            skipped += count
            continue
        busy += count
        buckets[bucket(frames)] += count
        for name in INCLUSIVE:
            if any(name in frame for frame in frames):
                inclusive[name] += count
    return buckets, inclusive, busy, skipped


def report(path: Path) -> None:
    """Print both tables for one profile."""
    buckets, inclusive, busy, skipped = read(path)
    print(f"\n### {path.name}: {busy:,} busy samples ({skipped:,} idle or start-up left out)\n")
    print("| where (self time) | share of busy samples |")
    print("|---|---|")
    for name, count in buckets.most_common():
        print(f"| {name} | {100 * count / max(busy, 1):.1f}% |")
    print("\n| function (inclusive) | share of busy samples |")
    print("|---|---|")
    for name, count in inclusive.most_common():
        print(f"| {name} | {100 * count / max(busy, 1):.1f}% |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m benchmarks.hotspots PROFILE.txt [PROFILE.txt ...]")
    for argument in sys.argv[1:]:
        report(Path(argument))
