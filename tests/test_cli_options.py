"""Option values shared by the commands."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mediastreams.cli import main
from mediastreams.cli.failure import CommandFailed
from mediastreams.cli.options import check_writable, connect_to_option, parse_parameters


def test_name_value_pairs_split_at_the_first_equals_sign() -> None:
    assert parse_parameters(["tenant=acme", "query=a=b", "empty="]) == {
        "tenant": "acme",
        "query": "a=b",
        "empty": "",
    }
    assert parse_parameters(["a=1", "a=2"]) == {"a": "2"}
    assert parse_parameters([]) == {}


@pytest.mark.parametrize("item", ["novalue", "=value", ""])
def test_an_item_without_a_name_or_an_equals_sign_is_refused(item: str) -> None:
    with pytest.raises(CommandFailed) as refused:
        parse_parameters(["ok=1", item], option="--param")
    assert refused.value.message == f"--param {item!r}: write it as name=value"


def test_an_output_in_a_missing_folder_or_a_read_only_file_is_refused(tmp_path: Path) -> None:
    check_writable("--html", None)
    check_writable("--html", str(tmp_path / "new.html"))
    missing = tmp_path / "no-such-folder" / "out.html"
    with pytest.raises(CommandFailed) as refused:
        check_writable("--html", str(missing))
    assert refused.value.message == (
        f"--html {missing}: there is no folder {missing.parent}; create it first"
    )
    read_only = tmp_path / "read-only.html"
    read_only.write_text("")
    read_only.chmod(0o444)
    if os.access(read_only, os.W_OK):  # root writes anyway: nothing to refuse
        return
    with pytest.raises(CommandFailed, match="cannot write there; choose another path"):
        check_writable("--html", str(read_only))


@pytest.mark.parametrize("command", ["phone", "demo"])  # serve: test_cli_serve
def test_a_port_in_use_suggests_another_port(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = {
            "phone": ["ws://127.0.0.1:1/", "--no-browser"],
            "demo": ["--out", str(tmp_path / "demo")],
        }
        assert main([command, "--port", str(port), *args[command]]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith(f"mediastreams {command}: cannot listen on 127.0.0.1:{port}: ")
    assert err.rstrip().endswith("; choose another --port")


def test_connect_to_is_read_as_host_and_port() -> None:
    @click.command()
    @connect_to_option
    def show(connect_to: tuple[str, int] | None) -> None:
        click.echo(repr(connect_to))

    runner = CliRunner()
    assert runner.invoke(show, ["--connect-to", "[::1]:8000"]).output == "('::1', 8000)\n"
    assert runner.invoke(show, []).output == "None\n"
    refused = runner.invoke(show, ["--connect-to", "127.0.0.1:0"])
    assert refused.exit_code == 2
    assert "Invalid value for '--connect-to': '127.0.0.1:0': expected HOST:PORT" in refused.output
