"""File signatures, shared by the payload check and the audio decoder."""

from __future__ import annotations

import struct

import pytest

from mediastreams.containers import (
    HEADER_FIRST_BYTES,
    Container,
    container_format,
    has_id3_tag,
    is_mpeg_stream,
    mpeg_frame_bytes,
    sniff_container,
)

# MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes a frame.
MP3_FRAME = b"\xff\xfb\x90\x00" + bytes(413)
# MPEG-1 layer I, 32 kbit/s, 32 kHz: (12 * 32000 // 32000) * 4 = 48 bytes a frame.
MP1_FRAME = b"\xff\xff\x18\x00" + bytes(44)


def wav_header(magic: bytes = b"RIFF") -> bytes:
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    return magic + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<I", 16) + fmt


SIGNED = [
    (wav_header(), Container.WAV, "WAV"),
    (wav_header(b"RF64"), Container.RF64, "WAV"),
    (b"ID3\x04\x00" + bytes(20), Container.MP3, "MP3 (ID3)"),
    (MP3_FRAME * 2, Container.MP3, "MP3"),
    (b"OggS\x00\x02" + bytes(30), Container.OGG, "Ogg"),
    (b"fLaC\x00\x00\x00\x22" + bytes(30), Container.FLAC, "FLAC"),
]


@pytest.mark.parametrize(("data", "container", "label"), SIGNED)
def test_each_signature_is_named_by_both_readers(
    data: bytes, container: Container, label: str
) -> None:
    assert sniff_container(data) is container
    assert container_format(data) == label


@pytest.mark.parametrize(("data", "container", "label"), SIGNED)
def test_every_signature_starts_with_a_byte_of_the_pre_check(
    data: bytes, container: Container, label: str
) -> None:
    # The hot paths skip container_format for any other first byte: a signature that did
    # not start with one of these would be missed there.
    assert data[0] in HEADER_FIRST_BYTES


def test_containers_compare_as_their_names() -> None:
    assert Container.OGG == "Ogg" and f"{Container.MP3}" == "MP3"


def test_layer_one_is_a_file_but_not_a_payload() -> None:
    data = MP1_FRAME * 2
    assert mpeg_frame_bytes(data) == 48
    assert is_mpeg_stream(data)
    assert sniff_container(data) is Container.MP3
    assert not is_mpeg_stream(data, layers=(2, 3))
    assert container_format(data) is None


def test_one_frame_header_is_not_a_stream() -> None:
    assert mpeg_frame_bytes(MP3_FRAME) == 417
    assert not is_mpeg_stream(MP3_FRAME + b"\xff\xfb\x90")  # the second header is cut short
    assert is_mpeg_stream(MP3_FRAME + b"\xff\xfb\x90\x00")


@pytest.mark.parametrize("data", [b"", b"\xff" * 400, b"RIFF", b"ID3", b"ID3\x0a" + bytes(9)])
def test_what_is_no_file(data: bytes) -> None:
    assert sniff_container(data) is None
    assert container_format(data) is None


def test_id3_needs_a_version_byte_below_ten() -> None:
    assert has_id3_tag(b"ID3\x03") and not has_id3_tag(b"ID3\x0a") and not has_id3_tag(b"ID3")
