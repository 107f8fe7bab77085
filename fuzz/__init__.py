"""Fuzzing mediastreams' readers of untrusted input: frames, TwiML and traces.

Every target feeds one input to the library and accepts only the library's documented
outcome: a result, or its documented error (``RemoteProtocolError`` from ``parse``, nothing at
all from a protocol side's ``receive()``, ``TwiMLError`` from ``parse_twiml``, nothing from
the trace reader). Anything else is a crash; an input under the frame-size limit that takes
more than 10 ms is slow.

Run ``uv run python -m fuzz --target all --inputs 1000000`` (see ``docs/security.md``).
"""
