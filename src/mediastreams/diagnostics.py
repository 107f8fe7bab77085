"""What is wrong with a frame, in Twilio's terms: the error code, who sent it, a hint.

Twilio answers a bad frame from the app by ignoring it and logging a warning in the console
(31950 for a binary or undecodable frame, 31951 for an invalid one); the caller just hears
nothing. This module names the mistake precisely instead: ``unknown field media.playload;
did you mean payload?``, a WAV header inside a payload, a counter sent as a number.

It runs only on frames that failed the fast path in :mod:`mediastreams.messages`, so its cost
does not touch valid traffic. Error texts: https://www.twilio.com/docs/api/errors (31900-31960).
"""

from __future__ import annotations

import binascii
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CODES",
    "Code",
    "Finding",
    "Violation",
    "container_format",
    "diagnose_binary",
    "diagnose_text",
    "local_violation",
]

Sender = Literal["twilio", "app"]


@dataclass(frozen=True, slots=True)
class Code:
    """One of Twilio's Media Streams error or warning codes."""

    code: int
    name: str
    level: Literal["error", "warning"]


# The Stream range of https://www.twilio.com/docs/api/errors, as far as this toolkit uses it,
# and the two webhook errors the emulator's TwiML leg reports (11200, 12100).
CODES: Mapping[int, Code] = {
    c.code: c
    for c in (
        Code(11200, "HTTP retrieval failure", "error"),
        Code(12100, "Document parse failure", "error"),
        Code(31900, "Unknown Error", "error"),
        Code(31901, "WebSocket - Connection Timeout", "error"),
        Code(31902, "WebSocket - Connection Refused", "error"),
        Code(31903, "WebSocket - Connection Broken Pipe", "error"),
        Code(31904, "WebSocket - Host Unreachable", "error"),
        Code(31910, "WebSocket - SSL Protocol Error", "error"),
        Code(31920, "WebSocket - Handshake Error", "error"),
        Code(31921, "WebSocket - Close Error", "error"),
        Code(31922, "Stream - URL Schema Not Supported", "error"),
        Code(31923, "Stream - Malformed URL", "error"),
        Code(31924, "WebSocket - Protocol Error", "error"),
        Code(31930, "Media - Buffer Overflow", "warning"),
        Code(31931, "Media - Media Discarded", "warning"),
        Code(31940, "Stream - Invalid connectorName", "error"),
        Code(31941, "Stream - Invalid Track configuration", "error"),
        Code(31950, "Protocol - Malformed Message", "warning"),
        Code(31951, "Protocol - Invalid Message", "warning"),
        Code(31953, "Media - RTP timeout", "warning"),
    )
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One protocol mistake.

    Attributes:
        code: Twilio's error code (see :data:`CODES`).
        kind: a stable short name for the mistake, such as ``"unknown-field"``.
        sender: who sent the faulty frame, ``"app"`` or ``"twilio"``.
        message: what is wrong, in a sentence.
        hint: how to fix it.
        frame: the frame as sent (a binary frame as base64), when there is one.
        path: the field at fault, dotted (``"media.payload"``), when there is one.
    """

    code: int
    kind: str
    sender: Sender
    message: str
    hint: str
    frame: str | None = field(default=None, repr=False)
    path: str | None = None

    @property
    def name(self) -> str:
        """Twilio's name for the code."""
        known = CODES.get(self.code)
        return known.name if known else "Unknown Error"

    def describe(self) -> str:
        """``"31951 Protocol - Invalid Message: <message>. <hint>"``."""
        stop = "" if self.message.endswith((".", "?", "!")) else "."
        return f"{self.code} {self.name}: {self.message}{stop} {self.hint}".rstrip()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``mediastreams inspect --json`` and the emulator's report."""
        return {
            "code": self.code,
            "kind": self.kind,
            "from": self.sender,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """A violation, and where it was: the trace line of the frame, and when (seconds).

    ``line`` and ``t`` are ``None`` for what no frame caused (a refused connection).
    """

    violation: Violation
    line: int | None
    t: float | None

    def to_dict(self) -> dict[str, Any]:
        """The shape of ``mediastreams inspect --json``: the violation, ``line`` and ``t``."""
        return {**self.violation.to_dict(), "line": self.line, "t": self.t}


def local_violation(kind: str, message: str, hint: str = "", *, code: int = 31951) -> Violation:
    """A mistake of the app's own, caught before the frame left (for LocalProtocolError)."""
    return Violation(code, kind, "app", message, hint or _LOCAL_HINTS.get(kind, ""))


_LOCAL_HINTS = {
    "empty-payload": "Send at least one byte of mu-law audio, or send nothing.",
    "missing-stream-sid": "Use the streamSid from the start frame.",
}

# --- schemas ---------------------------------------------------------------------------------
# The documented shape of each frame (https://www.twilio.com/docs/voice/media-streams/
# websocket-messages). Kinds: "str", "counter" (a string of digits), "int" (a JSON number),
# "payload" (base64 mu-law), "tracks" (list of str), "params" (object of str -> str), or a
# nested dict. A name ending in "?" is optional.

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

_APP_EXAMPLES = {
    "media": '{"event":"media","streamSid":"MZ...","media":{"payload":"<base64 mu-law>"}}',
    "mark": '{"event":"mark","streamSid":"MZ...","mark":{"name":"reply-1"}}',
    "clear": '{"event":"clear","streamSid":"MZ..."}',
}

# Names people reach for that are not in the protocol, and what they meant.
_ALIASES = {
    "data": "payload",
    "audio": "payload",
    "sid": "streamSid",
    "type": "event",
    "streamsid": "streamSid",
}

# Events the app may think it can send, and what to do instead.
_NOT_APP_EVENTS = {
    "stop": "There is no outbound stop: close the WebSocket, or end the call over Twilio's REST "
    "API (update the Call with Status=completed).",
    "hangup": "There is no hangup event: close the WebSocket, or end the call over Twilio's "
    "REST API (update the Call with Status=completed).",
    "dtmf": "Twilio has no outbound DTMF on a Media Stream; play the tones as audio instead.",
    "start": "Only Twilio sends start.",
    "connected": "Only Twilio sends connected.",
}


def diagnose_binary(data: bytes, *, sender: Sender = "app") -> list[Violation]:
    """A binary WebSocket frame: Twilio logs 31950 and ignores it."""
    return [
        Violation(
            31950,
            "binary-frame",
            sender,
            f"a binary WebSocket frame of {len(data)} bytes",
            "Send every frame as JSON text (websocket.send_text / send(str)), with the audio "
            "base64-encoded in media.payload.",
            frame=binascii.b2a_base64(data[:4096], newline=False).decode("ascii"),
        )
    ]


def diagnose_text(text: str | bytes, *, sender: Sender) -> list[Violation]:
    """Every mistake in one text frame, most important first; ``[]`` if it is valid.

    A frame from Twilio with an unknown ``event`` is valid (it becomes an
    :class:`~mediastreams.messages.UnknownMessage`); from the app it is a 31951.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return [
                Violation(
                    31950,
                    "not-utf8",
                    sender,
                    "the text frame is not valid UTF-8",
                    "Encode frames as UTF-8 JSON text.",
                )
            ]
    return _Diagnosis(text, sender).run()


class _Diagnosis:
    def __init__(self, text: str, sender: Sender) -> None:
        self.text = text
        self.sender: Sender = sender
        self.found: list[Violation] = []

    def add(self, code: int, kind: str, message: str, hint: str, path: str | None = None) -> None:
        self.found.append(Violation(code, kind, self.sender, message, hint, self.text, path))

    def run(self) -> list[Violation]:
        frame = self._load()
        if frame is None:
            return self.found
        event = frame.get("event")
        schemas = TWILIO_SCHEMAS if self.sender == "twilio" else APP_SCHEMAS
        if self._check_event(frame, event, schemas):
            assert isinstance(event, str)
            self._check_object(frame, schemas[event], "", skip=frozenset({"event"}))
            self._check_consistency(frame, event)
        return self.found

    def _load(self) -> dict[str, Any] | None:
        try:
            frame = json.loads(self.text)
        except ValueError as error:
            self.add(
                31951,
                "not-json",
                f"the frame is not JSON ({error})",
                "Send json.dumps(...) of an object; check quotes and brackets.",
            )
            return None
        if not isinstance(frame, dict):
            self.add(
                31951,
                "not-object",
                f"the frame is JSON {type(frame).__name__}, not an object",
                'Send one JSON object per frame, such as {"event":"clear","streamSid":"MZ..."}.',
            )
            return None
        return frame

    def _check_event(self, frame: dict[str, Any], event: object, schemas: Schema) -> bool:
        if event is None:
            guess = _did_you_mean("event", [k for k in frame if k not in schemas])
            hint = f"Rename `{guess}` to `event`." if guess else 'Add "event": "media".'
            self.add(31951, "missing-field", "the frame has no `event`", hint, "event")
            return False
        if not isinstance(event, str):
            self.add(
                31951,
                "wrong-type",
                f"`event` is {_json_type(event)}, not a string",
                'Write the event name as a string: "event": "media".',
                "event",
            )
            return False
        if event in schemas:
            return True
        if self.sender == "app":
            self._unknown_app_event(event)
        return False

    def _unknown_app_event(self, event: str) -> None:
        guess = _did_you_mean(event, list(APP_SCHEMAS))
        if event.lower() in _NOT_APP_EVENTS:
            hint = _NOT_APP_EVENTS[event.lower()]
        elif guess:
            hint = f"Did you mean `{guess}`? {_APP_EXAMPLES[guess]}"
        else:
            hint = "The app may send only media, mark and clear."
        self.add(31951, "unknown-event", f"unknown event `{event}`", hint, "event")

    def _check_object(
        self, obj: dict[str, Any], schema: Schema, prefix: str, skip: frozenset[str] = frozenset()
    ) -> None:
        expected = {name.rstrip("?"): kind for name, kind in schema.items()}
        required = [name for name in schema if not name.endswith("?")]
        unknown = [key for key in obj if key not in expected and key not in skip]
        matched: set[str] = set()
        if self.sender == "app":
            for key in unknown:
                guess = _did_you_mean(key, [n for n in expected if n not in obj])
                if guess:
                    matched.add(guess)
                self._unknown_field(prefix, key, guess)
        for name in required:
            if name not in obj and name not in matched:
                self._missing_field(prefix, name)
        for name, kind in expected.items():
            if name in obj:
                self._check_value(obj[name], kind, prefix + name)

    def _unknown_field(self, prefix: str, key: str, guess: str | None) -> None:
        path = prefix + key
        if guess:
            message = f"unknown field `{path}`; did you mean `{guess}`?"
            hint = f"Rename `{path}` to `{prefix + guess}`."
        else:
            message = f"unknown field `{path}`"
            event = self.text and _event_of(self.text)
            shape = _APP_EXAMPLES.get(event or "", "")
            hint = f"Remove it: Twilio rejects extra fields (31951). The frame is {shape}".rstrip()
        self.add(31951, "unknown-field", message, hint, path)

    def _missing_field(self, prefix: str, name: str) -> None:
        path = prefix + name
        shape = _APP_EXAMPLES.get(_event_of(self.text) or "", "") if self.sender == "app" else ""
        hint = f"Add `{path}`." + (f" The frame is {shape}" if shape else "")
        self.add(31951, "missing-field", f"`{path}` is missing", hint, path)

    def _check_value(self, value: object, kind: Any, path: str) -> None:
        if isinstance(kind, Mapping):
            if isinstance(value, dict):
                self._check_object(value, kind, path + ".")
            else:
                self._wrong_type(path, value, "an object")
        elif kind == "payload":
            self._check_payload(value, path)
        elif not _KIND_CHECKS[kind](value):
            self._wrong_type(path, value, _KIND_NAMES[kind])

    def _wrong_type(self, path: str, value: object, wanted: str) -> None:
        hint = f"Send `{path}` as {wanted}."
        if wanted.startswith("a string of digits") and isinstance(value, int):
            hint = f'Twilio\'s counters are strings: "{path.split(".")[-1]}": "{value}".'
        message = f"`{path}` is {_json_type(value)}, not {wanted}"
        self.add(31951, "wrong-type", message, hint, path)

    def _check_payload(self, value: object, path: str) -> None:
        if not isinstance(value, str):
            self._wrong_type(path, value, "a base64 string")
            return
        try:
            payload = binascii.a2b_base64(value, strict_mode=True)
        except ValueError as error:  # binascii.Error, or a non-ASCII string
            self.add(
                31924,
                "payload-not-base64",
                f"`{path}` is not valid base64 ({error})",
                "Encode the raw mu-law bytes with base64.b64encode(audio).decode('ascii'): "
                "standard alphabet, with padding, no line breaks.",
                path,
            )
            return
        if not payload:
            self.add(
                31924,
                "payload-empty",
                f"`{path}` is empty",
                "Send at least one byte of audio (160 bytes = 20 ms), or no media frame.",
                path,
            )
            return
        if self.sender == "app":
            self._check_container(payload, path)

    def _check_container(self, payload: bytes, path: str) -> None:
        kind = container_format(payload)
        if kind is None:
            return
        self.add(
            31924,
            "payload-has-header",
            f"`{path}` starts with a {kind} file header, not raw mu-law audio",
            "Twilio plays the bytes as mu-law, so the caller hears a click and noise. Convert "
            "the file to headerless mu-law 8000 Hz mono first (mediastreams.audio, or "
            "`mediastreams convert IN -o OUT.ulaw`) and strip the header.",
            path,
        )

    def _check_consistency(self, frame: dict[str, Any], event: str) -> None:
        sid = frame.get("streamSid")
        if isinstance(sid, str) and not sid:
            self.add(
                31951,
                "wrong-stream-sid",
                "`streamSid` is empty",
                "Use the streamSid from the start frame.",
                "streamSid",
            )
        body = frame.get("start")
        if event == "start" and isinstance(body, dict):
            inner = body.get("streamSid")
            if isinstance(inner, str) and isinstance(sid, str) and inner != sid:
                self.add(
                    31951,
                    "wrong-stream-sid",
                    f"`start.streamSid` ({inner}) differs from `streamSid` ({sid})",
                    "A start frame names one stream.",
                    "start.streamSid",
                )


def _is_counter(value: object) -> bool:
    return isinstance(value, str) and value.isdigit()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_tracks(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_params(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


_KIND_CHECKS = {
    "str": lambda value: isinstance(value, str),
    "counter": _is_counter,
    "int": _is_int,
    "tracks": _is_tracks,
    "params": _is_params,
}
_KIND_NAMES = {
    "str": "a string",
    "counter": 'a string of digits (such as "7")',
    "int": "a JSON number",
    "tracks": "a list of strings",
    "params": "an object of strings",
}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _event_of(text: str) -> str | None:
    match = re.search(r'"event"\s*:\s*"([^"]*)"', text)
    return match.group(1) if match else None


def _did_you_mean(key: str, candidates: list[str]) -> str | None:
    """The field that ``key`` most likely meant, among ``candidates``."""
    alias = _ALIASES.get(key) or _ALIASES.get(key.lower())
    if alias in candidates:
        return alias
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
    for candidate in candidates:
        if candidate.lower() == camel.lower():
            return candidate
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


# --- audio containers in a payload ------------------------------------------------------------


def container_format(payload: bytes) -> str | None:
    """The file format whose header starts ``payload`` (``"WAV"``, ``"MP3"``...), or ``None``.

    Raw mu-law is headerless, so these signatures mean a file was sent as audio. MP3 frame
    sync (0xFFE) is also common in quiet mu-law (0xFF is silence), so an MP3 is recognised only
    by an ID3 tag or by two valid frame headers one frame apart.
    """
    head = payload[:12]
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return "WAV"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:3] == b"ID3" and len(head) >= 4 and head[3] < 0x0A:
        return "MP3 (ID3)"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:4] == b"fLaC":
        return "FLAC"
    if _mp3_frames_at(payload):
        return "MP3"
    return None


_MP3_BITRATES_KBPS = {  # (MPEG-1?, layer) -> table by index; layer III and II cover real files
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(header: bytes) -> int | None:
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3
    layer = 4 - ((header[1] >> 1) & 3)
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    if version == 1 or layer not in (2, 3) or rate_index == 3 or bitrate_index in (0, 15):
        return None
    mpeg1 = version == 3
    bitrate = _MP3_BITRATES_KBPS[(mpeg1, layer)][bitrate_index] * 1000
    sample_rate = _MP3_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    factor = 144 if (mpeg1 or layer == 2) else 72
    return factor * bitrate // sample_rate + padding


def _mp3_frames_at(payload: bytes) -> bool:
    length = _mp3_frame_length(payload[:4])
    if length is None:
        return False
    return _mp3_frame_length(payload[length : length + 4]) is not None
