"""What is wrong with a frame, in Twilio's terms: the error code, who sent it, a hint.

Twilio answers a bad frame from the app by ignoring it and logging a warning in the console
(31950 for a binary or undecodable frame, 31951 for an invalid one); the caller just hears
nothing. This module names the mistake precisely instead: ``unknown field media.playload;
did you mean payload?``, a WAV header inside a payload, a counter sent as a number.

It runs only on frames that failed the fast path in :mod:`mediastreams.messages`, so its cost
does not touch valid traffic. Error texts: https://www.twilio.com/docs/api/errors (31900-31960).

Its seam: what a mistake *is* (Twilio's codes, :class:`Violation`, :class:`Finding`) lives in
:mod:`mediastreams.violations`, which every layer reports with; this module is the reader that
*finds* them in a frame, walking the documented shapes of :mod:`mediastreams.schemas`. The
names of both are importable from here.
"""

from __future__ import annotations

import binascii
import difflib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import strictjson
from .containers import container_format
from .schemas import (
    ALIASES,
    APP_EXAMPLES,
    APP_SCHEMAS,
    NOT_APP_EVENTS,
    TWILIO_SCHEMAS,
    Field,
    Schema,
)
from .violations import CODES, Code, Finding, Violation, file_in_payload, local_violation
from .wireformat import Sender

__all__ = [
    "APP_SCHEMAS",
    "CODES",
    "MAX_VIOLATIONS",
    "TWILIO_SCHEMAS",
    "Code",
    "Finding",
    "Violation",
    "container_format",
    "diagnose_binary",
    "diagnose_text",
    "file_in_payload",
    "is_counter",
    "local_violation",
    "read_frame",
]


def diagnose_binary(data: bytes, *, sender: Sender = "app") -> list[Violation]:
    """A binary WebSocket frame: Twilio logs 31950 and ignores it."""
    return [
        Violation(
            31950,
            kind="binary-frame",
            sender=sender,
            message=f"a binary WebSocket frame of {len(data)} bytes",
            hint="Send every frame as JSON text (websocket.send_text / send(str)), with the audio "
            "base64-encoded in media.payload.",
            frame=binascii.b2a_base64(data[:4096], newline=False).decode("ascii"),
        )
    ]


def diagnose_text(text: str | bytes, *, sender: Sender) -> list[Violation]:
    """Every mistake in one text frame, most important first; ``[]`` if it is valid.

    A frame from Twilio with an unknown ``event`` is valid (it becomes an
    :class:`~mediastreams.messages.UnknownMessage`); from the app it is a 31951. At most
    :data:`MAX_VIOLATIONS` are listed, and the time taken is linear in the frame's length.
    """
    return read_frame(text, sender=sender)[1]


def read_frame(
    text: str | bytes, *, sender: Sender, headers: bool = True
) -> tuple[dict[str, Any] | None, list[Violation]]:
    """The frame as a JSON object (``None`` when it is none) and every mistake in it.

    The JSON is read strictly (:mod:`mediastreams.strictjson`): a key twice in one object, a
    lone surrogate, ``NaN``, nesting deeper than 32 levels or more than 1024 keys are 31951.
    ``headers=False`` leaves out the file-header check of the app's payload (31924), which
    :func:`~mediastreams.messages.parse` makes itself.
    """
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 = Violation(
                31950,
                kind="not-utf8",
                sender=sender,
                message="the text frame is not valid UTF-8",
                hint="Encode frames as UTF-8 JSON text.",
            )
            return None, [not_utf8]
    diagnosis = _Diagnosis(text, sender, headers=headers)
    return diagnosis.run(), diagnosis.found


MAX_VIOLATIONS = 16
"""Violations listed for one frame; past this the frame is wrong enough to say so."""
_MAX_GUESSES = 8  # unknown keys per object given a did-you-mean (difflib is not cheap)
_MAX_NAME = 64  # characters of a key or event name quoted in a message

_STRICT_JSON_KINDS: Mapping[type[strictjson.StrictJSONError], tuple[str, str]] = {
    strictjson.NotJSON: (
        "not-json",
        "Send json.dumps(...) of an object; check quotes and brackets.",
    ),
    strictjson.DuplicateKey: (
        "duplicate-field",
        "Send each field once: parsers disagree on which of two copies wins.",
    ),
    strictjson.LoneSurrogate: (
        "lone-surrogate",
        "Send UTF-8 text; a character outside the BMP is escaped as a whole surrogate pair "
        "(\\ud83d\\ude00), never half of one.",
    ),
    strictjson.TooDeep: (
        "too-deep",
        "A Media Streams frame nests at most 3 levels: send the documented shape.",
    ),
    strictjson.TooManyMembers: (
        "too-many-fields",
        "Send only the documented fields.",
    ),
    strictjson.NumberTooLong: (
        "number-too-long",
        "Send the documented fields; counters are strings of digits.",
    ),
}


