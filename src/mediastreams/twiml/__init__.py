"""TwiML for Media Streams: build ``<Connect><Stream>`` documents, and parse TwiML back.

Building refuses what Twilio would refuse (a non-``wss`` URL, a bad ``track``, an oversized
``<Parameter>``...) with a :class:`~mediastreams.exceptions.TwiMLError` that names Twilio's
error code and says how to fix it. The common case is one call::

    from mediastreams import twiml

    xml = twiml.connect_stream("wss://abc.example/media-stream", parameters={"tenant": "acme"})

Any other document is a sequence of verbs given to :func:`render_twiml`::

    xml = twiml.render_twiml(
        twiml.Say("Connecting you."),
        twiml.Connect(twiml.Stream("wss://abc.example/media-stream")),
    )

:func:`parse_twiml` reads a document into the same dataclasses without judging the
``<Stream>`` rules, so that a caller (the emulator) can report them;
:func:`check_stream_url` and :func:`check_stream` are those rules, in one place.

The package's seams, one module each: ``verbs`` (the document model), ``rules`` (Twilio's
``<Stream>`` rules), ``writer`` (building) and ``reader`` (parsing). Every public name is
importable from here.

Reference: https://www.twilio.com/docs/voice/twiml/stream and
https://www.twilio.com/docs/voice/twiml/connect
"""

from __future__ import annotations

from .reader import parse_twiml
from .rules import (
    LOOPBACK_HOSTS,
    PARAMETER_MAX_CHARS,
    TRACKS,
    TwiMLProblem,
    check_stream,
    check_stream_url,
    check_verb,
    is_relative_url,
    resolve_stream_url,
)
from .verbs import (
    Connect,
    Hangup,
    Parameter,
    Pause,
    Play,
    Redirect,
    Response,
    Say,
    Start,
    Stop,
    Stream,
    StreamVerb,
    UnknownVerb,
    Verb,
)
from .writer import connect_stream, render_twiml

__all__ = [
    "LOOPBACK_HOSTS",
    "PARAMETER_MAX_CHARS",
    "TRACKS",
    "Connect",
    "Hangup",
    "Parameter",
    "Pause",
    "Play",
    "Redirect",
    "Response",
    "Say",
    "Start",
    "Stop",
    "Stream",
    "StreamVerb",
    "TwiMLProblem",
    "UnknownVerb",
    "Verb",
    "check_stream",
    "check_stream_url",
    "check_verb",
    "connect_stream",
    "is_relative_url",
    "parse_twiml",
    "render_twiml",
    "resolve_stream_url",
]
