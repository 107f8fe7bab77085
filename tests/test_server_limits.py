"""Hostile peers against real servers on 127.0.0.1, on every backend: each limit holds.

Slow and idle sockets are closed after the header timeout, the connection cap answers 503,
pings keep a live peer and drop a dead one, text that is not UTF-8 is closed with 1007,
duplicate signatures get 403, replayed webhooks mint no new token, and what a peer sends is
escaped in the log. Every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from fake_twilio import TwilioClient
from mediastreams.limits import Limits
from mediastreams.security import StreamTokens
from mediastreams.server import (
    BACKENDS,
    TOKEN_PARAMETER,
    ServerConfig,
    echo_handler,
    play_handler,
)
from mediastreams.twiml import parse_twiml
from serving import running
from waiting import DEADLINE_S

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "test-auth-token"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


class RawClient:
    """A client that writes bytes as it likes: what no well-behaved client does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pings = 0

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def upgrade(self, path: str = "/media-stream", extra: str = "") -> bytes:
        """Send a WebSocket upgrade; return the status line of the answer."""
        key = base64.b64encode(os.urandom(16)).decode()
        await self.send(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        return head.split(b"\r\n", 1)[0]

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        head = bytes([0x80 | opcode])
        if length < 126:
            head += bytes([0x80 | length])
        else:
            head += bytes([0x80 | 126]) + struct.pack("!H", length)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        await self.send(head + mask + masked)

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def next_control(self, *, answer_pings: bool) -> tuple[int, bytes]:
        """The next close frame or the end of the socket (opcode 0), counting pings."""
        while True:
            try:
                opcode, payload = await self.read_frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                return 0, b""
            if opcode == OP_PING:
                self.pings += 1
                if answer_pings:
                    await self.send_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                return opcode, payload

    async def wait_closed(self) -> None:
        """Until the server closes or resets the socket."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass

    def close(self) -> None:
        self.writer.close()


def sign(url: str) -> str:
    digest = hmac.new(AUTH_TOKEN.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def token_of(twiml: str) -> str:
    (connect,) = parse_twiml(twiml).verbs
    (parameter,) = connect.stream.parameters  # type: ignore[attr-defined]
    assert parameter.name == TOKEN_PARAMETER
    return str(parameter.value)


def lines(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


# --- timeouts ------------------------------------------------------------------------------------

# Only the header deadline is short, so only it can close these sockets within DEADLINE_S.
HEADER_LIMITS = Limits(header_timeout_s=1.0, handshake_timeout_s=60.0, start_timeout_s=60.0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_idle_socket_is_closed_after_the_header_timeout(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "mediastreams")
    config = ServerConfig(handler=echo_handler, limits=HEADER_LIMITS)
    async with running(config, backend) as port:
        idle = [await RawClient.connect(port) for _ in range(20)]
        async with asyncio.timeout(DEADLINE_S):
            await asyncio.gather(*(client.wait_closed() for client in idle))
        for client in idle:
            client.close()
        async with httpx.AsyncClient(timeout=DEADLINE_S) as http:  # and the server still answers
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    assert lines(caplog, "no complete request within 1 s")
    assert len(lines(caplog, "no complete request")) <= 5  # 20 sockets, a line a second


@pytest.mark.parametrize("backend", BACKENDS)
async def test_slowloris_is_closed_after_the_header_timeout(backend: str) -> None:
    config = ServerConfig(handler=echo_handler, limits=HEADER_LIMITS)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400
    async with running(config, backend) as port:
        slow = await RawClient.connect(port)
        sent = 0
        async with asyncio.timeout(DEADLINE_S):  # the whole head would take 100 s
            try:
                while sent < len(head):
                    await slow.send(head[sent : sent + 1])
                    sent += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.25):
                            if await slow.reader.read(1) == b"":
                                break  # closed by the server
            except ConnectionError:
                pass  # reset by the server
        slow.close()
    assert sent < len(head)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", ["/incoming-call", "/healthz"])
async def test_each_http_answer_closes_its_connection(backend: str, path: str) -> None:
    # Then the header deadline bounds every request, and no kept-alive connection is cut.
    config = ServerConfig(handler=echo_handler, limits=Limits(header_timeout_s=60.0))
    async with running(config, backend) as port:
        client = await RawClient.connect(port)
        await client.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        async with asyncio.timeout(DEADLINE_S):
            answer = await client.reader.read()  # to the end: the server closed
        client.close()
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"\r\nconnection: close" in head


# --- the connection cap --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_connection_cap_answers_503(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    config = ServerConfig(handler=echo_handler, limits=Limits(max_connections=2))
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as http:
        url = f"http://127.0.0.1:{port}/healthz"
        held: list[RawClient] = []
        refused = None
        for _ in range(6):  # the probe of running() may still hold a slot for a moment
            held.append(await RawClient.connect(port))
            await held[-1].send(b"GET /healthz HTTP/1.1\r\n")  # and never finishes
            reply = await http.get(url, headers={"Connection": "close"})
            if reply.status_code == 503:
                refused = reply
                break
        assert refused is not None
        assert len(held) <= 3
        assert refused.text == "server busy: too many connections, try again\n"
        assert refused.headers["retry-after"] == "1"
        for _ in range(30):  # more refusals: still one log line a second at most
            reply = await http.get(url, headers={"Connection": "close"})
            assert reply.status_code == 503
        for client in held:
            client.close()
        async with asyncio.timeout(DEADLINE_S):  # slots come back as the sockets close
            while (await http.get(url, headers={"Connection": "close"})).status_code != 200:
                await asyncio.sleep(0.05)
    elapsed_s = time.monotonic() - started
    refusals = lines(caplog, "with HTTP 503")
    assert refusals and "Limits.max_connections: 2" in refusals[0]
    assert len(refusals) <= elapsed_s + 2
    assert "Traceback" not in caplog.text


# --- pings ---------------------------------------------------------------------------------------

# A start timeout of a minute: only a ping can end these sockets. The pong comes from this
# process's own loop, so a busy machine delays it: a second at least (picows waits for a pong
# no longer than the interval between pings).
PING_LIMITS = Limits(ping_interval_s=1.0, ping_timeout_s=5.0, start_timeout_s=60.0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pings_keep_a_silent_live_peer(backend: str) -> None:
    config = ServerConfig(handler=echo_handler, limits=PING_LIMITS)
    async with running(config, backend) as port:
        client = await RawClient.connect(port)
        assert await client.upgrade() == b"HTTP/1.1 101 Switching Protocols"
        watcher = asyncio.create_task(client.next_control(answer_pings=True))
        async with asyncio.timeout(DEADLINE_S):  # 3 pings: 3 ping timeouts survived
            while client.pings < 3 and not watcher.done():
                await asyncio.sleep(0.05)
        assert not watcher.done(), f"closed after {client.pings} pings"
        watcher.cancel()
        client.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pings_close_a_dead_peer(backend: str) -> None:
    config = ServerConfig(handler=echo_handler, limits=PING_LIMITS)
    async with running(config, backend) as port:
        client = await RawClient.connect(port)
        assert await client.upgrade() == b"HTTP/1.1 101 Switching Protocols"
        async with asyncio.timeout(DEADLINE_S):  # the stream's own start timeout is 60 s
            opcode, _ = await client.next_control(answer_pings=False)
        assert opcode in (OP_CLOSE, 0)
        assert client.pings >= 1
        client.close()


# --- what a peer sends ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_text_that_is_not_utf8_is_closed_with_1007(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(ServerConfig(handler=echo_handler), backend) as port:
        client = await RawClient.connect(port)
        assert await client.upgrade() == b"HTTP/1.1 101 Switching Protocols"
        await client.send_frame(OP_TEXT, b'{"event":"connected"}\xff')
        async with asyncio.timeout(DEADLINE_S):
            opcode, payload = await client.next_control(answer_pings=True)
        client.close()
    assert opcode == OP_CLOSE
    assert struct.unpack("!H", payload[:2])[0] == 1007
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_peer_address_is_logged(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    config = ServerConfig(handler=echo_handler, limits=Limits(start_timeout_s=0.1))
    async with running(config, backend) as port:
        client = await RawClient.connect(port)
        local_port = client.writer.get_extra_info("sockname")[1]
        assert await client.upgrade() == b"HTTP/1.1 101 Switching Protocols"
        async with asyncio.timeout(DEADLINE_S):  # no start: the stream gives up
            await client.next_control(answer_pings=True)
        client.close()
    assert lines(caplog, f"stream from 127.0.0.1:{local_port} did not start")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_signature_headers_get_403(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServerConfig(
        handler=echo_handler, public_url="https://abc.example", auth_token=AUTH_TOKEN
    )
    webhook_signature = sign("https://abc.example/incoming-call?CallSid=CA1")
    upgrade_signature = sign("wss://abc.example/media-stream")
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as http:
        url = f"http://127.0.0.1:{port}/incoming-call?CallSid=CA1"
        one = [("X-Twilio-Signature", webhook_signature)]
        assert (await http.get(url, headers=one)).status_code == 200
        assert (await http.get(url, headers=one * 2)).status_code == 403
        client = await RawClient.connect(port)
        status = await client.upgrade(extra=f"X-Twilio-Signature: {upgrade_signature}\r\n" * 2)
        client.close()
    assert status.startswith(b"HTTP/1.1 403")
    assert len(lines(caplog, "2 X-Twilio-Signature headers")) == 2
    assert "Traceback" not in caplog.text


# --- stream tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_replayed_webhooks_mint_no_new_token(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServerConfig(
        handler=play_handler(b"\x01" * 160, hangup_after_play=True), stream_tokens=StreamTokens()
    )
    close = {"Connection": "close"}
    async with running(config, backend) as port, httpx.AsyncClient(headers=close) as http:
        webhook = f"http://127.0.0.1:{port}/incoming-call?CallSid=CA1"
        replies = [await http.get(webhook) for _ in range(200)]
        assert {reply.status_code for reply in replies} == {200}
        (token,) = {token_of(reply.text) for reply in replies}  # one token for the call
        url = f"ws://127.0.0.1:{port}/media-stream"
        parameters = {TOKEN_PARAMETER: token}
        async with TwilioClient(url, call_sid="CA1", custom_parameters=parameters) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: False)
        assert bytes(twilio.heard) == b"\x01" * 160
        started = time.monotonic()
        for _ in range(200):  # the stream started: a replay now gets nothing
            reply = await http.get(webhook)
            assert reply.status_code == 409
            assert TOKEN_PARAMETER not in reply.text
        elapsed_s = time.monotonic() - started
    refusals = lines(caplog, "replayed webhook")
    assert 1 <= len(refusals) <= elapsed_s + 2  # a line a second at most
    assert "for call CA1 from 127.0.0.1:" in refusals[0]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_flood_of_webhooks_is_refused_and_evicts_no_token(backend: str) -> None:
    tokens = StreamTokens(max_pending=5)
    config = ServerConfig(
        handler=play_handler(b"\x01" * 160, hangup_after_play=True), stream_tokens=tokens
    )
    close = {"Connection": "close"}
    async with running(config, backend) as port, httpx.AsyncClient(headers=close) as http:
        webhook = f"http://127.0.0.1:{port}/incoming-call?CallSid="
        first = token_of((await http.get(webhook + "CA1")).text)
        for n in range(2, 6):
            assert (await http.get(webhook + f"CA{n}")).status_code == 200
        for n in range(6, 200):  # invented CallSids: refused, never evicting
            assert (await http.get(webhook + f"CA{n}")).status_code == 503
        url = f"ws://127.0.0.1:{port}/media-stream"
        parameters = {TOKEN_PARAMETER: first}
        async with TwilioClient(url, call_sid="CA1", custom_parameters=parameters) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: False)
        assert bytes(twilio.heard) == b"\x01" * 160


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_newline_in_a_call_sid_is_escaped_in_the_log(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    config = ServerConfig(handler=echo_handler, stream_tokens=StreamTokens(clock=clock))
    forged = "CA1\n2025-01-01 00:00:00 INFO mediastreams.server all good"
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as http:
        webhook = f"http://127.0.0.1:{port}/incoming-call?CallSid={quote(forged)}"
        assert (await http.get(webhook)).status_code == 200
        clock.now += 3600  # the token expired unused: the replay is refused and logged
        assert (await http.get(webhook)).status_code == 409
    (line,) = lines(caplog, "replayed webhook")
    assert "\n" not in line
    assert "CA1\\n2025-01-01 00:00:00 INFO" in line


# --- out of descriptors --------------------------------------------------------------------------

SERVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, signal, sys
    from mediastreams.limits import Limits
    from mediastreams.server import ServerConfig, bind, echo_handler, serve

    # As `mediastreams serve` does: the library's own lines at INFO, others' warnings only.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger("mediastreams").addHandler(handler)
    logging.getLogger("mediastreams").setLevel(logging.INFO)

    async def main() -> None:
        sock = bind("127.0.0.1", 0)
        print(sock.getsockname()[1], flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        config = ServerConfig(handler=echo_handler, limits=Limits(header_timeout_s=2.0))
        await serve(config, sock, backend=sys.argv[1], stop=stop)

    asyncio.run(main())
    """
)