class _Diagnosis:
    def __init__(self, text: str, sender: Sender, *, headers: bool = True) -> None:
        self.text = text
        self.sender: Sender = sender
        self.headers = headers
        self.found: list[Violation] = []
        self.event: str | None = None

    def add(self, code: int, kind: str, message: str, hint: str, path: str | None = None) -> None:
        if len(self.found) < MAX_VIOLATIONS:
            self.found.append(
                Violation(
                    code,
                    kind=kind,
                    sender=self.sender,
                    message=message,
                    hint=hint,
                    frame=self.text,
                    path=path,
                )
            )

    @property
    def full(self) -> bool:
        return len(self.found) >= MAX_VIOLATIONS

    def run(self) -> dict[str, Any] | None:
        frame = self._load()
        if frame is None:
            return None
        event = frame.get("event")
        schemas = TWILIO_SCHEMAS if self.sender == "twilio" else APP_SCHEMAS
        if self._check_event(frame, event, schemas):
            assert isinstance(event, str)
            self.event = event
            self._check_object(frame, schemas[event], "", skip=frozenset({"event"}))
            self._check_consistency(frame, event)
        return frame

    def _load(self) -> dict[str, Any] | None:
        try:
            frame = strictjson.load(self.text)
        except strictjson.StrictJSONError as error:
            kind, hint = _STRICT_JSON_KINDS[type(error)]
            not_json = isinstance(error, strictjson.NotJSON)
            message = f"the frame is not JSON ({error})" if not_json else str(error)
            self.add(31951, kind, message, hint)
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

    def _check_event(
        self, frame: dict[str, Any], event: object, schemas: Mapping[str, Schema]
    ) -> bool:
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
        if event.lower() in NOT_APP_EVENTS:
            hint = NOT_APP_EVENTS[event.lower()]
        elif guess:
            hint = f"Did you mean `{guess}`? {APP_EXAMPLES[guess]}"
        else:
            hint = "The app may send only media, mark and clear."
        self.add(31951, "unknown-event", f"unknown event {_quote(event)}", hint, "event")

    def _check_object(
        self, obj: dict[str, Any], schema: Schema, prefix: str, skip: frozenset[str] = frozenset()
    ) -> None:
        expected = {name.rstrip("?"): kind for name, kind in schema.items()}
        required = [name for name in schema if not name.endswith("?")]
        if self.sender == "app":
            matched = self._unknown_fields(obj, expected, prefix, skip)
        else:
            matched = set()
        for name in required:
            if name not in obj and name not in matched:
                self._missing_field(prefix, name)
        for name, kind in expected.items():
            if name in obj:
                self._check_value(obj[name], kind, prefix + name)

    def _unknown_fields(
        self, obj: dict[str, Any], expected: Mapping[str, Any], prefix: str, skip: frozenset[str]
    ) -> set[str]:
        matched: set[str] = set()
        free = [name for name in expected if name not in obj]
        guesses = 0
        for key in obj:
            if key in expected or key in skip:
                continue
            if self.full:  # enough said about this frame: the rest is not looked at
                break
            guess = None
            if guesses < _MAX_GUESSES:
                guesses += 1
                guess = _did_you_mean(key, free)
            if guess:
                matched.add(guess)
            self._unknown_field(prefix, key, guess)
        return matched

    def _unknown_field(self, prefix: str, key: str, guess: str | None) -> None:
        path = prefix + key[:_MAX_NAME]
        if guess:
            message = f"unknown field {_quote(prefix + key)}; did you mean `{guess}`?"
            hint = f"Rename {_quote(prefix + key)} to `{prefix + guess}`."
        else:
            message = f"unknown field {_quote(prefix + key)}"
            shape = APP_EXAMPLES.get(self.event or "", "")
            hint = f"Remove it: Twilio rejects extra fields (31951). The frame is {shape}".rstrip()
        self.add(31951, "unknown-field", message, hint, path)

    def _missing_field(self, prefix: str, name: str) -> None:
        path = prefix + name
        shape = APP_EXAMPLES.get(self.event or "", "") if self.sender == "app" else ""
        hint = f"Add `{path}`." + (f" The frame is {shape}" if shape else "")
        self.add(31951, "missing-field", f"`{path}` is missing", hint, path)

    def _check_value(self, value: object, kind: Field | Schema, path: str) -> None:
        if not isinstance(kind, Field):
            if isinstance(value, dict):
                self._check_object(value, kind, path + ".")
            else:
                self._wrong_type(path, value, "an object")
        elif kind is Field.PAYLOAD:
            self._check_payload(value, path)
        elif not _FIELD_CHECKS[kind](value):
            self._wrong_type(path, value, _FIELD_NAMES[kind], counter=kind is Field.COUNTER)

    def _wrong_type(self, path: str, value: object, wanted: str, *, counter: bool = False) -> None:
        hint = f"Send `{path}` as {wanted}."
        if counter and isinstance(value, int):
            hint = f'Twilio\'s counters are strings: "{path.split(".")[-1]}": "{value}".'
        message = f"`{path}` is {_json_type(value)}, not {wanted}"
        self.add(31951, "wrong-type", message, hint, path)

    def _check_payload(self, value: object, path: str) -> None:
        if not isinstance(value, str):
            self._wrong_type(path, value, "a base64 string")
            return
        try:
            # Padded base64 only, as msgspec reads it; strict_mode alone lets by some lengths
            # and a whole group of padding ("AAAA====").
            if len(value) % 4:
                raise ValueError(f"{len(value)} characters, not a multiple of 4: padding lost?")
            if value.endswith("==="):
                raise ValueError("more than two '=' of padding")
            payload = binascii.a2b_base64(value, strict_mode=True)
        except ValueError as error:  # binascii.Error, or a non-ASCII string
            self.add(
                31924,
                "payload-not-base64",
                f"`{path}` is not valid base64 ({str(error)[:_MAX_NAME]})",
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
        if self.sender == "app" and self.headers and not self.full:
            kind = container_format(payload)
            if kind is not None:
                self.found.append(file_in_payload(kind, sender="app", frame=self.text))

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
                    f"`start.streamSid` ({_clip(inner)}) differs from `streamSid` ({_clip(sid)})",
                    "A start frame names one stream.",
                    "start.streamSid",
                )


