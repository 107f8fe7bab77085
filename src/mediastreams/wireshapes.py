"""The exact JSON shapes of each frame, as msgspec decodes them on the fast path.

:func:`mediastreams.messages.parse` decodes a frame into one of these in one typed pass, then
builds the public message from it. Frames from Twilio may grow fields over time, so unknown
keys are tolerated there; frames from the app are held to the documented shape, since Twilio
logs 31951 for an "extra field" (https://www.twilio.com/docs/api/errors/31951). Also here:
how many keys each shape has, for the fast path's test that no key came twice.
"""

from __future__ import annotations

import msgspec

__all__: list[str] = []  # for mediastreams.messages only

# No wire shape can hold a reference cycle, so they stay out of the garbage collector's
# tracking (gc=False): cheaper to allocate, 50 times a second each way.


class _MediaFormatWire(msgspec.Struct, gc=False, rename="camel"):
    encoding: str
    sample_rate: int
    channels: int


class _StartBodyWire(msgspec.Struct, gc=False, rename="camel"):
    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: list[str]
    media_format: _MediaFormatWire
    custom_parameters: dict[str, str] = {}


class _ConnectedWire(msgspec.Struct, gc=False, tag_field="event", tag="connected"):
    protocol: str
    version: str


class _StartWire(msgspec.Struct, gc=False, tag_field="event", tag="start", rename="camel"):
    sequence_number: str
    stream_sid: str
    start: _StartBodyWire


class _MediaBodyWire(msgspec.Struct, gc=False):
    track: str
    chunk: str
    timestamp: str
    payload: bytes


class _MediaWire(msgspec.Struct, gc=False, tag_field="event", tag="media", rename="camel"):
    sequence_number: str
    stream_sid: str
    media: _MediaBodyWire


class _DTMFBodyWire(msgspec.Struct, gc=False):
    track: str
    digit: str


class _DTMFWire(msgspec.Struct, gc=False, tag_field="event", tag="dtmf", rename="camel"):
    sequence_number: str
    stream_sid: str
    dtmf: _DTMFBodyWire


class _MarkBodyWire(msgspec.Struct, gc=False):
    name: str


class _MarkWire(msgspec.Struct, gc=False, tag_field="event", tag="mark", rename="camel"):
    sequence_number: str
    stream_sid: str
    mark: _MarkBodyWire


class _AppMarkBodyWire(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    name: str


class _StopBodyWire(msgspec.Struct, gc=False, rename="camel"):
    account_sid: str
    call_sid: str


class _StopWire(msgspec.Struct, gc=False, tag_field="event", tag="stop", rename="camel"):
    sequence_number: str
    stream_sid: str
    stop: _StopBodyWire


class _AppMediaBodyWire(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    payload: bytes


class _AppMediaWire(
    msgspec.Struct,
    gc=False,
    tag_field="event",
    tag="media",
    rename="camel",
    forbid_unknown_fields=True,
):
    stream_sid: str
    media: _AppMediaBodyWire


class _AppMarkWire(
    msgspec.Struct,
    gc=False,
    tag_field="event",
    tag="mark",
    rename="camel",
    forbid_unknown_fields=True,
):
    stream_sid: str
    mark: _AppMarkBodyWire


class _AppClearWire(
    msgspec.Struct,
    gc=False,
    tag_field="event",
    tag="clear",
    rename="camel",
    forbid_unknown_fields=True,
):
    stream_sid: str


_TWILIO_DECODER = msgspec.json.Decoder(
    _ConnectedWire | _StartWire | _MediaWire | _DTMFWire | _MarkWire | _StopWire
)
_APP_DECODER = msgspec.json.Decoder(_AppMediaWire | _AppMarkWire | _AppClearWire)


# Members (keys) of each wire shape, nested ones included. msgspec keeps the last of two equal
# keys, so a frame is checked for repeats unless it has no more ":" than its shape has keys:
# each key has its colon, so there is then no room for a second copy of one.
_MEMBERS: dict[type, int] = {
    _ConnectedWire: 3,
    _MediaWire: 8,
    _DTMFWire: 6,
    _MarkWire: 5,
    _StopWire: 6,
    _AppMediaWire: 4,
    _AppMarkWire: 4,
    _AppClearWire: 2,
}  # _StartWire is absent: its customParameters vary, so a start frame is always checked
_APP_WIRES = frozenset({_AppMediaWire, _AppMarkWire, _AppClearWire})
