"""Seed inputs, built from what the repository already holds.

Frames: the golden frames (``tests/data/golden_frames.jsonl``, from a real capture and
Twilio's docs), the examples of ``docs/asyncapi.yaml``, and the frames of a call between the
two protocol sides. TwiML: the documents of ``docs/twiml.md`` and Twilio's TwiML examples
written with :func:`~mediastreams.twiml.render_twiml`. Traces: a call written by
:class:`~mediastreams.trace.TraceWriter`, the same with payloads and a binary frame.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from mediastreams import twiml
from mediastreams.messages import Sender
from mediastreams.protocol import AppProtocol, TwilioProtocol
from mediastreams.trace import TraceWriter

__all__ = ["ROOT", "seeds"]

ROOT = Path(__file__).resolve().parent.parent


def seeds(kind: str) -> list[bytes]:
    """The seed inputs for targets of one kind: ``"frame"``, ``"twiml"`` or ``"trace"``."""
    build = {"frame": _frames, "twiml": _twiml, "trace": _traces}[kind]
    found = [seed for seed in build() if seed]
    return list(dict.fromkeys(found))  # unique, in order


def _frames() -> list[bytes]:
    golden = ROOT / "tests" / "data" / "golden_frames.jsonl"
    frames = [json.loads(line)["text"] for line in golden.read_text().splitlines() if line]
    frames += _asyncapi_examples()
    frames += _call_frames()
    return [frame.encode() for frame in frames]


def _asyncapi_examples() -> list[str]:
    import yaml  # a dev dependency, as the fuzzer is

    spec: Any = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    found = []
    for message in spec.get("components", {}).get("messages", {}).values():
        for example in message.get("examples", []):
            found.append(json.dumps(example["payload"], separators=(",", ":")))
    return found


def _call_frames() -> list[str]:
    """Every frame of a short call, both ways: media, marks and their echoes, a clear, stop."""
    twilio, app = TwilioProtocol(custom_parameters={"tenant": "acme"}), AppProtocol()
    frames: list[str] = []

    def carry_from_twilio() -> None:
        for text in twilio.data_to_send():
            frames.append(text)
            app.receive(text)

    def carry_from_app() -> None:
        for text in app.data_to_send():
            frames.append(text)
            twilio.receive(text)

    twilio.send_connected()
    twilio.send_start()
    twilio.send_media(bytes(range(160)))
    twilio.send_dtmf("7")
    carry_from_twilio()
    app.send_media(b"\x7f" * 320)
    app.send_mark("reply-1")
    app.send_mark("reply-2")
    carry_from_app()
    twilio.play(320)
    carry_from_twilio()
    app.send_clear()
    carry_from_app()
    carry_from_twilio()
    twilio.send_stop()
    carry_from_twilio()
    return frames


def _twiml() -> list[bytes]:
    documents = re.findall(r"<\?xml.*?</Response>|<Response>.*?</Response>", _docs_text(), re.S)
    stream = twiml.Stream(
        "wss://abc.example/media-stream",
        name="agent",
        track="inbound_track",
        status_callback="https://abc.example/status",
        parameters=(twiml.Parameter("tenant", "acme"),),
    )
    documents += [
        twiml.connect_stream("wss://abc.example/media-stream", parameters={"tenant": "acme"}),
        twiml.render_twiml(
            twiml.Say("Connecting you."),
            twiml.Start(twiml.Stream("wss://abc.example/record", name="rec", track="both_tracks")),
            twiml.Connect(stream, action="https://abc.example/after"),
            twiml.Pause(2),
            twiml.Stop(twiml.Stream(name="rec")),
            twiml.Play("https://abc.example/bye.mp3", loop=2),
            twiml.Redirect("https://abc.example/next", method="POST"),
            twiml.Hangup(),
        ),
        '<?xml version="1.0" encoding="UTF-8"?><Response><Start><Stream name="s" '
        'url="wss://abc.example/s"><Parameter name="a" value="b"/></Stream></Start>'
        '<Say voice="alice" language="en-US" loop="1">Hello</Say><Dial>+15550100</Dial>'
        "</Response>",
    ]
    return [document.encode() for document in documents]


def _docs_text() -> str:
    return "\n".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))


def _traces() -> list[bytes]:
    frames = _call_frames()
    found = []
    with tempfile.TemporaryDirectory() as folder:
        for payloads in (False, True):
            path = Path(folder) / "call.jsonl"
            with TraceWriter(path, payloads=payloads) as writer:
                for index, frame in enumerate(frames):
                    from_twilio = '"sequenceNumber"' in frame or '"connected"' in frame
                    sender: Sender = "twilio" if from_twilio else "app"
                    writer.write(index * 0.02, sender, frame)
                writer.write(len(frames) * 0.02, "app", b"\x00\x01binary")
            found.append(path.read_bytes())
    return found
