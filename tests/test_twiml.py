"""TwiML: output cross-checked against Twilio's helper library, every refusal, parse round trips."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.twiml.voice_response import Connect as TwilioConnect
from twilio.twiml.voice_response import Start as TwilioStart
from twilio.twiml.voice_response import Stop as TwilioStop
from twilio.twiml.voice_response import VoiceResponse

from mediastreams import TwiMLError
from mediastreams.twiml import (
    PARAMETER_MAX_CHARS,
    TRACKS,
    Connect,
    Hangup,
    Parameter,
    Pause,
    Play,
    Redirect,
    Response,
    Say,
    Start,
    Stop,
    Stream,
    UnknownVerb,
    check_stream,
    check_stream_url,
    check_verb,
    connect_stream,
    parse_twiml,
    render_twiml,
    resolve_stream_url,
)

URL = "wss://abc.example/media-stream"


def tree(xml: str) -> Any:
    """A comparable form of an XML document: tag, attributes, text, children."""

    def walk(element: ET.Element) -> Any:
        text = (element.text or "").strip() or None
        return (element.tag, dict(element.attrib), text, [walk(child) for child in element])

    return walk(ET.fromstring(xml))


# --- cross-checks against twilio's VoiceResponse --------------------------------------------


def test_connect_stream_matches_twilio() -> None:
    ours = connect_stream(
        URL,
        parameters={"tenant": "acme", "token": "abc"},
        name="main",
        status_callback="https://abc.example/stream-events",
        status_callback_method="GET",
        action="https://abc.example/after",
        method="POST",
    )
    response = VoiceResponse()
    connect = TwilioConnect(action="https://abc.example/after", method="POST")
    stream = connect.stream(
        url=URL,
        name="main",
        status_callback="https://abc.example/stream-events",
        status_callback_method="GET",
    )
    stream.parameter(name="tenant", value="acme")
    stream.parameter(name="token", value="abc")
    response.append(connect)
    assert tree(ours) == tree(str(response))


def test_minimal_connect_stream_matches_twilio() -> None:
    response = VoiceResponse()
    response.connect().stream(url=URL)
    assert tree(connect_stream(URL)) == tree(str(response))


def test_output_starts_with_the_same_declaration_as_twilio() -> None:
    declaration = '<?xml version="1.0" encoding="UTF-8"?>'
    assert str(VoiceResponse()).startswith(declaration)
    assert connect_stream(URL).startswith(declaration + "<Response>")


def test_escaping_matches_twilio_and_round_trips() -> None:
    value = "<&\"'> \n\ttab é 😀"
    response = VoiceResponse()
    response.connect().stream(url=URL).parameter(name="a&b", value=value)
    ours = connect_stream(URL, parameters={"a&b": value})
    assert tree(ours) == tree(str(response))
    stream = _only_connect(parse_twiml(ours)).stream
    assert stream is not None
    assert stream.parameters == (Parameter("a&b", value),)


def test_start_stop_and_other_verbs_match_twilio() -> None:
    ours = render_twiml(
        Say("Connecting you.", voice="Polly.Amy", language="en-GB", loop=2),
        Start(Stream(URL, name="copy", track="both_tracks")),
        Pause(length_seconds=3),
        Play("https://abc.example/hold.mp3", loop=0),
        Stop(Stream(name="copy")),
        Redirect("https://abc.example/next", method="GET"),
        Hangup(),
    )
    response = VoiceResponse()
    response.say("Connecting you.", voice="Polly.Amy", language="en-GB", loop=2)
    start = TwilioStart()
    start.stream(url=URL, name="copy", track="both_tracks")
    response.append(start)
    response.pause(length=3)
    response.play("https://abc.example/hold.mp3", loop=0)
    stop = TwilioStop()
    stop.stream(name="copy")
    response.append(stop)
    response.redirect("https://abc.example/next", method="GET")
    response.hangup()
    assert tree(ours) == tree(str(response))


def test_unknown_verbs_are_written_as_given() -> None:
    ours = render_twiml(UnknownVerb("Dial", {"callerId": "+15550100"}, "+15550199"))
    response = VoiceResponse()
    response.dial("+15550199", caller_id="+15550100")
    assert tree(ours) == tree(str(response))


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://abc.example/media-stream", ["31922", "wss://"]),
        ("http://abc.example/media-stream", ["31922", "wss://"]),
        ("ws://abc.example/media-stream", ["31922", "wss://"]),
        ("ws://localhost:8080/media-stream", ["31922", "allow_insecure_loopback=True"]),
        ("wss://[::1/media-stream", ["31923", "Invalid IPv6"]),
        ("wss://abc.example:99999/media-stream", ["31923", "Port"]),
        ("wss:///media-stream", ["31923", "not both"]),
        ("//abc.example/media-stream", ["31923", "not both"]),
        ("", ["31923", "empty"]),
        ("wss://abc.example/media stream", ["31923", "whitespace"]),
        ("wss://abc.example/media-stream?tenant=acme", ["query string", "<Parameter>"]),
        ("wss://abc.example/media-stream?", ["query string", "<Parameter>"]),
        ("wss://abc.example/media-stream#x", ["fragment"]),
    ],
)
def test_bad_stream_urls_are_refused_with_reason_and_fix(url: str, expected: list[str]) -> None:
    with pytest.raises(TwiMLError) as raised:
        connect_stream(url)
    for text in expected:
        assert text in str(raised.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_ws_to_loopback_is_allowed_only_when_asked(host: str) -> None:
    url = f"ws://{host}:8080/media-stream"
    xml = connect_stream(url, allow_insecure_loopback=True)
    assert tree(xml)[3][0][3][0][1] == {"url": url}
    with pytest.raises(TwiMLError, match="31922"):
        connect_stream(url)


def test_ws_to_other_hosts_is_refused_even_when_loopback_is_allowed() -> None:
    with pytest.raises(TwiMLError, match=r"31922: .*allowed only to"):
        connect_stream("ws://10.0.0.5/media-stream", allow_insecure_loopback=True)


def test_wss_scheme_is_case_insensitive() -> None:
    assert check_stream_url("WSS://abc.example/media-stream") == []


@pytest.mark.parametrize("track", ["outbound_track", "both_tracks", "inbound", "mixed_track"])
def test_connect_takes_no_track_but_inbound(track: str) -> None:
    with pytest.raises(TwiMLError, match=r"31941: track=.*<Connect><Stream>.*<Start><Stream>"):
        render_twiml(Connect(Stream(URL, track=track)))


def test_connect_accepts_an_explicit_inbound_track() -> None:
    xml = render_twiml(Connect(Stream(URL, track="inbound_track")))
    assert 'track="inbound_track"' in xml


@pytest.mark.parametrize("track", TRACKS)
def test_start_accepts_every_track(track: str) -> None:
    assert check_stream(Stream(URL, track=track), "Start") == []


@pytest.mark.parametrize("track", ["inbound", "both", "mixed_track", ""])
def test_start_refuses_a_bad_track(track: str) -> None:
    with pytest.raises(TwiMLError, match=r"31941: .*Use one of inbound_track"):
        render_twiml(Start(Stream(URL, track=track)))


def test_parameter_must_be_under_500_characters() -> None:
    name = "context"
    longest = "x" * (PARAMETER_MAX_CHARS - 1 - len(name))
    assert 'value="' + longest in connect_stream(URL, parameters={name: longest})
    with pytest.raises(TwiMLError, match=r"500 characters of name plus value.*fewer than 500"):
        connect_stream(URL, parameters={name: longest + "x"})


def test_repeated_and_empty_parameter_names_are_refused() -> None:
    with pytest.raises(TwiMLError, match="repeated"):
        connect_stream(URL, parameters=[Parameter("a", "1"), Parameter("a", "2")])
    with pytest.raises(TwiMLError, match="no name"):
        connect_stream(URL, parameters=[Parameter("", "1")])


@pytest.mark.parametrize("method", ["get", "PUT", ""])
def test_bad_methods_are_refused(method: str) -> None:
    with pytest.raises(TwiMLError, match=r"statusCallbackMethod=.*Use GET or POST"):
        connect_stream(URL, status_callback="https://abc.example/e", status_callback_method=method)
    with pytest.raises(TwiMLError, match=r"<Connect method>=.*Use GET or POST"):
        connect_stream(URL, action="/after", method=method)
    with pytest.raises(TwiMLError, match=r"<Redirect method>=.*Use GET or POST"):
        render_twiml(Redirect("/next", method=method))


def test_status_callback_is_http_or_relative() -> None:
    with pytest.raises(TwiMLError, match=r"statusCallback='ftp://abc\.example/e' is not an http"):
        connect_stream(URL, status_callback="ftp://abc.example/e")
    # https://www.twilio.com/docs/voice/twiml/stream#attributes-status-callback: relative is fine
    assert 'statusCallback="/events"' in connect_stream(URL, status_callback="/events")


def test_a_relative_stream_url_is_accepted_and_resolved_against_the_document() -> None:
    assert 'url="/media-stream"' in connect_stream("/media-stream")
    assert check_stream_url("media-stream") == []
    resolve = resolve_stream_url
    assert resolve("/media-stream", "https://abc.example/voice/incoming") == (
        "wss://abc.example/media-stream"
    )
    assert resolve("stream", "http://127.0.0.1:8000/voice/incoming?x=1") == (
        "ws://127.0.0.1:8000/voice/stream"
    )
    assert resolve("wss://other.example/s", "https://abc.example/") == "wss://other.example/s"


def test_empty_connect_and_nameless_stop_are_refused() -> None:
    with pytest.raises(TwiMLError, match="<Connect> is empty"):
        render_twiml(Connect())
    with pytest.raises(TwiMLError, match="<Stop><Stream> has no name"):
        render_twiml(Stop(Stream()))
    with pytest.raises(TwiMLError, match=r"31923: .*no url"):
        render_twiml(Connect(Stream(name="x")))


def test_characters_xml_cannot_carry_are_refused() -> None:
    with pytest.raises(TwiMLError, match="character XML cannot carry"):
        connect_stream(URL, parameters={"a": "bell\x07"})


def test_every_problem_is_reported_at_once() -> None:
    problems = check_stream(
        Stream("http://abc.example/x?y=1", track="both_tracks", status_callback_method="PUT"),
        "Connect",
    )
    assert [problem.code for problem in problems] == [31922, None, 31941, None]
    with pytest.raises(TwiMLError) as raised:
        render_twiml(Connect(Stream("http://abc.example/x?y=1", track="both_tracks")))
    assert "31922" in str(raised.value)
    assert "31941" in str(raised.value)


def test_check_stream_url_accepts_a_good_url() -> None:
    assert check_stream_url(URL) == []
    assert check_stream_url("wss://abc.example:8443/a/b") == []


def test_connector_streams_need_no_url() -> None:
    stream = Stream(extra={"connectorName": "my-connector"})
    assert check_stream(stream, "Connect") == []


# --- parsing --------------------------------------------------------------------------------


def _only_connect(response: Response) -> Connect:
    (verb,) = response.verbs
    assert isinstance(verb, Connect)
    return verb


def test_parse_reads_a_twilio_built_document() -> None:
    response = VoiceResponse()
    response.say("Hello", voice="alice", loop=2)
    connect = TwilioConnect(action="/after", method="GET")
    connect.stream(
        url=URL,
        name="main",
        status_callback="https://abc.example/e",
        status_callback_method="POST",
        connector_name="c1",
    ).parameter(name="tenant", value="acme")
    response.append(connect)
    response.pause(length=40)
    parsed = parse_twiml(str(response))
    assert parsed.verbs == (
        Say("Hello", voice="alice", loop=2),
        Connect(
            Stream(
                URL,
                name="main",
                status_callback="https://abc.example/e",
                status_callback_method="POST",
                parameters=(Parameter("tenant", "acme"),),
                extra={"connectorName": "c1"},
            ),
            action="/after",
            method="GET",
        ),
        Pause(length_seconds=40),
    )


DOCUMENT = (
    Say("Please hold."),
    Start(Stream(URL, name="copy", track="both_tracks", parameters=(Parameter("k", "v"),))),
    Connect(Stream(URL, parameters=(Parameter("tenant", "acme"),)), action="/after"),
    Stop(Stream(name="copy")),
    Play("https://abc.example/bye.mp3", loop=1),
    Pause(2),
    Redirect("/again", method="POST"),
    UnknownVerb("Gather", {"input": "dtmf"}, children=(UnknownVerb("Say", text="Press 1"),)),
    Hangup(),
)


def test_render_then_parse_gives_the_verbs_back() -> None:
    assert parse_twiml(render_twiml(*DOCUMENT)).verbs == DOCUMENT


def test_parse_then_render_is_stable() -> None:
    xml = render_twiml(*DOCUMENT)
    assert render_twiml(*parse_twiml(xml).verbs) == xml


def test_parse_accepts_bytes_and_whitespace() -> None:
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n  <Hangup/>\n</Response>\n'
    assert parse_twiml(xml.encode()).verbs == (Hangup(),)
    assert parse_twiml("<Response/>").verbs == ()


def test_parse_keeps_invalid_streams_for_the_caller_to_judge() -> None:
    xml = '<Response><Start><Stream url="https://x/y?z=1" track="bogus"/></Start></Response>'
    (start,) = parse_twiml(xml).verbs
    assert isinstance(start, Start)
    assert start.stream is not None
    assert [p.code for p in check_stream(start.stream, "Start")] == [31922, None, 31941]


def test_parse_keeps_other_connect_nouns() -> None:
    xml = (
        '<Response><Connect><Room>r1</Room><Stream url="wss://a/1"/><Stream url="wss://a/2"/>'
        "</Connect></Response>"
    )
    connect = _only_connect(parse_twiml(xml))
    assert connect.stream == Stream("wss://a/1")
    assert connect.others == (
        UnknownVerb("Room", text="r1"),
        UnknownVerb("Stream", {"url": "wss://a/2"}),
    )


def test_parse_reads_say_with_ssml_as_its_text() -> None:
    xml = '<Response><Say>Hello <emphasis level="strong">there</emphasis>!</Say></Response>'
    assert parse_twiml(xml).verbs == (Say("Hello there!"),)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("", "not well-formed XML"),
        ("<Response><Say>unclosed</Response>", "not well-formed XML"),
        ("<html><body>Not found</body></html>", "root element is <html>, not <Response>"),
        ("<response/>", "root element is <response>"),
        ('<!DOCTYPE r [<!ENTITY a "x">]><Response/>', "DOCTYPE"),
        ("<Response>hello<Hangup/></Response>", "text 'hello' directly inside <Response>"),
        ("<Response><Hangup/>tail</Response>", "text 'tail'"),
        ("<Response><Connect>x<Stream/></Connect></Response>", "inside <Connect>"),
        ('<Response><Pause length="2s"/></Response>', "length must be a whole number"),
        ('<Response><Say loop="-1">x</Say></Response>', "loop must be a whole number"),
        ("<Response><Connect><Stream><Say/></Stream></Connect></Response>", "only <Parameter>"),
    ],
)
def test_parse_refuses_what_is_not_twiml(xml: str, message: str) -> None:
    with pytest.raises(TwiMLError, match=message):
        parse_twiml(xml)


XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff").filter(
        lambda c: c in "\t\n\r" or c >= " "
    ),
    max_size=60,
)


@given(name=XML_TEXT.filter(bool), value=XML_TEXT)
def test_any_parameter_round_trips(name: str, value: str) -> None:
    xml = connect_stream(URL, parameters={name: value})
    stream = _only_connect(parse_twiml(xml)).stream
    assert stream is not None
    assert stream.parameters == (Parameter(name, value),)


def _is_xml_char(code: int) -> bool:
    # https://www.w3.org/TR/xml/#charsets, the Char production
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def test_exactly_the_characters_xml_cannot_carry_are_refused() -> None:
    from mediastreams.twiml.writer import _NOT_XML_CHAR

    edges = {0, 0x8, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE, 0x1F, 0x20, 0x7F, 0xD7FF, 0xD800, 0xDFFF}
    edges |= {0xE000, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x10FFFF}
    for code in sorted(edges | set(range(0, 0x110000, 997))):
        refused = _NOT_XML_CHAR.search(chr(code)) is not None
        assert refused is not _is_xml_char(code), hex(code)


def test_check_verb_judges_the_stream_and_the_method() -> None:
    assert check_verb(Connect(Stream(URL))) == []
    (problem,) = check_verb(Connect(Stream("ws://abc.example/s")))
    assert problem.code == 31922
    (problem,) = check_verb(Redirect("https://abc.example/next", method="PUT"))
    assert "Use GET or POST" in problem.hint
    assert check_verb(Say("hello")) == []
    assert check_verb(Connect(Stream("ws://127.0.0.1/s")), allow_insecure_loopback=True) == []
