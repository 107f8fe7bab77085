"""``mediastreams convert``: outputs by suffix, JSON frames, and one-line errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from audiogen import chirp, encoded, to_int16
from mediastreams.audio import FRAME_BYTES, MULAW_8K, AudioFormat, parse_wav, to_mulaw, wav_bytes
from mediastreams.cli import main

SID = "MZ" + "0123456789abcdef" * 2


@pytest.fixture
def mp3(tmp_path: Path) -> Path:
    path = tmp_path / "prompt.mp3"
    path.write_bytes(
        encoded(np.stack([chirp(44100, 1.0)] * 2, axis=1), 44100, "MP3", "MPEG_LAYER_III")
    )
    return path


@pytest.mark.parametrize("suffix", [".ulaw", ".raw"])
def test_headerless_output(mp3: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    output = mp3.with_suffix(suffix)
    assert main(["convert", str(mp3), "-o", str(output)]) == 0
    assert output.read_bytes() == to_mulaw(mp3)
    said = capsys.readouterr().out
    assert "MP3, 16-bit PCM, 44100 Hz, stereo" in said
    assert "8000 Hz, mono" in said
    assert "re-encoded" in said


def test_wav_output_is_mulaw_8k(mp3: Path) -> None:
    output = mp3.with_suffix(".wav")
    assert main(["convert", str(mp3), "-o", str(output)]) == 0
    wav = parse_wav(output.read_bytes())
    assert wav.format == MULAW_8K
    assert wav.data == to_mulaw(mp3)


def test_b64_output_is_one_payload(mp3: Path) -> None:
    output = mp3.with_suffix(".b64")
    assert main(["convert", str(mp3), "-o", str(output)]) == 0
    assert base64.b64decode(output.read_text().strip(), validate=True) == to_mulaw(mp3)


def test_mulaw_wav_input_is_only_stripped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = bytes(range(256)) * 10
    source = tmp_path / "in.wav"
    source.write_bytes(wav_bytes(payload))
    assert main(["convert", str(source), "-o", str(tmp_path / "out.ulaw")]) == 0
    assert (tmp_path / "out.ulaw").read_bytes() == payload
    assert "header stripped" in capsys.readouterr().out


def test_frames_to_dash_go_to_stdout(
    mp3: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(mp3), "--frames", "--stream-sid", SID, "-o", "-"]) == 0
    assert not (tmp_path / "-").exists()
    assert capsys.readouterr().out.startswith('{"event":"media"')


def test_frames_are_outbound_media_messages(mp3: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(mp3), "--frames", "--stream-sid", SID]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    payload = to_mulaw(mp3)
    assert len(lines) == -(-len(payload) // FRAME_BYTES)
    for line in lines:
        message = json.loads(line)
        assert message.keys() == {"event", "streamSid", "media"}
        assert message["event"] == "media"
        assert message["streamSid"] == SID
        assert message["media"].keys() == {"payload"}
        assert len(base64.b64decode(message["media"]["payload"])) == FRAME_BYTES
    joined = b"".join(base64.b64decode(json.loads(line)["media"]["payload"]) for line in lines)
    assert joined[: len(payload)] == payload
    assert set(joined[len(payload) :]) <= {0xFF}  # the last frame is padded with silence
    assert "MP3" in captured.err  # the summary stays off stdout


def test_frames_to_a_file(mp3: Path, tmp_path: Path) -> None:
    output = tmp_path / "frames.jsonl"
    assert main(["convert", str(mp3), "--frames", "--stream-sid", SID, "-o", str(output)]) == 0
    assert json.loads(output.read_text().splitlines()[0])["streamSid"] == SID


def test_raw_pcm_input_with_a_declared_format(tmp_path: Path) -> None:
    pcm = to_int16(chirp(24000, 0.5)).tobytes()
    source = tmp_path / "tts.pcm"
    source.write_bytes(pcm)
    output = tmp_path / "out.ulaw"
    assert main(["convert", str(source), "-o", str(output), "--input-rate", "24000"]) == 0
    assert output.read_bytes() == to_mulaw(pcm, format=AudioFormat(24000))


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty.mp3: is empty"),
        (b"not audio at all, just some text", "unknown audio format"),
        (wav_bytes(b"\x00" * 1000)[:-500], "truncated"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    source = tmp_path / "empty.mp3"
    source.write_bytes(content)
    assert main(["convert", str(source), "-o", str(tmp_path / "x.ulaw")]) == 2
    line = error_line(capsys)
    assert line.startswith("mediastreams convert: ")
    assert message in line
    assert not (tmp_path / "x.ulaw").exists()  # nothing partial is left behind


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.mp3", "-o", "x.ulaw"], "missing.mp3: cannot read"),
        (["{mp3}", "-o", "x.mp4"], "unknown output type"),
        (["{mp3}"], "give -o OUTPUT"),
        (["{mp3}", "--frames"], "--stream-sid"),
        (["{mp3}", "--frames", "--stream-sid", "CA123"], "--stream-sid"),
        (["{mp3}", "-o", "x.ulaw", "--input-width", "2"], "--input-rate is needed"),
        (["{mp3}", "-o", "x.ulaw", "--input-rate", "8000", "--input-width", "5"], "width"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    mp3: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    arguments = [a.replace("{mp3}", str(mp3)) for a in arguments]
    assert main(["convert", *arguments]) == 2
    assert message in error_line(capsys)


@pytest.mark.parametrize("option", ["--input-rate", "--input-width", "--input-channels"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_raw_format_options_must_be_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    source = tmp_path / "in.ulaw"
    source.write_bytes(b"\xff" * 160)
    output = tmp_path / "out.ulaw"
    declared = ["--input-rate", "8000"] if option != "--input-rate" else []
    arguments = ["convert", str(source), "-o", str(output), *declared, f"{option}={value}"]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"Invalid value for '{option}'" in err
    assert not output.exists()


def test_unknown_format_says_how_to_declare_raw_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "tts.bin"
    source.write_bytes(b"no known signature here" * 20)
    assert main(["convert", str(source), "-o", str(tmp_path / "x.ulaw")]) == 2
    line = error_line(capsys)
    assert "unknown audio format" in line
    assert "--input-rate" in line


def test_refused_options_name_the_command_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "x.raw"
    source.write_bytes(b"\x00" * 100)
    assert main(["convert", str(source), "--input-width", "2", "-o", "y.ulaw"]) == 2
    assert error_line(capsys) == "mediastreams convert: --input-rate is needed to read raw samples"
