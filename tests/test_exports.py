"""The public API is pinned: a name added or removed here is a deliberate change."""

import mediastreams

EXPECTED = [
    "AudioError",
    "EmulatorError",
    "LocalProtocolError",
    "MediaStreamsError",
    "ProtocolError",
    "RemoteProtocolError",
    "SignatureError",
    "StreamClosed",
    "StreamTimeout",
    "TwiMLError",
]


def test_all_is_pinned() -> None:
    assert mediastreams.__all__ == EXPECTED


def test_all_is_sorted_and_resolvable() -> None:
    assert mediastreams.__all__ == sorted(mediastreams.__all__)
    for name in mediastreams.__all__:
        assert getattr(mediastreams, name) is not None, name
