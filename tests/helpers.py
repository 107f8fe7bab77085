"""Test helpers: a pair of protocols wired back to back, and frame builders."""

from __future__ import annotations

import json
from typing import Any

from mediastreams.messages import AppMessage, TwilioMessage
from mediastreams.protocol import AppProtocol, TwilioProtocol

MZ = "MZ0123456789abcdef0123456789abcdef"
AC = "AC00112233445566778899aabbccddeeff"
CA = "CAffeeddccbbaa99887766554433221100"


class ProtocolPair:
    """Twilio's side and the app's side, each frame carried across and checked at both ends.

    ``twilio_to_app()`` moves every frame Twilio queued to the app and returns what the app
    read; ``app_to_twilio()`` does the reverse. After each move the two ends must agree: the
    same stream, and every mark Twilio still holds is one the app is still waiting for.
    """

    def __init__(self, **twilio_options: Any) -> None:
        self.twilio = TwilioProtocol(**twilio_options)
        self.app = AppProtocol()

    def open(self) -> list[TwilioMessage]:
        self.twilio.send_connected()
        self.twilio.send_start()
        return self.twilio_to_app()

    def twilio_to_app(self) -> list[TwilioMessage]:
        received = [self.app.receive_text(frame) for frame in self.twilio.data_to_send()]
        self.check_agreement()
        return received

    def app_to_twilio(self) -> list[AppMessage]:
        received = [self.twilio.receive_text(frame) for frame in self.app.data_to_send()]
        self.check_agreement()
        return received

    def check_agreement(self) -> None:
        if self.app.start is not None:
            assert self.app.start == self.twilio.start
        assert set(self.twilio.pending_marks) <= set(self.app.pending_marks)


def frame(**fields: Any) -> str:
    """A compact JSON frame."""
    return json.dumps(fields, separators=(",", ":"))


def twilio_media(payload_b64: str = "/w==", sid: str = MZ, seq: str = "2") -> str:
    return frame(
        event="media",
        sequenceNumber=seq,
        streamSid=sid,
        media={"track": "inbound", "chunk": "1", "timestamp": "20", "payload": payload_b64},
    )
