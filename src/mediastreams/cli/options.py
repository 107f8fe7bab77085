"""The options more than one command takes, and what the commands do with them alike.

Each decorator declares one option, with its one help text: a command whose sentence differs
passes its own (``auth_token_option(help=...)``). Only click is imported here, so ``--help``
stays quick.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .failure import CommandFailed

if TYPE_CHECKING:
    import socket

__all__ = [
    "account_sid_option",
    "allow_module_app",
    "auth_token_option",
    "check_writable",
    "connect_to_option",
    "listen",
    "max_duration_option",
    "param_option",
    "parse_parameters",
    "port_option",
    "stream_path_option",
    "trace_parameters_option",
    "trace_payloads_option",
    "webhook_path_option",
]

F = TypeVar("F", bound=Callable[..., Any])

_EMULATED_PARAM_HELP = "A custom parameter for start (when TARGET is not a webhook)."
_SIGN_HELP = (
    "Sign the webhook and the upgrade with X-Twilio-Signature (default: $TWILIO_AUTH_TOKEN)."
)


def param_option(help: str = _EMULATED_PARAM_HELP) -> Callable[[F], F]:
    """``--param NAME=VALUE`` (repeatable), as ``params``: read it with :func:`parse_parameters`."""
    return click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help=help)


def auth_token_option(help: str = _SIGN_HELP) -> Callable[[F], F]:
    """``--auth-token TOKEN``, from ``$TWILIO_AUTH_TOKEN`` when not given."""
    return click.option("--auth-token", envvar="TWILIO_AUTH_TOKEN", metavar="TOKEN", help=help)


def _host_port(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, such as 127.0.0.1:8000")
    return host.strip("[]"), int(port)


# The options declared alike wherever a command takes them: decorators, as click's own.
account_sid_option = click.option(
    "--account-sid",
    envvar="TWILIO_ACCOUNT_SID",
    metavar="AC...",
    help="The call's AccountSid, as the app is configured (default: $TWILIO_ACCOUNT_SID, "
    "else a fresh one).",
)
"""``--account-sid AC...``, from ``$TWILIO_ACCOUNT_SID`` when not given."""
connect_to_option = click.option(
    "--connect-to",
    metavar="HOST:PORT",
    callback=_host_port,
    help="Send the requests for the public host (the webhook, and the WebSockets whatever "
    "host the stream URLs name) to HOST:PORT, as a tunnel would.",
)
"""``--connect-to HOST:PORT``, as ``connect_to``: a ``(host, port)`` pair or ``None``."""
webhook_path_option = click.option(
    "--webhook-path",
    metavar="PATH",
    help="For module:app: start with a POST to PATH (such as /incoming-call).",
)
"""``--webhook-path PATH``: where an in-process app's call starts."""
stream_path_option = click.option(
    "--stream-path",
    default="/media-stream",
    show_default=True,
    metavar="PATH",
    help="For module:app without --webhook-path: the stream's path.",
)
"""``--stream-path PATH``: an in-process app's stream, when there is no webhook."""
trace_payloads_option = click.option(
    "--trace-payloads", is_flag=True, help="Keep media payloads in the trace."
)
trace_parameters_option = click.option(
    "--trace-parameters", is_flag=True, help="Keep custom parameter values in the trace."
)


def max_duration_option(*, default_s: float, min_s: float, help: str) -> Callable[[F], F]:
    """``--max-duration SECONDS``: when a call is hung up whatever happens."""
    return click.option(
        "--max-duration",
        type=click.FloatRange(min=min_s),
        default=default_s,
        show_default=True,
        metavar="SECONDS",
        help=help,
    )


def port_option(*, default: int, help: str) -> Callable[[F], F]:
    """``--port PORT``: a TCP port to listen on, 0 for any free one."""
    return click.option(
        "--port", type=click.IntRange(0, 65535), default=default, show_default=True, help=help
    )


def parse_parameters(values: Iterable[str], option: str = "--param") -> dict[str, str]:
    """``NAME=VALUE`` options as a mapping, the last value of a name winning.

    A value may itself hold ``=`` (only the first one splits); an empty value is kept.

    Raises:
        CommandFailed: an item with no ``=`` or no name, saying how to write it.
    """
    parameters: dict[str, str] = {}
    for item in values:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise CommandFailed(f"{option} {item!r}: write it as name=value")
        parameters[name] = value
    return parameters


def check_writable(option: str, path: str | None) -> None:
    """Refuse an output path whose folder is missing or not writable, before the work starts.

    Checked first, so that a typo in a folder name does not cost a whole call.

    Raises:
        CommandFailed: naming the option, the path and what to do.
    """
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandFailed(f"{option} {path}: there is no folder {folder}; create it first")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CommandFailed(f"{option} {path}: cannot write there; choose another path")


def allow_module_app() -> None:
    """Let a ``module:app`` target be imported from the current folder, as uvicorn does."""
    if "" not in sys.path:
        sys.path.insert(0, "")


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A socket bound to ``host:port`` and listening.

    Raises:
        CommandFailed: the address cannot be had (a port in use, say), suggesting ``--port``.
    """
    from ..server import bind

    try:
        return bind(host, port, reuse_port=reuse_port)
    except OSError as error:
        raise CommandFailed(
            f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port"
        ) from None
