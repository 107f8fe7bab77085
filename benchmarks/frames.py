"""Per-frame cost of reading Twilio's media frames and writing the app's.

Baseline, measured in the same run: the stdlib way (``json.loads`` + dict access +
``base64.b64decode``; ``base64.b64encode`` + ``json.dumps`` of a dict).
Targets on a 2-vCPU VM: parse + validate + base64 <= 2 µs, serialize + base64 <= 1 µs.

Run: ``uv run python -m benchmarks.frames``
"""

from __future__ import annotations

import base64
import json
import os

from mediastreams.messages import Media, parse, serialize
from mediastreams.protocol import AppProtocol, TwilioProtocol

from benchmarks.harness import Row, print_table, time_call

MZ = "MZ0123456789abcdef0123456789abcdef"
PAYLOAD = os.urandom(160)
INBOUND = json.dumps(
    {
        "event": "media",
        "sequenceNumber": "2",
        "streamSid": MZ,
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "52",
            "payload": base64.b64encode(PAYLOAD).decode(),
        },
    },
    separators=(",", ":"),
)


def baseline_parse() -> bytes:
    frame = json.loads(INBOUND)
    media = frame["media"]
    int(frame["sequenceNumber"]), int(media["chunk"]), int(media["timestamp"])
    return base64.b64decode(media["payload"])


def baseline_serialize() -> str:
    payload = base64.b64encode(PAYLOAD).decode()
    return json.dumps({"event": "media", "streamSid": MZ, "media": {"payload": payload}})


def streaming_app() -> AppProtocol:
    twilio = TwilioProtocol(stream_sid=MZ)
    twilio.send_connected()
    twilio.send_start()
    app = AppProtocol()
    for text in twilio.data_to_send():
        app.receive_text(text)
    return app


def main() -> list[Row]:
    assert parse(INBOUND).payload == baseline_parse()  # type: ignore[union-attr]
    app = streaming_app()

    def app_send() -> list[str]:
        app.send_media(PAYLOAD)
        return app.data_to_send()

    media = Media(stream_sid=MZ, payload=PAYLOAD)
    assert json.loads(serialize(media)) == json.loads(baseline_serialize())
    us = 1e6
    base_in = time_call(baseline_parse) * us
    base_out = time_call(baseline_serialize) * us
    rows = [
        Row(
            "parse(): inbound media, validated, payload decoded",
            time_call(lambda: parse(INBOUND)) * us,
            base_in,
            "µs",
            "json+b64",
            target="<= 2 µs",
        ),
        Row(
            "AppProtocol.receive_text(): parse + order + streamSid checks",
            time_call(lambda: app.receive_text(INBOUND)) * us,
            base_in,
            "µs",
            "json+b64",
            target="<= 2 µs",
        ),
        Row(
            "serialize(Media): outbound media frame",
            time_call(lambda: serialize(media)) * us,
            base_out,
            "µs",
            "json+b64",
            target="<= 1 µs",
        ),
        Row(
            "AppProtocol.send_media() + data_to_send()",
            time_call(app_send) * us,
            base_out,
            "µs",
            "json+b64",
            target="<= 1 µs",
        ),
    ]
    print_table("Media frames, µs per frame (median of 7)", rows)
    return rows


if __name__ == "__main__":
    main()
