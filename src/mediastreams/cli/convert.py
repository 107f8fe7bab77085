"""``mediastreams convert``: any audio file to what Twilio plays, and to check by ear.

Exit codes: 0 done, 2 the input or the options are wrong (one line on stderr, no traceback).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO, cast

import click

from ..wireformat import FRAME_BYTES
from .failure import CommandFailed

# The audio stack (numpy, soxr, miniaudio) and rich are imported when a conversion runs, so
# that `--help` and a wrong option come back at once.
if TYPE_CHECKING:
    from ..audio import AudioFormat, Conversion, Encoding
    from ..audio import Progress as ProgressCallback

__all__ = ["convert_command"]

_RAW_SUFFIXES: Final = (".ulaw", ".raw", ".mulaw", ".ul")
_SUFFIXES: Final = (*_RAW_SUFFIXES, ".wav", ".b64")
# Twilio's stream SIDs: "MZ" and 32 hex digits.
_STREAM_SID: Final = re.compile(r"MZ[0-9a-fA-F]{32}")
# Below this, a conversion is over before a bar could be read.
_PROGRESS_MIN_MS: Final = 60_000


def _declared_format(
    rate: int | None, width: int | None, channels: int | None, encoding: str | None
) -> AudioFormat | None:
    from ..audio import AudioFormat

    if rate is None and width is None and channels is None and encoding is None:
        return None
    if rate is None:
        raise CommandFailed("--input-rate is needed to read raw samples")
    kind = cast("Encoding", encoding or "pcm")  # click.Choice has checked it
    default_width = 1 if kind in ("mulaw", "alaw") else 4 if kind == "float" else 2
    return AudioFormat(rate, width or default_width, channels or 1, kind)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("converting"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("convert", total=None)

        def report(done_ms: float, total_ms: float) -> None:
            bar.update(task, completed=done_ms, total=total_ms)

        yield report


def _media_frames(mulaw: bytes, stream_sid: str) -> Iterator[str]:
    from ..audio import split_frames

    # The outbound app->Twilio media message: event, streamSid and payload, nothing else.
    for frame in split_frames(mulaw):
        payload = base64.b64encode(frame).decode("ascii")
        yield json.dumps(
            {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}},
            separators=(",", ":"),
        )


def _write_frames(lines: Iterator[str], output: Path | None) -> None:
    if output is None:
        for line in lines:
            sys.stdout.write(line + "\n")
        return
    with output.open("w", encoding="ascii") as file:
        for line in lines:
            file.write(line + "\n")


def _write_output(result: Conversion, output: Path) -> str:
    from ..audio import write_wav

    suffix = output.suffix.lower()
    if suffix in _RAW_SUFFIXES:
        output.write_bytes(result.mulaw)
        return "headerless mu-law"
    if suffix == ".wav":
        write_wav(output, result.mulaw)
        return "mu-law WAV"
    output.write_text(base64.b64encode(result.mulaw).decode("ascii") + "\n", encoding="ascii")
    return "base64 of headerless mu-law"


def _summary(input_path: Path, result: Conversion, written: str, out: TextIO) -> None:
    frames = -(-len(result.mulaw) // FRAME_BYTES)
    print(
        f"input:  {input_path}: {result.container}, {result.input_format.describe()}, "
        f"{result.input_duration_ms / 1000:.3f} s",
        file=out,
    )
    action = "re-encoded" if result.reencoded else "header stripped, audio kept as is"
    print(
        f"output: {written}, 8000 Hz, mono, {result.duration_ms / 1000:.3f} s, "
        f"{len(result.mulaw):,} bytes, {frames} frames of 20 ms ({action})",
        file=out,
    )


@click.command("convert")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write: .ulaw/.raw (headerless mu-law, what Twilio plays), .wav "
    "(mu-law WAV, to listen to), .b64 (base64 text, one payload).",
)
@click.option(
    "--frames",
    is_flag=True,
    help="Print one JSON media message per 20 ms (to OUTPUT if given), for --stream-sid.",
)
@click.option("--stream-sid", help="The streamSid (MZ...) to put in the --frames messages.")
# min=1: a width or channel count of 0 would otherwise fall back to the default unnoticed.
@click.option(
    "--input-rate", type=click.IntRange(min=1), metavar="HZ", help="Raw input only: sample rate."
)
@click.option(
    "--input-width",
    type=click.IntRange(min=1),
    metavar="BYTES",
    help="Raw input only: bytes per sample (default 2 for pcm, 4 for float, 1 for mulaw/alaw).",
)
@click.option(
    "--input-channels",
    type=click.IntRange(min=1),
    metavar="N",
    help="Raw input only: interleaved channels (default 1).",
)
@click.option(
    "--input-encoding",
    type=click.Choice(["pcm", "float", "mulaw", "alaw"]),
    help="Raw input only: sample encoding (default pcm).",
)
def convert_command(
    input_path: Path,
    output: Path | None,
    frames: bool,
    stream_sid: str | None,
    input_rate: int | None,
    input_width: int | None,
    input_channels: int | None,
    input_encoding: str | None,
) -> int:
    """Convert INPUT (WAV, MP3, FLAC, Ogg/Vorbis, raw mu-law) to mu-law 8 kHz for Twilio."""
    from ..audio import convert
    from ..exceptions import AudioError

    if frames and output == Path("-"):
        output = None  # "-o -": the frames go to stdout
    try:
        if frames and not (stream_sid and _STREAM_SID.fullmatch(stream_sid)):
            raise CommandFailed(
                "--frames needs --stream-sid MZ + 32 hex digits (the streamSid from start)"
            )
        if not frames and output is None:
            raise CommandFailed("give -o OUTPUT (.ulaw, .raw, .wav or .b64) or --frames")
        if output is not None and not frames and output.suffix.lower() not in _SUFFIXES:
            raise CommandFailed(f"{output}: unknown output type; use {', '.join(_SUFFIXES)}")
        fmt = _declared_format(input_rate, input_width, input_channels, input_encoding)
        with _progress_bar(enabled=True) as report:
            result = convert(input_path, format=fmt, progress=_only_long(report))
        if frames:
            assert stream_sid is not None
            _write_frames(_media_frames(result.mulaw, stream_sid), output)
            written = f"{output or 'stdout'}: JSON media frames of mu-law"
            _summary(input_path, result, written, sys.stderr)
        else:
            assert output is not None
            written = f"{output}: {_write_output(result, output)}"
            _summary(input_path, result, written, sys.stdout)
    except BrokenPipeError:  # the reader of the frames went away (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (AudioError, OSError) as error:
        raise CommandFailed(_one_line(error)) from None
    return 0


def _only_long(report: ProgressCallback | None) -> ProgressCallback | None:
    if report is None:
        return None

    def filtered(done_ms: float, total_ms: float) -> None:
        if total_ms >= _PROGRESS_MIN_MS:
            report(done_ms, total_ms)

    return filtered


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split())
