"""The client end of a WebSocket, as bytes: the upgrade request, masked frames, frame reading.

The load generator writes its own frames instead of going through a WebSocket library, so
that a frame costs one template fill and one write (RFC 6455,
https://www.rfc-editor.org/rfc/rfc6455). Client frames must be masked (5.3); the key here is
four zero bytes, which makes the XOR a no-op: a valid key that a server cannot tell from a
random one, and no per-byte work. Server frames arrive unmasked; :func:`read_frames` splits a
buffer into them without copying more than each frame's payload.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Upgrade",
    "client_frame",
    "close_code",
    "read_frames",
    "text_frame",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
_ZERO_KEY = b"\0\0\0\0"
# The header of a final, masked text frame, by payload length: media frames are 126-1023
# bytes long, and each length's header is built once.
_TEXT_HEADS = [
    bytes((0x81, 0x80 | n)) + _ZERO_KEY
    if n < 126
    else b"\x81\xfe" + n.to_bytes(2, "big") + _ZERO_KEY
    for n in range(1024)
]


def text_frame(payload: bytes) -> bytes:
    """A final, masked text frame (the hot path: one list index and one concatenation)."""
    n = len(payload)
    if n < 1024:
        return _TEXT_HEADS[n] + payload
    return client_frame(payload)


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final frame of any opcode and length, masked with the zero key."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + _ZERO_KEY + payload


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload (``None``: the frame gave none)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


def read_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split ``buffer`` into whole server frames: ``(first byte, payload)`` each, and the rest.

    The first byte holds FIN (``0x80``) and the opcode (``& 0x0F``). A masked server frame
    (which RFC 6455 5.1 forbids) is unmasked all the same.
    """
    frames = []
    offset, size = 0, len(buffer)
    while size - offset >= 2:
        length = buffer[offset + 1] & 0x7F
        at = offset + 2
        if length == 126:
            if size - at < 2:
                break
            length, at = int.from_bytes(buffer[at : at + 2], "big"), at + 2
        elif length == 127:
            if size - at < 8:
                break
            length, at = int.from_bytes(buffer[at : at + 8], "big"), at + 8
        masked = buffer[offset + 1] & 0x80
        end = at + (4 if masked else 0) + length
        if end > size:
            break
        payload = _unmask(buffer[at + 4 : end], buffer[at : at + 4]) if masked else buffer[at:end]
        frames.append((buffer[offset], payload))
        offset = end
    return frames, buffer[offset:]


def _unmask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


class Upgrade:
    """One WebSocket upgrade: the request to write, and the check of the server's answer.

    Args:
        host: the ``Host`` header (with the port when it is not the scheme's default).
        path: the request target, query included.
        headers: more headers, such as Twilio's ``User-Agent`` and ``X-Twilio-Signature``.
    """

    def __init__(self, host: str, path: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    def check(self, head: bytes) -> str | None:
        """What is wrong with the server's answer (its head, up to the blank line), or ``None``.

        The answer must be ``101`` with the ``Sec-WebSocket-Accept`` this request's key asks
        for (RFC 6455 4.1).
        """
        status_line, _, rest = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"101":
            return status_line.decode("latin-1")[:200]
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                if value.strip() == self._accept:
                    return None
                return "101, but Sec-WebSocket-Accept does not match the key"
        return "101, but no Sec-WebSocket-Accept"

    @staticmethod
    def status(problem: str) -> int | None:
        """The HTTP status in :meth:`check`'s answer, when it was not 101."""
        parts = problem.split(" ", 2)
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
