"""The documented shape of every Media Streams frame, as data the diagnostics walk.

https://www.twilio.com/docs/voice/media-streams/websocket-messages. Kinds: ``"str"``,
``"counter"`` (a string of ASCII digits), ``"int"`` (a JSON number), ``"payload"`` (base64
mu-law), ``"tracks"`` (list of str), ``"params"`` (object of str -> str), or a nested mapping.
A name ending in ``"?"`` is optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALIASES",
    "APP_EXAMPLES",
    "APP_SCHEMAS",
    "NOT_APP_EVENTS",
    "TWILIO_SCHEMAS",
    "Schema",
]

Schema = Mapping[str, Any]

TWILIO_SCHEMAS: Mapping[str, Schema] = {
    "connected": {"protocol": "str", "version": "str"},
    "start": {
        "sequenceNumber": "counter",
        "streamSid": "str",
        "start": {
            "streamSid": "str",
            "accountSid": "str",
            "callSid": "str",
            "tracks": "tracks",
            "customParameters?": "params",
            "mediaFormat": {"encoding": "str", "sampleRate": "int", "channels": "int"},
        },
    },
    "media": {
        "sequenceNumber": "counter",
        "streamSid": "str",
        "media": {"track": "str", "chunk": "counter", "timestamp": "counter", "payload": "payload"},
    },
    "dtmf": {
        "sequenceNumber": "counter",
        "streamSid": "str",
        "dtmf": {"track": "str", "digit": "str"},
    },
    "mark": {"sequenceNumber": "counter", "streamSid": "str", "mark": {"name": "str"}},
    "stop": {
        "sequenceNumber": "counter",
        "streamSid": "str",
        "stop": {"accountSid": "str", "callSid": "str"},
    },
}

APP_SCHEMAS: Mapping[str, Schema] = {
    "media": {"streamSid": "str", "media": {"payload": "payload"}},
    "mark": {"streamSid": "str", "mark": {"name": "str"}},
    "clear": {"streamSid": "str"},
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
