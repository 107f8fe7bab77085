"""The log lines of ``mediastreams serve``: text or JSON, each with its call's SIDs.

The server's loggers and the app's own (``--app``) log at one level, to stderr; libraries that
log every connection at INFO are kept at WARNING unless the level is ``debug``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from ..security import loggable

__all__ = ["JsonFormatter", "SidFormatter", "announce", "configure_logging"]


class SidFormatter(logging.Formatter):
    """``time level logger message stream_sid=... call_sid=...``: greppable per call.

    The SIDs come from the peer's ``start`` frame, so they are escaped like every value from
    the wire: a newline in one cannot forge a log line.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        sids = [
            f"{k}={loggable(getattr(record, k), max_chars=64)}"
            for k in ("stream_sid", "call_sid")
            if hasattr(record, k)
        ]
        return " ".join([line, *sids])


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the call's SIDs if any.

    Messages never hold a payload or a token (the server logs neither), and JSON escapes
    whatever a peer put in a SID.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("stream_sid", "call_sid"):
            if hasattr(record, key):
                entry[key] = str(getattr(record, key))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# Libraries that log each connection at INFO: kept at WARNING unless --log-level debug.
_CHATTY = ("websockets", "uvicorn", "picows", "redis", "asyncio")


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send every logger's lines to stderr at ``level``, as ``text`` or ``json``.

    Raises:
        ValueError: ``level`` is not a level's name.
    """
    from ..server import CallLogFilter

    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(level)
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(SidFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # Lines logged while a handler runs (the app's own too) carry its call's SIDs.
    handler.addFilter(CallLogFilter())
    # The root logger: the app's own loggers (--app) log at the same level, to the same place.
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    ours = logging.getLogger("mediastreams")
    ours.handlers[:] = []
    ours.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def announce(message: str, log_format: str) -> None:
    """Print a start-up line whatever the log level: plain, or one JSON object (json)."""
    if log_format == "json":
        record = logging.LogRecord("mediastreams.serve", logging.INFO, "", 0, message, None, None)
        click.echo(JsonFormatter().format(record), err=True)
    else:
        click.echo(message, err=True)
