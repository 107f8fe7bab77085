"""The floor: the least a Python asyncio server can do to carry echo calls over WebSocket.

A bare :class:`asyncio.Protocol` with just enough of RFC 6455 to be a real WebSocket server
for a real client: the upgrade handshake (``Sec-WebSocket-Accept`` computed from the client's
key), client frames unmasked (every client frame is masked, with a random key in real
clients), server frames written unmasked, ping answered, close answered. Text frames only:
fragmented frames are not reassembled (Twilio never fragments; they are ignored).

For every inbound frame that starts like Twilio's ``media`` (a bytes prefix check, no JSON
parse), it writes one outbound ``media`` frame: a prebuilt frame around the inbound payload,
copied through as base64 text, undecoded, so the load client still finds its send time in the
payload's first 12 bytes. Nothing else: no session, no marks, no pacing, no validation. What
a server on the same event loop spends beyond this per frame pair is overhead a Python stack
could in principle remove; what this spends, it cannot (one read syscall and one callback per
inbound frame, one write syscall per outbound frame).

The parsed floor (``raw-asyncio-parsed``, :func:`serve` with ``parsed=True``) is the same
protocol doing the one thing more that any server which reads Twilio's frames must do: each
media frame read with :func:`mediastreams.messages.parse` (JSON decoded with msgspec, checked,
the payload's base64 decoded) and the echo's payload encoded back to base64. Still no session,
no marks, no pacing. What it costs beyond the floor is the work a validating server cannot
leave out, whatever else it does better (the lockstep benchmark counts it:
:mod:`benchmarks.lockstep`).

Run alone: ``uv run python -m benchmarks.floor PORT`` (stops on SIGTERM or Ctrl-C).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import signal
import socket
import sys
from collections.abc import Callable
from typing import cast

try:  # a C loop over the bytes; picows and websockets unmask in C too
    from websockets.speedups import apply_mask as _c_apply_mask

    _unmask: Callable[[bytes, bytes], bytes] | None = _c_apply_mask
except ImportError:  # pragma: no cover - websockets ships a wheel with it on every platform here
    _unmask = None

HOST = "127.0.0.1"
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
MEDIA_PREFIX = b'{"event":"media"'  # Twilio writes "event" first in every frame
PAYLOAD_KEY = b'"payload":"'
OUT_PRE = ('{"event":"media","streamSid":"' + SID + '","media":{"payload":"').encode()
OUT_POST = b'"}}'


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated (RFC 6455 5.3); its own inverse."""
    if _unmask is not None:
        return _unmask(data, mask)
    n = len(data)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unmasked, final frame (servers never mask)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 1 << 16:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def upgrade_response(head: bytes) -> bytes | None:
    """The 101 answer to an upgrade request's head, or ``None`` when it has no key."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(value) + b"\r\n\r\n"
            )
    return None


_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def parsed_reply() -> Callable[[bytes], bytes | None]:
    """The parsed floor's echo of one frame: read, checked and decoded, then encoded back."""
    # Imported here: the floor itself runs without the package loaded.
    from mediastreams.exceptions import RemoteProtocolError
    from mediastreams.messages import Media, parse

    b2a_base64 = binascii.b2a_base64

    def reply(frame: bytes) -> bytes | None:
        try:
            message = parse(frame)
        except RemoteProtocolError:
            return None  # ignored, as the session ignores a bad frame
        if type(message) is not Media:
            return None
        return OUT_PRE + b2a_base64(message.payload, newline=False) + OUT_POST

    return reply


class FloorProtocol(asyncio.Protocol):
    """One connection: the handshake, then client frames in, an echo per media frame out."""

    def __init__(self, *, parsed: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.up = False
        self.reply = parsed_reply() if parsed else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance() check: uvloop's transports do not derive from asyncio's.
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        if not self.up:
            data = self._handshake(data)
            if not data:
                return
        self.buffer = self._frames(data)

    def _handshake(self, data: bytes) -> bytes:
        assert self.transport is not None
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            self.buffer = data
            return b""
        response = upgrade_response(head)
        if response is None:
            self.transport.write(_BAD_REQUEST)
            self.transport.close()
            return b""
        self.transport.write(response)
        self.up = True
        return rest

    def _frames(self, data: bytes) -> bytes:
        """Handle every whole frame in ``data``; return the incomplete tail."""
        transport = self.transport
        assert transport is not None
        end, size = 0, len(data)
        reply = self.reply
        while size - end >= 6:  # the shortest masked frame: 2 header bytes and the key
            first, second = data[end], data[end + 1]
            length, at = second & 0x7F, end + 2
            if length == 126:
                length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
            elif length == 127:
                if size - at < 8:
                    break
                length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
            if at + 4 + length > size:
                break
            payload = apply_mask(data[at + 4 : at + 4 + length], data[at : at + 4])
            end = at + 4 + length
            opcode = first & 0x0F
            if opcode == OP_TEXT and reply is not None:
                body = reply(payload)
                if body is not None:
                    transport.write(server_frame(body))
            elif opcode == OP_TEXT:
                start = payload.rfind(PAYLOAD_KEY) if payload.startswith(MEDIA_PREFIX) else -1
                if start >= 0:
                    start += len(PAYLOAD_KEY)
                    body = OUT_PRE + payload[start : payload.find(b'"', start)] + OUT_POST
                    transport.write(server_frame(body))
            elif opcode == OP_PING:
                transport.write(server_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                transport.write(server_frame(payload[:2], OP_CLOSE))  # echo the code
                transport.close()
                return b""
        return data[end:]


async def serve(sock: socket.socket, stop: asyncio.Event, *, parsed: bool = False) -> None:
    """Serve on a listening socket until ``stop`` is set; then close every connection.

    Args:
        parsed: the parsed floor (see the module's docstring) instead of the floor.
    """
    loop = asyncio.get_running_loop()
    connections: list[FloorProtocol] = []

    def connection() -> FloorProtocol:
        protocol = FloorProtocol(parsed=parsed)
        connections.append(protocol)  # a benchmark's connections: bounded, kept to the end
        return protocol

    server = await loop.create_server(connection, sock=sock, backlog=2048)
    async with server:
        await stop.wait()
        for protocol in connections:
            if protocol.transport is not None:
                protocol.transport.close()
        await asyncio.sleep(0)  # their connection_lost callbacks run


def run(port: int) -> None:
    """Serve on ``HOST:port`` until SIGTERM or SIGINT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(2048)
    sock.setblocking(False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(sock, stop)

    asyncio.run(main())


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m benchmarks.floor PORT")
    run(int(sys.argv[1]))
