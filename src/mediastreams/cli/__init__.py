"""The ``mediastreams`` command line.

Each subcommand lives in its own module of this package and is imported only when it runs,
so ``mediastreams --help`` stays fast. Tests call :func:`main` with a list of arguments and
read the exit code it returns.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

__all__ = ["main", "run"]

# name -> (module, attribute, one-line help). The help is repeated here so that listing the
# commands does not import them.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "call": ("mediastreams.cli.call", "call_command", "Place an emulated Twilio call to an app."),
    "convert": ("mediastreams.cli.convert", "convert_command", "Convert audio to mu-law 8 kHz."),
    "demo": (
        "mediastreams.cli.demo",
        "demo_command",
        "See it all work: the server answers an emulated call; timeline and report.",
    ),
    "inspect": (
        "mediastreams.cli.inspect",
        "inspect_command",
        "Check a frame trace and print every protocol violation.",
    ),
    "load": (
        "mediastreams.cli.load",
        "load_command",
        "Place many calls at once (a load test): live line, distributions, pictures.",
    ),
    "phone": (
        "mediastreams.cli.phone",
        "phone_command",
        "Talk to your app from the browser, through the emulator, with a live timeline.",
    ),
    "serve": (
        "mediastreams.cli.serve",
        "serve_command",
        "Answer calls: the voice webhook and the Media Stream.",
    ),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attribute, _ = entry
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mediastreams", prog_name="mediastreams")
def cli() -> None:
    """Twilio Media Streams, right by construction and testable on one machine."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="mediastreams",
            standalone_mode=False,
        )
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:  # Ctrl-C before a command could handle it
        click.echo("mediastreams: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
