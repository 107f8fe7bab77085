"""Signatures cross-checked against twilio-python's RequestValidator; public URLs; tokens; logs."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from mediastreams import SignatureError
from mediastreams.exceptions import CapacityError, ReplayError
from mediastreams.security import (
    SIGNATURE_HEADER,
    PublicURL,
    StreamTokens,
    TokenStore,
    check_upgrade_signature,
    check_webhook_signature,
    compute_signature,
    loggable,
    public_url_for,
    validate_signature,
)

TOKEN = "12345"
OTHER_TOKEN = "54321"
VALIDATOR = RequestValidator(TOKEN)

# The canonical test vector of Twilio's webhook security docs.
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

CASES: list[tuple[str, dict[str, str]]] = [
    (DOC_URL, DOC_PARAMS),
    ("https://abc.example/incoming-call", DOC_PARAMS),
    ("https://abc.example:8443/incoming-call", DOC_PARAMS),
    ("https://abc.example:443/incoming-call", {"a": "1"}),
    ("http://abc.example:8080/incoming-call?x=1&y=%20z", {"Body": "é & ü", "b": ""}),
    ("https://abc.example/stream-events", {"StreamEvent": "stream-started", "StreamSid": "MZ1"}),
    ("wss://abc.example/media-stream", {}),
    ("wss://abc.example:8443/media-stream", {}),
    ("https://abc.example/incoming-call", {}),
]


@pytest.mark.parametrize(("url", "params"), CASES)
def test_compute_signature_matches_twilio(url: str, params: dict[str, str]) -> None:
    assert compute_signature(TOKEN, url, params) == VALIDATOR.compute_signature(url, params)


def test_twilio_test_vector() -> None:
    assert compute_signature(TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE


@pytest.mark.parametrize(("url", "params"), CASES)
def test_validate_agrees_with_twilio(url: str, params: dict[str, str]) -> None:
    signature = VALIDATOR.compute_signature(url, params)
    assert validate_signature(TOKEN, url, params, signature)
    assert VALIDATOR.validate(url, params, signature)
    check_webhook_signature(TOKEN, url, params, signature)


@pytest.mark.parametrize(
    "multidict",
    [
        MultiDict([("To", "+1"), ("Digits", "9"), ("Digits", "1"), ("Digits", "1"), ("A", "x")]),
        FormData([("To", "+1"), ("Digits", "9"), ("Digits", "1"), ("Digits", "1"), ("A", "x")]),
    ],
)
def test_repeated_keys_match_twilio(multidict: Any) -> None:
    # twilio-python signs the distinct values of a repeated name, sorted.
    expected = VALIDATOR.compute_signature(DOC_URL, multidict)
    assert compute_signature(TOKEN, DOC_URL, multidict) == expected
    pairs = [("Digits", "9"), ("A", "x"), ("Digits", "1"), ("To", "+1"), ("Digits", "1")]
    assert compute_signature(TOKEN, DOC_URL, pairs) == expected
    assert compute_signature(TOKEN, DOC_URL, {"To": "+1", "Digits": ["1", "9"], "A": "x"}) == (
        expected
    )
    assert validate_signature(TOKEN, DOC_URL, multidict, expected)


def test_params_may_be_a_one_shot_iterator() -> None:
    signature = VALIDATOR.compute_signature("https://abc.example:443/x", DOC_PARAMS)
    pairs = iter(DOC_PARAMS.items())
    assert validate_signature(TOKEN, "https://abc.example/x", pairs, signature)


def test_repeated_keys_are_not_collapsed_to_one_value() -> None:
    both = compute_signature(TOKEN, DOC_URL, [("Digits", "1"), ("Digits", "9")])
    assert both != compute_signature(TOKEN, DOC_URL, {"Digits": "9"})
    assert both != compute_signature(TOKEN, DOC_URL, {"Digits": "1"})


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        ("https://abc.example/incoming-call", "https://abc.example:443/incoming-call"),
        ("https://abc.example:443/incoming-call", "https://abc.example/incoming-call"),
        ("https://abc.example/incoming-call?x=1", "https://abc.example:8443/incoming-call?x=1"),
        ("http://abc.example:80/incoming-call", "http://abc.example/incoming-call"),
        ("wss://abc.example/media-stream", "wss://abc.example:443/media-stream"),
    ],
)
def test_url_is_tried_with_and_without_port_like_twilio(signed_url: str, received_url: str) -> None:
    signature = VALIDATOR.compute_signature(signed_url, DOC_PARAMS)
    assert validate_signature(TOKEN, received_url, DOC_PARAMS, signature)
    assert VALIDATOR.validate(received_url, DOC_PARAMS, signature)


def test_wss_default_port_is_443_where_twilio_python_adds_80() -> None:
    signature = VALIDATOR.compute_signature("wss://abc.example:443/media-stream", {})
    assert validate_signature(TOKEN, "wss://abc.example/media-stream", {}, signature)
    assert not VALIDATOR.validate("wss://abc.example/media-stream", {}, signature)


def test_user_info_and_ipv6_hosts_survive_the_port_forms() -> None:
    for signed, received in [
        ("https://user:pw@abc.example:443/x", "https://user:pw@abc.example/x"),
        ("wss://[::1]/media-stream", "wss://[::1]:443/media-stream"),
    ]:
        signature = compute_signature(TOKEN, signed)
        assert validate_signature(TOKEN, received, {}, signature)


SIGNATURE = compute_signature(TOKEN, DOC_URL, DOC_PARAMS)


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        (OTHER_TOKEN, DOC_URL, DOC_PARAMS, SIGNATURE),
        (TOKEN, DOC_URL.replace("https", "http"), DOC_PARAMS, SIGNATURE),
        (TOKEN, DOC_URL.replace("myapp.php", "myapp.php/"), DOC_PARAMS, SIGNATURE),
        (TOKEN, DOC_URL.replace("foo=1", "foo=2"), DOC_PARAMS, SIGNATURE),
        (TOKEN, "https://mycompany.com/myapp.php", DOC_PARAMS, SIGNATURE),
        (TOKEN, DOC_URL, {**DOC_PARAMS, "Digits": "1235"}, SIGNATURE),
        (TOKEN, DOC_URL, {**DOC_PARAMS, "Extra": ""}, SIGNATURE),
        (TOKEN, DOC_URL, {}, SIGNATURE),
        (TOKEN, DOC_URL, DOC_PARAMS, SIGNATURE[:-2]),
        (TOKEN, DOC_URL, DOC_PARAMS, "é" * 28),
    ],
)
def test_anything_changed_fails(
    token: str, url: str, params: dict[str, str], signature: str
) -> None:
    assert not validate_signature(token, url, params, signature)
    assert not RequestValidator(token).validate(url, params, signature)
    with pytest.raises(SignatureError) as raised:
        check_webhook_signature(token, url, params, signature)
    assert signature not in str(raised.value)
    assert token not in str(raised.value)


def test_a_bad_port_fails_rather_than_raising() -> None:
    url = "https://mycompany.com:99999/myapp.php"
    assert not validate_signature(TOKEN, url, DOC_PARAMS, SIGNATURE)
    with pytest.raises(ValueError, match="Port out of range"):
        VALIDATOR.validate(url, DOC_PARAMS, SIGNATURE)


def test_missing_signature_fails() -> None:
    assert not validate_signature(TOKEN, DOC_URL, DOC_PARAMS, None)
    assert not validate_signature(TOKEN, DOC_URL, DOC_PARAMS, "")
    with pytest.raises(SignatureError, match=f"no {SIGNATURE_HEADER} header"):
        check_webhook_signature(TOKEN, DOC_URL, DOC_PARAMS, None)


def test_error_messages_leave_out_query_strings_and_user_info() -> None:
    url = "https://user:secret@abc.example/incoming-call?key=hidden"
    with pytest.raises(SignatureError) as raised:
        check_webhook_signature(TOKEN, url, {}, "bad")
    message = str(raised.value)
    assert "https://abc.example/incoming-call" in message
    assert "secret" not in message
    assert "hidden" not in message


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert validate_signature(TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE)
    # Both port forms are compared, whichever matches.
    assert len(calls) == 2
    assert (DOC_SIGNATURE.encode(), DOC_SIGNATURE.encode()) in calls


def test_an_empty_auth_token_is_refused() -> None:
    with pytest.raises(ValueError, match="auth token is empty"):
        compute_signature("", DOC_URL)


# --- the WebSocket upgrade ------------------------------------------------------------------

STREAM_URL = "wss://abc.example/media-stream"


def test_upgrade_signature_is_over_the_wss_url_and_no_params() -> None:
    signature = VALIDATOR.compute_signature(STREAM_URL, {})
    assert VALIDATOR.validate(STREAM_URL, {}, signature)
    check_upgrade_signature(TOKEN, STREAM_URL, signature)
    with pytest.raises(SignatureError, match=r"does not match wss://abc\.example/media-stream"):
        check_upgrade_signature(OTHER_TOKEN, STREAM_URL, signature)
    with pytest.raises(SignatureError, match="does not match"):
        check_upgrade_signature(TOKEN, "wss://abc.example/media-stream/", signature)


def test_upgrade_signed_over_https_does_not_pass_as_wss() -> None:
    signature = compute_signature(TOKEN, "https://abc.example/media-stream")
    with pytest.raises(SignatureError, match="does not match"):
        check_upgrade_signature(TOKEN, STREAM_URL, signature)


def test_upgrade_url_must_be_a_websocket_url() -> None:
    signature = compute_signature(TOKEN, "https://abc.example/media-stream")
    with pytest.raises(SignatureError, match=r"not a wss:// URL.*websocket_url"):
        check_upgrade_signature(TOKEN, "https://abc.example/media-stream", signature)
    with pytest.raises(SignatureError, match="malformed"):
        check_upgrade_signature(TOKEN, "wss://[::1/x", signature)


def test_upgrade_with_a_query_string_is_refused_even_if_signed() -> None:
    url = STREAM_URL + "?token=s3cr3t"
    signature = compute_signature(TOKEN, url)
    assert validate_signature(TOKEN, url, {}, signature)
    with pytest.raises(SignatureError, match="query string") as raised:
        check_upgrade_signature(TOKEN, url, signature)
    assert "s3cr3t" not in str(raised.value)
    # An empty query is refused too, although the URL normalises to the signed one.
    signature = compute_signature(TOKEN, STREAM_URL)
    with pytest.raises(SignatureError, match="query string"):
        check_upgrade_signature(TOKEN, STREAM_URL + "?", signature)


def test_upgrade_without_signature_is_refused() -> None:
    with pytest.raises(SignatureError, match="no X-Twilio-Signature header on the upgrade"):
        check_upgrade_signature(TOKEN, STREAM_URL, None)


# --- public URLs ----------------------------------------------------------------------------


def test_configured_base_rebuilds_webhook_and_stream_urls() -> None:
    public = PublicURL.parse("https://abc.example")
    assert public.http_url("/incoming-call") == "https://abc.example/incoming-call"
    assert public.websocket_url("/media-stream") == "wss://abc.example/media-stream"
    assert public.websocket_url("media-stream") == "wss://abc.example/media-stream"
    insecure = PublicURL.parse("http://localhost:8000/")
    assert insecure.websocket_url("/media-stream") == "ws://localhost:8000/media-stream"
    assert PublicURL.parse("wss://abc.example") == public


def test_configured_base_path_is_a_prefix() -> None:
    public = PublicURL.parse("https://abc.example/twilio/")
    assert public.http_url("/incoming-call?x=1") == "https://abc.example/twilio/incoming-call?x=1"


@pytest.mark.parametrize(
    "base",
    [
        "abc.example",
        "ftp://abc.example",
        "https://",
        "https://abc.example?x=1",
        "https://abc.example#x",
        "https://abc.example:0x1",
    ],
)
def test_bad_configured_base_is_refused(base: str) -> None:
    with pytest.raises(ValueError, match=r"must|[Pp]ort"):
        PublicURL.parse(base)


def test_configured_base_wins_over_the_request() -> None:
    forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
    url = public_url_for(
        "http", "10.0.0.5:8000", "/incoming-call", forwarded, "https://abc.example"
    )
    assert url == "https://abc.example/incoming-call"
    url = public_url_for("ws", "10.0.0.5:8000", "/media-stream", forwarded, "https://abc.example")
    assert url == "wss://abc.example/media-stream"
    public = PublicURL.parse("https://abc.example")
    assert public_url_for("wss", "x", "/media-stream", configured_base=public) == (
        "wss://abc.example/media-stream"
    )


def test_without_a_base_the_request_decides() -> None:
    assert public_url_for("http", "localhost:8000", "/incoming-call") == (
        "http://localhost:8000/incoming-call"
    )
    assert public_url_for("wss", "abc.example", "/media-stream") == (
        "wss://abc.example/media-stream"
    )


def test_forwarded_headers_map_https_to_wss() -> None:
    # ngrok: the app sees ws on localhost, with x-forwarded-proto: https.
    headers = {"x-forwarded-proto": "https", "x-forwarded-host": "abc.ngrok.app"}
    assert public_url_for("ws", "localhost:8000", "/media-stream", headers) == (
        "wss://abc.ngrok.app/media-stream"
    )
    assert public_url_for("http", "localhost:8000", "/incoming-call", headers) == (
        "https://abc.ngrok.app/incoming-call"
    )


def test_forwarded_headers_take_the_first_of_several_proxies() -> None:
    headers = {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "abc.example, lb.internal"}
    assert public_url_for("ws", "app:8000", "/media-stream", headers) == (
        "wss://abc.example/media-stream"
    )


def test_forwarded_proto_alone_keeps_the_host() -> None:
    assert public_url_for("ws", "abc.example", "/m", {"X-Forwarded-Proto": "HTTPS"}) == (
        "wss://abc.example/m"
    )


@pytest.mark.parametrize(
    ("host", "headers"),
    [
        ("", None),
        ("a.example/evil", None),
        ("user@a.example", None),
        ("a", {"x-forwarded-host": "b?c"}),
    ],
)
def test_a_host_that_is_not_a_host_name_is_refused(
    host: str, headers: dict[str, str] | None
) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        public_url_for("http", host, "/incoming-call", headers)


def test_signature_validates_behind_a_tunnel() -> None:
    # Twilio signed the public URL; the app, behind the tunnel, sees another scheme and host.
    public_stream_url = "wss://abc.ngrok.app/media-stream"
    signature = VALIDATOR.compute_signature(public_stream_url, {})
    seen = public_url_for(
        "ws", "127.0.0.1:8000", "/media-stream", configured_base="https://abc.ngrok.app"
    )
    check_upgrade_signature(TOKEN, seen, signature)
    with pytest.raises(SignatureError):
        check_upgrade_signature(TOKEN, "ws://127.0.0.1:8000/media-stream", signature)


# --- one-time stream tokens -----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CALL = "CA" + "0" * 32
OTHER_CALL = "CA" + "1" * 32


def test_token_works_once_for_its_call() -> None:
    tokens = StreamTokens()
    token = tokens.mint_for(CALL)
    assert len(token) == 43
    tokens.redeem(token, CALL)
    with pytest.raises(SignatureError, match="already used") as raised:
        tokens.redeem(token, CALL)
    assert token not in str(raised.value)


def test_tokens_are_unguessable_and_distinct_per_call() -> None:
    tokens = StreamTokens()
    minted = {tokens.mint_for(f"CA{n}") for n in range(100)}
    assert len(minted) == 100
    assert all(
        set(t) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for t in minted
    )


def test_a_replayed_webhook_gets_the_pending_token_never_a_new_one() -> None:
    tokens = StreamTokens()
    first = tokens.mint_for(CALL)
    assert {tokens.mint_for(CALL) for _ in range(10_000)} == {first}
    assert tokens.pending == 1
    tokens.redeem(first, CALL)
    for _ in range(100):  # once used, replays mint nothing
        with pytest.raises(ReplayError, match="already used"):
            tokens.mint_for(CALL)
    assert tokens.pending == 0


def test_an_expired_call_mints_no_new_token() -> None:
    clock = FakeClock()
    tokens = StreamTokens(ttl_seconds=30, clock=clock)
    token = tokens.mint_for(CALL)
    clock.now += 30
    with pytest.raises(ReplayError, match="already expired"):
        tokens.mint_for(CALL)
    with pytest.raises(SignatureError, match="already expired"):
        tokens.redeem(token, CALL)


def test_a_token_for_another_call_fails_and_burns_nothing() -> None:
    tokens = StreamTokens()
    token = tokens.mint_for(CALL)
    other = tokens.mint_for(OTHER_CALL)
    with pytest.raises(SignatureError, match="not the one issued") as raised:
        tokens.redeem(token, OTHER_CALL)
    assert token not in str(raised.value)
    tokens.redeem(other, OTHER_CALL)  # a wrong guess did not burn the real one
    tokens.redeem(token, CALL)


def test_token_expires() -> None:
    clock = FakeClock()
    tokens = StreamTokens(ttl_seconds=30, clock=clock)
    fresh = tokens.mint_for(CALL)
    stale = tokens.mint_for(OTHER_CALL)
    clock.now += 29.9
    tokens.redeem(fresh, CALL)
    clock.now += 0.1
    with pytest.raises(SignatureError, match="expired"):
        tokens.redeem(stale, OTHER_CALL)


def test_expired_tokens_are_swept() -> None:
    clock = FakeClock()
    tokens = StreamTokens(ttl_seconds=10, clock=clock)
    for n in range(5):
        tokens.mint_for(f"CA{n}")
    clock.now += 10
    tokens.mint_for("CA9")
    assert tokens.pending == 1


def test_a_flood_is_refused_and_evicts_no_pending_token() -> None:
    tokens = StreamTokens(max_pending=3)
    first = tokens.mint_for("CA1")
    kept = [tokens.mint_for(f"CA{n}") for n in (2, 3)]
    for n in range(4, 1000):  # invented CallSids, as anyone can send without signatures
        with pytest.raises(CapacityError, match="max_pending"):
            tokens.mint_for(f"CA{n}")
    assert tokens.pending == 3
    tokens.redeem(first, "CA1")
    for n, token in zip((2, 3), kept, strict=True):
        tokens.redeem(token, f"CA{n}")
    tokens.mint_for("CA4")  # room again once they started


def test_calls_are_remembered_for_a_while_and_up_to_a_bound() -> None:
    clock = FakeClock()
    tokens = StreamTokens(remember_seconds=100, max_remembered=2, clock=clock)
    for call in ("CA1", "CA2", "CA3"):
        tokens.redeem(tokens.mint_for(call), call)
    tokens.mint_for("CA1")  # the oldest memory made room for CA3
    with pytest.raises(ReplayError):
        tokens.mint_for("CA3")
    clock.now += 100
    tokens.mint_for("CA3")  # forgotten after remember_seconds


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
def test_missing_or_unknown_token_fails(token: str | None) -> None:
    tokens = StreamTokens()
    tokens.mint_for(CALL)
    with pytest.raises(SignatureError):
        tokens.redeem(token, CALL)


def test_a_call_never_issued_a_token_fails() -> None:
    with pytest.raises(SignatureError, match="no stream token was issued"):
        StreamTokens().redeem("x" * 43, CALL)


@pytest.mark.parametrize(
    "settings",
    [
        {"ttl_seconds": 0},
        {"ttl_seconds": -1},
        {"max_pending": 0},
        {"remember_seconds": 0},
        {"max_remembered": 0},
    ],
)
def test_bad_store_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamTokens(**settings)  # type: ignore[arg-type]


def test_the_store_meets_the_token_store_interface() -> None:
    store: TokenStore = StreamTokens()
    store.redeem(store.mint_for(CALL), CALL)


# --- log lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("CA123", "CA123"),
        ("CA1\nINFO forged line", "CA1\\nINFO forged line"),
        ("a\rb\tc\x1b[31m", "a\\rb\\tc\\x1b[31m"),
        ("back\\slash\\n", "back\\\\slash\\\\n"),
        ("line\u2028sep\u202eRTL", "line\\u2028sep\\u202eRTL"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("caf\u00e9 \u4e2d", "caf\u00e9 \u4e2d"),
        (("1.2.3.4", 5), "('1.2.3.4', 5)"),
    ],
)
def test_loggable_escapes_what_could_forge_a_line(value: object, logged: str) -> None:
    assert loggable(value) == logged


def test_loggable_caps_the_length() -> None:
    text = loggable("\n" * 10_000, max_chars=50)
    assert text == "\\n" * 25 + "...(10000 chars)"
    assert loggable("x" * 60, max_chars=50) == "x" * 50 + "...(60 chars)"
    assert loggable("x" * 50, max_chars=50) == "x" * 50


@given(st.text())
def test_loggable_is_one_printable_line(value: str) -> None:
    text = loggable(value)
    assert text.isprintable()
    assert len(text) <= 200 + len("...(999999 chars)")


def test_token_errors_escape_the_call_sid() -> None:
    forged = "CA1\nINFO forged"
    with pytest.raises(SignatureError) as raised:
        StreamTokens().redeem("x" * 43, forged)
    assert "\n" not in str(raised.value)
    assert "CA1\\nINFO forged" in str(raised.value)
