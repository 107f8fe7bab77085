"""CommandFailed: the one way a command stops with a message."""

from __future__ import annotations

import click
import pytest

from mediastreams.cli.failure import CommandFailed


@click.group()
def tool() -> None:
    """A group, as the mediastreams command line is one."""


@tool.command()
@click.option("--interrupted", is_flag=True)
def sub(interrupted: bool) -> None:
    if interrupted:
        raise Interrupted("stopped")
    raise CommandFailed("--thing x: write it as name=value")


class Interrupted(CommandFailed):
    exit_code = 130


def test_one_line_named_after_the_command_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        tool.main(["sub"], prog_name="mediastreams")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "mediastreams sub: --thing x: write it as name=value\n"


def test_a_subclass_sets_its_own_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        tool.main(["sub", "--interrupted"], prog_name="mediastreams")
    assert stop.value.code == 130
    assert capsys.readouterr().err == "mediastreams sub: stopped\n"


def test_outside_a_command_it_names_the_program(capsys: pytest.CaptureFixture[str]) -> None:
    CommandFailed("no context").show()
    assert capsys.readouterr().err == "mediastreams: no context\n"