def is_counter(value: object) -> bool:
    """Whether ``value`` is one of Twilio's counters: a string of ASCII digits (``"52"``).

    ``str.isdigit`` alone also takes ``"٣"`` and ``"²"``, which ``int()`` reads as 3 or
    refuses; https://www.twilio.com/docs/voice/media-streams/websocket-messages shows only
    ``"0"``-``"9"``. At most :data:`~mediastreams.strictjson.MAX_INT_DIGITS` of them: past
    Python's own bound, ``int()`` refuses the fast path's conversion.
    """
    return (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= strictjson.MAX_INT_DIGITS
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_tracks(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_params(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


_FIELD_CHECKS: Mapping[Field, Callable[[object], bool]] = {
    Field.STR: lambda value: isinstance(value, str),
    Field.COUNTER: is_counter,
    Field.INT: _is_int,
    Field.TRACKS: _is_tracks,
    Field.PARAMS: _is_params,
}
_FIELD_NAMES: Mapping[Field, str] = {
    Field.STR: "a string",
    Field.COUNTER: 'a string of digits 0-9 (such as "7")',
    Field.INT: "a JSON number",
    Field.TRACKS: "a list of strings",
    Field.PARAMS: "an object of strings",
}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {_clip(str(value), 40)}"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _clip(text: str, length: int = _MAX_NAME) -> str:
    return text if len(text) <= length else text[:length] + "…"


def _quote(name: str) -> str:
    return f"`{_clip(name)}`"


def _did_you_mean(key: str, candidates: list[str]) -> str | None:
    """The field that ``key`` most likely meant, among ``candidates``."""
    if len(key) > _MAX_NAME:  # no field name is that long; difflib would only take time
        return None
    candidates = [c for c in candidates[:32] if len(c) <= _MAX_NAME]
    alias = ALIASES.get(key) or ALIASES.get(key.lower())
    if alias in candidates:
        return alias
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
    for candidate in candidates:
        if candidate.lower() == camel.lower():
            return candidate
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return close[0] if close else None
