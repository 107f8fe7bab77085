"""The TwiML leg: the webhook request, the verbs before the stream, and TwiML mistakes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator_apps import TONE_MULAW, media, nothing, sends, stream_app
from mediastreams.audio import wav_bytes
from mediastreams.emulator import CallResult, Hangup, place_call
from mediastreams.security import compute_signature

STREAM = "wss://abc.example/media-stream"


def twiml_call(document: str, steps: list[Any] | None = None, **options: Any) -> CallResult:
    app = stream_app(options.pop("behaviour", nothing), twiml=document)
    return place_call(app, steps or [Hangup(at_ms=500)], webhook_path="/incoming-call", **options)


def kinds(result: CallResult) -> list[tuple[int, str]]:
    return [(f.violation.code, f.violation.kind) for f in result.report.findings]


def connect(attributes: str = f'url="{STREAM}"', inner: str = "") -> str:
    return f"<Response><Connect><Stream {attributes}>{inner}</Stream></Connect></Response>"


def test_the_webhook_gets_twilios_parameters_signed() -> None:
    seen: dict[str, Any] = {}

    async def incoming(request: Request) -> Response:
        seen["form"] = dict(parse_qsl((await request.body()).decode()))
        seen["signature"] = request.headers.get("x-twilio-signature")
        seen["url"] = str(request.url)
        return Response(connect(), media_type="text/xml")

    stream = stream_app(nothing)
    app = Starlette(routes=[Route("/incoming-call", incoming, methods=["POST"]), *stream.routes])
    result = place_call(app, [Hangup(at_ms=100)], webhook_path="/incoming-call", auth_token="t")
    form = seen["form"]
    for name in ("CallSid", "AccountSid", "From", "To", "CallStatus", "Direction", "ApiVersion"):
        assert form[name], name
    assert form["CallStatus"] == "ringing" and form["Direction"] == "inbound"
    assert seen["signature"] == compute_signature("t", seen["url"], form)
    assert result.report.call_sid == form["CallSid"]
    assert result.report.ok


def test_start_stream_is_one_way_and_the_apps_media_is_ignored() -> None:
    document = f'<Response><Start><Stream url="{STREAM}"/></Start><Pause length="5"/></Response>'
    result = twiml_call(document, behaviour=sends(media("{sid}", TONE_MULAW)))
    # https://www.twilio.com/docs/api/errors/31924 lists frames sent on a one-way stream.
    assert kinds(result) == [(31924, "unidirectional-stream")]
    assert "<Connect><Stream>" in result.report.findings[0].violation.hint
    assert set(result.heard_mulaw) == {0xFF}  # nothing the app sent was played


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ('url="https://abc.example/media-stream"', (31922, "stream-url-scheme")),
        ('url="wss://abc.example:99999/x"', (31923, "stream-url-malformed")),
        (f'url="{STREAM}" track="both_tracks"', (31941, "stream-track")),
    ],
)
def test_stream_errors_stop_the_call_with_twilios_code(
    attributes: str, expected: tuple[int, str]
) -> None:
    result = twiml_call(connect(attributes))
    assert kinds(result) == [expected]
    assert result.report.findings[0].violation.hint
    assert result.report.stream_url is None  # Twilio would not connect
    assert result.report.exit_code == 1


def test_a_query_string_is_stripped_and_reported() -> None:
    received: list[dict[str, Any]] = []
    app = stream_app(nothing, twiml=connect(f'url="{STREAM}?tenant=acme"'), received=received)
    result = place_call(app, [Hangup(at_ms=100)], webhook_path="/incoming-call")
    assert kinds(result) == [(0, "stream-url-query")]
    assert "strips" in result.report.findings[0].violation.message
    assert result.report.stream_url == STREAM
    assert received  # the stream ran


def test_an_oversized_parameter() -> None:
    inner = f'<Parameter name="token" value="{"x" * 600}"/>'
    result = twiml_call(connect(inner=inner))
    assert kinds(result) == [(0, "stream-parameter")]


def test_parameters_arrive_in_start() -> None:
    received: list[dict[str, Any]] = []
    document = connect(inner='<Parameter name="tenant" value="acme"/>')
    app = stream_app(nothing, twiml=document, received=received)
    place_call(app, [Hangup(at_ms=100)], webhook_path="/incoming-call")
    assert received[1]["start"]["customParameters"] == {"tenant": "acme"}


def test_ws_to_loopback_is_accepted_with_a_note() -> None:
    result = twiml_call(connect('url="ws://127.0.0.1:8000/media-stream"'))
    assert result.report.findings == []
    assert any("ws:// accepted" in note for note in result.report.notes)


def test_verbs_before_connect_take_time_and_are_recorded() -> None:
    async def play(request: Request) -> Response:
        return Response(wav_bytes(TONE_MULAW), media_type="audio/wav")

    document = (
        '<Response><Say>Hello there caller</Say><Pause length="2"/><Play>/tone.wav</Play>'
        f'<Gather/><Connect><Stream url="{STREAM}"/></Connect><Pause length="40"/></Response>'
    )
    stream = stream_app(nothing, twiml=document)
    app = Starlette(routes=[Route("/tone.wav", play), *stream.routes])
    result = place_call(app, [Hangup(at_ms=100)], webhook_path="/incoming-call")
    report = result.report
    assert report.prelude_ms == 3 * 400 + 2000 + 1000
    heard = result.heard_mulaw
    assert heard[3200 * 8 : 4200 * 8] == TONE_MULAW  # the <Play> after the <Say> and <Pause>
    assert any("<Gather> is not emulated" in note for note in report.notes)
    assert any("<Say>" in note for note in report.notes)
    assert any("does not hang up" in note for note in report.notes)
    assert report.twiml_verbs[:4] == ["<Say>", "<Pause length=2>", "<Play>", "<Gather>"]


def test_redirect_and_hangup() -> None:
    async def first(request: Request) -> Response:
        return Response("<Response><Redirect>/second</Redirect></Response>")

    async def second(request: Request) -> Response:
        return Response("<Response><Hangup/></Response>")

    app = Starlette(
        routes=[
            Route("/incoming-call", first, methods=["POST"]),
            Route("/second", second, methods=["POST"]),
        ]
    )
    result = place_call(app, [], webhook_path="/incoming-call")
    assert result.report.twiml_verbs == ["<Redirect>", "<Hangup>"]
    assert result.report.findings == []
    assert "<Hangup> ended the call before any stream" in result.report.notes


def test_twiml_without_a_stream() -> None:
    result = twiml_call("<Response><Say>Goodbye</Say></Response>")
    assert kinds(result) == [(0, "no-stream")]


def test_a_document_that_is_not_twiml() -> None:
    result = twiml_call("<html>oops</html>")
    assert kinds(result) == [(12100, "twiml-parse")]


def test_a_webhook_that_fails() -> None:
    app = Starlette(routes=[])
    result = place_call(app, [], webhook_path="/incoming-call")
    assert kinds(result) == [(11200, "webhook-status")]
    assert result.report.exit_code == 2


def test_status_callbacks_and_the_connect_action() -> None:
    requests: list[tuple[str, dict[str, str], str | None]] = []

    async def record(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        requests.append((request.url.path, form, request.headers.get("x-twilio-signature")))
        if request.url.path == "/after":
            return Response("<Response><Say>Bye</Say><Hangup/></Response>")
        return Response("")

    document = (
        '<Response><Connect action="/after"><Stream name="agent" '
        f'url="{STREAM}" statusCallback="https://testserver/events"/></Connect></Response>'
    )
    stream = stream_app(nothing, twiml=document)
    app = Starlette(
        routes=[
            Route("/events", record, methods=["POST"]),
            Route("/after", record, methods=["POST"]),
            *stream.routes,
        ]
    )
    result = place_call(app, [Hangup(at_ms=200)], webhook_path="/incoming-call", auth_token="t")
    assert result.report.findings == []
    paths = [path for path, _, _ in requests]
    assert paths == ["/events", "/events", "/after"]
    started, stopped = requests[0][1], requests[1][1]
    assert (started["StreamEvent"], stopped["StreamEvent"]) == ("stream-started", "stream-stopped")
    assert started["StreamSid"] == result.report.stream_sid and started["StreamName"] == "agent"
    assert requests[0][2] == compute_signature("t", "https://testserver/events", started)
    # The caller hung up during the stream: the action is still requested, with the call
    # completed, and what it answers is not run.
    assert (
        "the <Connect action> https://testserver/after answered: <Say>, <Hangup> "
        "(not run: the call had ended)"
    ) in result.report.notes
    assert requests[2][1]["CallStatus"] == "completed"


def test_a_get_webhook_carries_the_parameters_in_the_signed_query() -> None:
    seen: dict[str, Any] = {}

    async def incoming(request: Request) -> Response:
        seen["query"] = dict(request.query_params)
        seen["valid"] = request.headers.get("x-twilio-signature") == compute_signature(
            "t", str(request.url)
        )
        return Response(connect(), media_type="text/xml")

    stream = stream_app(nothing)
    app = Starlette(routes=[Route("/incoming-call", incoming), *stream.routes[:1]])
    result = place_call(
        app,
        [Hangup(at_ms=100)],
        webhook_path="/incoming-call",
        webhook_method="GET",
        auth_token="t",
    )
    assert result.report.ok
    assert seen["query"]["CallStatus"] == "ringing" and seen["valid"]


def test_a_webhook_that_raises_is_reported_not_raised() -> None:
    async def incoming(request: Request) -> Response:
        raise RuntimeError("no TwiML today")

    app = Starlette(routes=[Route("/incoming-call", incoming, methods=["POST"])])
    result = place_call(app, [], webhook_path="/incoming-call")
    assert kinds(result) == [(11200, "webhook-error")]
    assert "RuntimeError: no TwiML today" in result.report.findings[0].violation.message


@pytest.mark.anyio
async def test_a_failed_request_is_an_emulator_error_in_the_tree() -> None:
    import httpx

    from mediastreams import exceptions
    from mediastreams.emulator.transport import ConnectFailed
    from mediastreams.emulator.webhook import TwilioRequests, WebhookFailed
    from mediastreams.exceptions import EmulatorError, MediaStreamsError

    async def refuse(request: Request) -> Response:
        return Response(status_code=500)

    app = Starlette(routes=[Route("/incoming-call", refuse, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        requests = TwilioRequests(client, {"CallSid": "CA1"})
        with pytest.raises(EmulatorError) as raised:
            await requests.answer("https://abc.example/incoming-call")
    assert isinstance(raised.value, WebhookFailed)
    assert raised.value.violation.code == 11200
    assert "answered HTTP 500" in str(raised.value)
    assert issubclass(ConnectFailed, EmulatorError) and issubclass(EmulatorError, MediaStreamsError)
    tree = exceptions.__doc__ or ""
    assert "├── ConnectFailed" in tree and "└── WebhookFailed" in tree
