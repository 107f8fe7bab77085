"""What Twilio and proxies send, answered the same on every backend: POST webhooks, forwarded
headers trusted only from the listed addresses, and the public URL's path prefix. Real
servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from fake_twilio import TwilioClient
from mediastreams.security import StreamTokens
from mediastreams.server import BACKENDS, TOKEN_PARAMETER, ServerConfig, play_handler
from mediastreams.server.config import check_public_url
from mediastreams.twiml import parse_twiml
from serving import TOKEN, running, sign
from waiting import DEADLINE_S

pytestmark = pytest.mark.anyio

PUBLIC = "https://abc.example"
FORM = {"CallSid": "CA" + "1" * 32, "From": "+15550100", "To": "+15550199"}
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "proxy.example"}


def handler() -> object:
    return play_handler(b"\x01" * 160, hangup_after_play=True)


def stream_url(twiml: str) -> str:
    (connect,) = parse_twiml(twiml).verbs
    return str(connect.stream.url)  # type: ignore[attr-defined]


# --- POST webhooks ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_signed_post_webhook_is_answered(backend: str) -> None:
    config = ServerConfig(handler=handler(), public_url=PUBLIC, auth_token=TOKEN)  # type: ignore[arg-type]
    webhook = f"{PUBLIC}/incoming-call"
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        local = f"http://127.0.0.1:{port}/incoming-call"
        signed = {"X-Twilio-Signature": sign(webhook, FORM)}
        reply = await client.post(local, data=FORM, headers=signed)
        assert reply.status_code == 200, reply.text
        assert stream_url(reply.text) == "wss://abc.example/media-stream"
        # The form is signed: another form, or none, under the same signature is refused.
        other = {**FORM, "From": "+15550666"}
        assert (await client.post(local, data=other, headers=signed)).status_code == 403
        assert (await client.post(local, data=FORM)).status_code == 403
        # With a query string too: Twilio signs the URL with it, then the form.
        query_url = f"{webhook}?tenant=acme"
        queried = {"X-Twilio-Signature": sign(query_url, FORM)}
        reply = await client.post(local + "?tenant=acme", data=FORM, headers=queried)
        assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_post_webhook_mints_the_stream_token_of_its_form_call_sid(backend: str) -> None:
    config = ServerConfig(handler=handler(), stream_tokens=StreamTokens())  # type: ignore[arg-type]
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        reply = await client.post(f"http://127.0.0.1:{port}/incoming-call", data=FORM)
        assert reply.status_code == 200, reply.text
        (connect,) = parse_twiml(reply.text).verbs
        (parameter,) = connect.stream.parameters  # type: ignore[attr-defined]
        assert parameter.name == TOKEN_PARAMETER
        url = f"ws://127.0.0.1:{port}/media-stream"
        custom = {TOKEN_PARAMETER: parameter.value}
        async with TwilioClient(url, call_sid=FORM["CallSid"], custom_parameters=custom) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: False)
        assert bytes(twilio.heard) == b"\x01" * 160


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_post_whose_body_comes_after_its_head(backend: str) -> None:
    config = ServerConfig(handler=handler())  # type: ignore[arg-type]
    body = "&".join(f"{k}={v}" for k, v in FORM.items()).replace("+", "%2B").encode()
    head = (
        "POST /incoming-call HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    async with running(config, backend) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(head)
            await writer.drain()
            writer.write(body[:10])
            await writer.drain()
            writer.write(body[10:])
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
    status, _, rest = answer.partition(b"\r\n")
    assert b" 200 " in status, answer[:300]
    assert b"<Connect><Stream" in rest


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_post_too_large_for_a_webhook_is_refused(backend: str) -> None:
    config = ServerConfig(handler=handler())  # type: ignore[arg-type]
    too_big = config.limits.max_webhook_bytes + 1
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        reply = await client.post(
            f"http://127.0.0.1:{port}/incoming-call",
            content=b"a" * too_big,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert reply.status_code == 413


# --- forwarded headers -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("allowed", "trusted"),
    [((), False), (("127.0.0.1",), True), (("127.0.0.0/8",), True), (("10.0.0.0/8",), False),
     (("*",), True)],
)  # fmt: skip
async def test_forwarded_headers_count_only_from_listed_addresses(
    backend: str, allowed: tuple[str, ...], trusted: bool
) -> None:
    config = ServerConfig(handler=handler(), forwarded_allow_ips=allowed)  # type: ignore[arg-type]
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        reply = await client.get(f"http://127.0.0.1:{port}/incoming-call", headers=FORWARDED)
    assert reply.status_code == 200, reply.text
    expected = (
        "wss://proxy.example/media-stream" if trusted else f"ws://127.0.0.1:{port}/media-stream"
    )
    assert stream_url(reply.text) == expected


@pytest.mark.parametrize("backend", BACKENDS)
async def test_signatures_behind_a_trusted_proxy(backend: str) -> None:
    # No public URL: the URLs Twilio signed are rebuilt from the proxy's headers.
    config = ServerConfig(
        handler=handler(),  # type: ignore[arg-type]
        auth_token=TOKEN,
        forwarded_allow_ips=("127.0.0.1",),
    )
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        local = f"http://127.0.0.1:{port}/incoming-call"
        signed = {**FORWARDED, "X-Twilio-Signature": sign("https://proxy.example/incoming-call")}
        assert (await client.get(local, headers=signed)).status_code == 200
        on_local = {"X-Twilio-Signature": sign(f"http://127.0.0.1:{port}/incoming-call")}
        assert (await client.get(local, headers={**FORWARDED, **on_local})).status_code == 403
        url = f"ws://127.0.0.1:{port}/media-stream"
        upgrade = {**FORWARDED, "X-Twilio-Signature": sign("wss://proxy.example/media-stream")}
        async with TwilioClient(url, upgrade) as twilio:
            await twilio.open()
            await twilio.run_until(lambda: False)
        assert bytes(twilio.heard) == b"\x01" * 160


@pytest.mark.parametrize("backend", BACKENDS)
async def test_forwarded_headers_from_an_untrusted_peer_cannot_pass_a_signature(
    backend: str,
) -> None:
    # Signed for the forged host: a peer not listed cannot make the server check that URL.
    config = ServerConfig(handler=handler(), auth_token=TOKEN)  # type: ignore[arg-type]
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        forged = {**FORWARDED, "X-Twilio-Signature": sign("https://proxy.example/incoming-call")}
        reply = await client.get(f"http://127.0.0.1:{port}/incoming-call", headers=forged)
    assert reply.status_code == 403


# --- the public URL --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_public_url_path_prefix_is_kept_once(backend: str) -> None:
    config = ServerConfig(
        handler=handler(),  # type: ignore[arg-type]
        public_url="https://x.example/twilio/",
        auth_token=TOKEN,
    )
    async with running(config, backend) as port, httpx.AsyncClient(timeout=DEADLINE_S) as client:
        local = f"http://127.0.0.1:{port}/incoming-call"  # the proxy stripped /twilio
        signed = {"X-Twilio-Signature": sign("https://x.example/twilio/incoming-call", FORM)}
        reply = await client.post(local, data=FORM, headers=signed)
        assert reply.status_code == 200, reply.text
        assert stream_url(reply.text) == "wss://x.example/twilio/media-stream"
        doubled = {"X-Twilio-Signature": sign("https://x.example/twilio//incoming-call", FORM)}
        assert (await client.post(local, data=FORM, headers=doubled)).status_code == 403


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://abc.example", "must be https://"),
        ("abc.example", "must be absolute"),
        ("https://", "must be absolute"),
        ("https:///twilio", "must be absolute"),
        ("https://abc.example/?tenant=acme", "no query"),
        ("https://abc.example/twilio?", "no query"),
        ("https://abc.example/#top", "no query or fragment"),
        ("https://abc.example//twilio", "empty path segment"),
        ("ftp://abc.example", "must be absolute"),
    ],
)
def test_bad_public_urls_are_refused_at_start(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_public_url(url)
    with pytest.raises(ValueError, match=message):
        ServerConfig(handler=play_handler(b"\x01"), public_url=url)


@pytest.mark.parametrize(
    ("url", "webhook", "stream"),
    [
        ("https://abc.example", "https://abc.example/incoming-call", "wss://abc.example/media-stream"),
        ("https://x/twilio/", "https://x/twilio/incoming-call", "wss://x/twilio/media-stream"),
        ("https://x:8443/a/b", "https://x:8443/a/b/incoming-call", "wss://x:8443/a/b/media-stream"),
        ("http://127.0.0.1:5050", "http://127.0.0.1:5050/incoming-call",
         "ws://127.0.0.1:5050/media-stream"),
    ],
)  # fmt: skip
def test_public_urls_give_the_urls_signatures_are_checked_on(
    url: str, webhook: str, stream: str
) -> None:
    origin = check_public_url(url)
    assert origin.http_url("/incoming-call") == webhook
    assert origin.websocket_url("/media-stream") == stream
