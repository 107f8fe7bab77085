"""The one way a command stops on bad input or a failure: one line, no traceback, exit 2.

Every command raises :class:`CommandFailed` with a message that says what is wrong and how to
fix it; the line names the command (``mediastreams serve: --param 'x': write it as
name=value``), as shells and compilers name themselves in theirs.
"""

from __future__ import annotations

from typing import IO, Any

import click

__all__ = ["CommandFailed", "Interrupted"]


class CommandFailed(click.ClickException):
    """Stop the command: ``message`` on one line of stderr, after the command's name.

    Raised inside a command, it remembers which one (``mediastreams call``); the exit code is
    2, as for a usage error, unless a subclass says otherwise.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        context = click.get_current_context(silent=True)
        self.command_path = context.command_path if context is not None else "mediastreams"

    def show(self, file: IO[Any] | None = None) -> None:
        """Write the line to ``file`` (default: stderr)."""
        click.echo(f"{self.command_path}: {self.message}", file=file, err=file is None)


class Interrupted(CommandFailed):
    """Stop the command after Ctrl-C: exit code 130 (128 + SIGINT), as shells report it."""

    exit_code = 130
