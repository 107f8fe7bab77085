"""The documented shape of every Media Streams frame, as data the diagnostics walk.

https://www.twilio.com/docs/voice/media-streams/websocket-messages. Each field maps to a
:class:`Field` kind, or to a nested mapping; a name ending in ``"?"`` is optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeAlias

__all__ = [
    "ALIASES",
    "APP_EXAMPLES",
    "APP_SCHEMAS",
    "NOT_APP_EVENTS",
    "TWILIO_SCHEMAS",
    "Field",
    "Schema",
]


class Field(StrEnum):
    """What a field holds."""

    STR = "str"
    """A string."""
    COUNTER = "counter"
    """One of Twilio's counters: a string of ASCII digits (``"52"``)."""
    INT = "int"
    """A JSON number."""
    PAYLOAD = "payload"
    """Base64 of headerless mu-law."""
    TRACKS = "tracks"
    """A list of strings."""
    PARAMS = "params"
    """An object of strings to strings."""


Schema: TypeAlias = Mapping[str, "Field | Schema"]

TWILIO_SCHEMAS: Mapping[str, Schema] = {
    "connected": {"protocol": Field.STR, "version": Field.STR},
    "start": {
        "sequenceNumber": Field.COUNTER,
        "streamSid": Field.STR,
        "start": {
            "streamSid": Field.STR,
            "accountSid": Field.STR,
            "callSid": Field.STR,
            "tracks": Field.TRACKS,
            "customParameters?": Field.PARAMS,
            "mediaFormat": {"encoding": Field.STR, "sampleRate": Field.INT, "channels": Field.INT},
        },
    },
    "media": {
        "sequenceNumber": Field.COUNTER,
        "streamSid": Field.STR,
        "media": {
            "track": Field.STR,
            "chunk": Field.COUNTER,
            "timestamp": Field.COUNTER,
            "payload": Field.PAYLOAD,
        },
    },
    "dtmf": {
        "sequenceNumber": Field.COUNTER,
        "streamSid": Field.STR,
        "dtmf": {"track": Field.STR, "digit": Field.STR},
    },
    "mark": {"sequenceNumber": Field.COUNTER, "streamSid": Field.STR, "mark": {"name": Field.STR}},
    "stop": {
        "sequenceNumber": Field.COUNTER,
        "streamSid": Field.STR,
        "stop": {"accountSid": Field.STR, "callSid": Field.STR},
    },
}

APP_SCHEMAS: Mapping[str, Schema] = {
    "media": {"streamSid": Field.STR, "media": {"payload": Field.PAYLOAD}},
    "mark": {"streamSid": Field.STR, "mark": {"name": Field.STR}},
    "clear": {"streamSid": Field.STR},
}

APP_EXAMPLES = {
    "media": '{"event":"media","streamSid":"MZ...","media":{"payload":"<base64 mu-law>"}}',
    "mark": '{"event":"mark","streamSid":"MZ...","mark":{"name":"reply-1"}}',
    "clear": '{"event":"clear","streamSid":"MZ..."}',
}

# Names people reach for that are not in the protocol, and what they meant.
ALIASES = {
    "data": "payload",
    "audio": "payload",
    "sid": "streamSid",
    "type": "event",
    "streamsid": "streamSid",
}

# Events the app may think it can send, and what to do instead.
NOT_APP_EVENTS = {
    "stop": "There is no outbound stop: close the WebSocket, or end the call over Twilio's REST "
    "API (update the Call with Status=completed).",
    "hangup": "There is no hangup event: close the WebSocket, or end the call over Twilio's "
    "REST API (update the Call with Status=completed).",
    "dtmf": "Twilio has no outbound DTMF on a Media Stream; play the tones as audio instead.",
    "start": "Only Twilio sends start.",
    "connected": "Only Twilio sends connected.",
}
