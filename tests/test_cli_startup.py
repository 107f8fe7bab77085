"""`--help` and option errors load no heavy module: each command parses its options first.

What is measured here is what gets imported, never how long it takes (that is
`python -m benchmarks.startup`'s job).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What a command imports only once it runs: the audio stack, the emulator, the servers, the
# terminal UI, msgspec and asyncio (the protocol and the session).
HEAVY = (
    "numpy",
    "soxr",
    "miniaudio",
    "httpx",
    "rich",
    "starlette",
    "uvicorn",
    "websockets",
    "picows",
    "msgspec",
    "asyncio",
    "mediastreams.audio",
    "mediastreams.emulator",
    "mediastreams.server",
    "mediastreams.session",
)

PROBE = """
import contextlib, io, json, sys
from mediastreams.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded(*argv: str) -> tuple[int, set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    return result["code"], set(result["modules"])


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["call", "--help"], 0),
        (["serve", "--help"], 0),
        (["convert", "--help"], 0),
        (["call", "--no-such-option"], 2),
        (["serve", "--backend", "tomcat"], 2),
        (["serve", "--port", "many"], 2),
        (["convert"], 2),
    ],
)
def test_help_and_option_errors_import_nothing_heavy(argv: list[str], code: int) -> None:
    exit_code, modules = loaded(*argv)
    assert exit_code == code
    assert [name for name in HEAVY if name in modules] == []


def test_demo_help_leaves_the_emulator_and_rich_out() -> None:
    _, modules = loaded("demo", "--help")
    assert not {"rich", "mediastreams.emulator", "mediastreams.server", "numpy"} & modules


def test_importing_mediastreams_loads_names_on_first_use() -> None:
    code = (
        "import sys, mediastreams\n"
        "before = 'mediastreams.messages' in sys.modules\n"
        "stream = mediastreams.MediaStream\n"
        "print(before, 'mediastreams.session' in sys.modules, mediastreams.messages.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "mediastreams.messages"]


def test_the_server_runs_on_the_backends_the_command_line_offers() -> None:
    from mediastreams import backends, server

    assert server.BACKENDS == backends.BACKENDS
