"""The public API is pinned: a name added or removed here is a deliberate change."""

import mediastreams

EXPECTED = [
    "DTMF",
    "AppProtocol",
    "AudioError",
    "CallReport",
    "CallResult",
    "Clear",
    "Connected",
    "EmulatorError",
    "LocalProtocolError",
    "Mark",
    "MarkHandle",
    "Media",
    "MediaFormat",
    "MediaStream",
    "MediaStreamsError",
    "Outcome",
    "PlayHandle",
    "ProtocolError",
    "RemoteProtocolError",
    "SignatureError",
    "Start",
    "Stop",
    "StreamClosed",
    "StreamTimeout",
    "TwiMLError",
    "TwilioProtocol",
    "UnknownMessage",
    "Violation",
    "parse",
    "place_call",
    "serialize",
]


def test_all_is_pinned() -> None:
    assert mediastreams.__all__ == EXPECTED


def test_all_is_sorted_and_resolvable() -> None:
    assert mediastreams.__all__ == sorted(mediastreams.__all__, key=lambda n: (not n.isupper(), n))
    for name in mediastreams.__all__:
        assert getattr(mediastreams, name) is not None, name


def test_submodules_pin_their_all() -> None:
    from mediastreams import diagnostics, messages, protocol, trace

    assert "parse" in messages.__all__ and "serialize" in messages.__all__
    assert {"AppProtocol", "TwilioProtocol", "State"} <= set(protocol.__all__)
    assert "Violation" in diagnostics.__all__
    assert {"TraceWriter", "read_trace"} <= set(trace.__all__)
    for module in (diagnostics, messages, protocol, trace):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_the_fastapi_extra_brings_what_request_form_needs() -> None:
    from importlib.metadata import requires

    fastapi_extra = [
        r for r in requires("mediastreams") or [] if "extra == 'fastapi'" in r.replace('"', "'")
    ]
    assert any(r.startswith("python-multipart") for r in fastapi_extra), fastapi_extra


SESSION = [
    "CLOSE_INTERNAL_ERROR",
    "DEFAULT_FRAME_MS",
    "DEFAULT_LEAD_MS",
    "DEFAULT_MARK_INTERVAL_MS",
    "DEFAULT_START_TIMEOUT_MS",
    "MAX_CLOSE_REASON_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_GAP_FILL_MS",
    "AudioFeed",
    "AudioInput",
    "Event",
    "MarkHandle",
    "MediaStream",
    "Outcome",
    "Pacer",
    "PlayHandle",
    "PushTransport",
    "Transport",
    "close_reason",
]


def test_the_session_module_keeps_its_names_wherever_they_are_defined() -> None:
    from mediastreams import pacing, session

    assert session.__all__ == SESSION
    for name in SESSION:
        assert getattr(session, name) is not None, name
    assert session.Pacer is pacing.Pacer and session.Outcome is pacing.Outcome
    assert session.PlayHandle is mediastreams.PlayHandle
    for name in pacing.__all__:
        assert hasattr(pacing, name), name