def low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


@contextlib.contextmanager
def idle_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S))
        yield held
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_more_idle_sockets_than_the_file_limit(backend: str, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, backend],
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=low_file_limit,
        )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        answers: list[Any] = []
        with idle_sockets(port, 300):  # more than the 128 descriptors the server may hold
            deadline = time.monotonic() + 30
            while not answers or answers[-1] != 200:
                assert time.monotonic() < deadline, answers
                try:
                    reply = httpx.get(f"http://127.0.0.1:{port}/incoming-call", timeout=3)
                    answers.append(reply.status_code)
                except httpx.HTTPError as error:
                    answers.append(type(error).__name__)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)
        if server.stdout is not None:
            server.stdout.close()
    # Refused (503), or cut before an answer while the server was out of descriptors.
    cut = {"ReadError", "ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"}
    assert set(answers) <= {200, 503, *cut}, answers
    log_text = log_path.read_text()
    assert server.returncode == 0, log_text[-2000:]
    assert "Traceback" not in log_text, log_text[log_text.find("Traceback") - 600 :][:3000]
    assert len(log_text) < 20_000, log_text[-2000:]  # was 27 MB in 15 s
    assert "connections with HTTP 503" in log_text


# --- start-up ------------------------------------------------------------------------------------


class BoundTo:
    """What serve() asks a listening socket: its address (no socket beyond loopback opened)."""

    def __init__(self, host: str) -> None:
        self.host = host

    def getsockname(self) -> tuple[str, int]:
        return (self.host, 5050)


@pytest.mark.parametrize(
    ("host", "auth_token", "warned"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.0.2.10", None, True),
        ("0.0.0.0", AUTH_TOKEN, False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
    ],
)
def test_a_warning_when_listening_beyond_loopback_without_an_auth_token(
    caplog: pytest.LogCaptureFixture, host: str, auth_token: str | None, warned: bool
) -> None:
    from mediastreams.server.base import _warn_if_open_to_all

    config = ServerConfig(handler=echo_handler, auth_token=auth_token)
    _warn_if_open_to_all(config, BoundTo(host))  # type: ignore[arg-type]
    assert bool(lines(caplog, "without an auth token")) is warned
