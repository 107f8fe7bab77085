"""What a handler must be: ``ServerConfig`` and ``serve --app`` refuse anything but an async
callable of one argument, with one clear line that says what to write instead."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mediastreams.cli import main
from mediastreams.server import ServerConfig, echo_handler


async def good(stream: Any) -> None:
    pass


async def with_default(stream: Any, greeting: str = "hi") -> None:
    pass


async def two(stream: Any, extra: Any) -> None:
    pass


async def none() -> None:
    pass


def sync(stream: Any) -> None:
    pass


class Bot:
    async def __call__(self, stream: Any) -> None:
        pass


class SyncBot:
    def __call__(self, stream: Any) -> None:
        pass


@pytest.mark.parametrize(
    "handler",
    [good, with_default, echo_handler, Bot(), functools.partial(two, extra=1)],
    ids=["function", "default-argument", "echo", "async-call", "partial"],
)
def test_async_callables_of_one_argument_are_taken(handler: Any) -> None:
    assert ServerConfig(handler=handler).handler is handler


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (
            sync,
            "the handler sync is not async: it cannot await the stream; write it as "
            "`async def sync(stream): ...`",
        ),
        (SyncBot(), "the handler SyncBot is not async"),
        (Bot, "the handler Bot is not async"),  # the class, not an instance
        (
            none,
            "the handler none() must take one argument, the stream; write it as "
            "`async def none(stream): ...`",
        ),
        (two, "the handler two(stream, extra) must take one argument"),
        (functools.partial(two, 1, 2), "must take one argument"),
        ("handler", "the handler must be an async function, not 'handler'"),
    ],
    ids=["sync", "sync-call", "class", "no-argument", "two", "partial-full", "not-callable"],
)
def test_anything_else_is_refused_with_what_to_write(handler: Any, message: str) -> None:
    with pytest.raises(TypeError) as refused:
        ServerConfig(handler=handler)
    assert message in str(refused.value)


@pytest.fixture
def handlers_module() -> Iterator[str]:
    module = type(sys)("handlers_for_serve")
    module.sync = sync  # type: ignore[attr-defined]
    module.none = none  # type: ignore[attr-defined]
    module.two = two  # type: ignore[attr-defined]
    sys.modules["handlers_for_serve"] = module
    yield "handlers_for_serve"
    del sys.modules["handlers_for_serve"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sync", "is not async"),
        ("none", "must take one argument, the stream"),
        ("two", "must take one argument, the stream"),
    ],
)
def test_serve_app_refuses_a_bad_handler_in_one_line(
    handlers_module: str, name: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--app", f"{handlers_module}:{name}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mediastreams serve: --app {handlers_module}:{name}: the handler {name}")
    assert message in err and f"async def {name}(stream)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_limits_go_in_limits_not_stream_options() -> None:
    with pytest.raises(ValueError, match=r"ServerConfig\(limits=...\)"):
        ServerConfig(handler=good, stream_options={"limits": None})
