"""Running a stream: the handler on a :class:`~mediastreams.session.MediaStream`, the
built-in handlers, and the count of live streams.

:func:`run_stream` is the server's I/O boundary: whatever the backend, an accepted WebSocket
becomes a stream here, the handler runs, its failure is logged once, and the stream closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import ProtocolError, SignatureError, StreamClosed, StreamTimeout
from ..messages import Media
from ..security import loggable
from ..session import CLOSE_POLICY, AudioFeed, MediaStream, Transport
from ..store import CallContext, CallRecord, StateUnavailable
from ..websocket import CLOSE_INTERNAL_ERROR
from .config import TOKEN_PARAMETER, Handler, ServerConfig

if TYPE_CHECKING:
    from .instance import Instance

__all__ = [
    "CallLogFilter",
    "CallOutcome",
    "Streams",
    "context_of",
    "echo_handler",
    "play_handler",
    "run_stream",
]

logger = logging.getLogger("mediastreams.server")


class CallOutcome(enum.StrEnum):
    """What became of a stream the server accepted: the ``outcome`` label of the metrics."""

    COMPLETED = "completed"
    """The handler returned, or the caller hung up while it ran."""
    HANDLER_ERROR = "handler-error"
    """The handler raised: the stream closed with 1011."""
    REFUSED = "refused"
    """Its one-time token was refused, or could not be checked."""
    NOT_STARTED = "not-started"
    """No ``start`` came in time, or the socket closed before it."""


_CALL_SIDS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "mediastreams_call_sids", default=None
)
"""The SIDs of the call whose handler runs in this context (and in the tasks it starts)."""


class CallLogFilter(logging.Filter):
    """Adds ``stream_sid`` and ``call_sid`` to every record logged for a call.

    Records logged while a handler runs (by the app's own loggers too, and in the tasks the
    handler starts) get the SIDs of its call, unless they carry their own; ``serve`` puts
    this filter on its log handler, so every line about a call says which one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        sids = _CALL_SIDS.get()
        if sids is not None:
            for key, value in sids.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


class Streams:
    """The streams a server carries, so /healthz can count them and shutdown can end them.

    A backend runs each stream inside ``with streams.counting():``, in the task that runs
    :func:`run_stream`. ``active`` reports only the live ones: a stream that has ended while
    its handler finishes other work (saving a transcript, say) no longer counts.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def active(self) -> int:
        """The streams that have not ended."""
        return sum(1 for task in self._tasks if _live(task))

    def live(self) -> list[MediaStream]:
        """The streams that have not ended (opening ones included)."""
        streams = (_STREAM_OF_TASK.get(task) for task in self._tasks)
        return [s for s in streams if s is not None and not s.ended]

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count the stream that the current task runs, until the block ends."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)


_STREAM_OF_TASK: weakref.WeakKeyDictionary[asyncio.Task[Any], MediaStream] = (
    weakref.WeakKeyDictionary()
)
"""The stream :func:`run_stream` runs in each task, for :class:`Streams`."""


def _live(task: asyncio.Task[Any]) -> bool:
    stream = _STREAM_OF_TASK.get(task)
    return stream is None or not stream.ended  # no stream yet: it is opening


async def run_stream(
    config: ServerConfig,
    transport: Transport,
    *,
    client: str = "?",
    instance: Instance | None = None,
) -> None:
    """Open a stream on an accepted WebSocket, run the handler on it, then close it.

    This is the server's I/O boundary: a stream that never starts is logged here and closed;
    a handler that raises is logged here with its traceback, once, and its stream closes
    with 1011 and the error as the reason (what any server does for a crashed handler, and
    what Twilio reports as error 31921). Either way only this stream ends.

    Before the handler runs, the stream's token is redeemed (with stream tokens on), the
    call's context is set as ``stream.context`` (a :class:`~mediastreams.store.CallContext`,
    or ``None`` when no webhook of this server answered the call), and the call joins the
    registry of live calls, where call control finds it.

    Args:
        config: what the server does.
        transport: the accepted WebSocket.
        client: the peer, for log lines.
        instance: the running server this stream belongs to (its shared state, registry
            and metrics); by default one of its own, from ``config``.
    """
    if instance is None:
        from .instance import Instance

        instance = Instance(config)
    metrics = instance.metrics
    metered = None
    if metrics is not None:
        from ..metrics import MeteredTransport

        transport = metered = MeteredTransport(transport, metrics)
    stream = MediaStream(transport, limits=config.limits, **config.stream_options)
    if metered is not None:
        metered.stream = stream
    task = asyncio.current_task()
    if task is not None:
        _STREAM_OF_TASK[task] = stream
    outcome = CallOutcome.NOT_STARTED
    try:
        outcome = await _run_handler(instance, stream, client)
    finally:
        await stream.close()
        if task is not None:
            _STREAM_OF_TASK.pop(task, None)
        if metrics is not None:
            metrics.call_ended(outcome, stream)


async def _run_handler(instance: Instance, stream: MediaStream, client: str) -> CallOutcome:
    """Run the handler; what became of the call (the ``outcome`` label of the metrics)."""
    try:
        await stream.open()
    except (StreamTimeout, StreamClosed) as error:
        logger.warning("stream from %s did not start: %s", client, loggable(error))
        return CallOutcome.NOT_STARTED
    # SIDs come from the wire: escaped before they reach a log line.
    stream_sid, call_sid = loggable(stream.stream_sid), loggable(stream.call_sid)
    extra = {"stream_sid": stream_sid, "call_sid": call_sid}
    sids = _CALL_SIDS.set(extra)
    try:
        return await _run_started(instance, stream, client, extra)
    finally:
        _CALL_SIDS.reset(sids)


async def _run_started(
    instance: Instance, stream: MediaStream, client: str, extra: dict[str, str]
) -> CallOutcome:
    refused = await _admit(instance, stream, client, extra)
    if refused is not None:
        return refused
    if instance.metrics is not None:
        instance.metrics.call_started(stream)
    instance.calls.add(stream)
    try:
        await _join_registry(instance, stream, extra)
        return await _handle(instance, stream, extra)
    finally:
        instance.calls.remove(stream)
        await _leave_registry(instance, stream, extra)


async def _admit(
    instance: Instance, stream: MediaStream, client: str, extra: dict[str, str]
) -> CallOutcome | None:
    """Redeem the token and read the context; the outcome if the stream is refused."""
    config, state = instance.config, instance.state
    if config.stream_tokens is not None:
        try:
            token = stream.custom_parameters.get(TOKEN_PARAMETER)
            await state.redeem_token(token, stream.call_sid)
        except SignatureError as error:
            logger.warning("refused the stream from %s: %s", client, loggable(error), extra=extra)
            await stream.close(CLOSE_POLICY)
            return CallOutcome.REFUSED
        except StateUnavailable as error:
            logger.error(
                "refused the stream from %s: its token cannot be checked: %s",
                client,
                error,
                extra=extra,
            )
            await stream.close(CLOSE_INTERNAL_ERROR, "shared state unavailable")
            return CallOutcome.REFUSED
    context = None
    if instance.keeps_context:
        try:
            context = await state.load_context(stream.call_sid)
        except StateUnavailable as error:
            logger.warning("the call's context cannot be read: %s", error, extra=extra)
    stream.context = context  # type: ignore[attr-defined]
    return None


async def _join_registry(instance: Instance, stream: MediaStream, extra: dict[str, str]) -> None:
    record = CallRecord(stream.call_sid, stream.stream_sid, instance.state.instance)
    try:
        await instance.state.register(record)
    except StateUnavailable as error:
        logger.warning(
            "the call is not in the registry (call control cannot reach it): %s",
            error,
            extra=extra,
        )


async def _leave_registry(instance: Instance, stream: MediaStream, extra: dict[str, str]) -> None:
    try:
        await instance.state.unregister(stream.call_sid)
    except StateUnavailable as error:
        logger.warning(
            "the call's end is not in the registry (it expires there by itself): %s",
            error,
            extra=extra,
        )


async def _handle(instance: Instance, stream: MediaStream, extra: dict[str, str]) -> CallOutcome:
    try:
        await instance.config.handler(stream)
    except Exception as error:
        if isinstance(error, StreamClosed) and stream.ended:
            # The caller hung up while the handler was still using the stream: no crash.
            logger.warning(
                "the handler used stream %s after it ended: %s",
                extra["stream_sid"],
                loggable(error),
                extra=extra,
            )
            return CallOutcome.COMPLETED
        if isinstance(error, ProtocolError) and instance.metrics is not None:
            instance.metrics.violation(error.violation)
        logger.exception(
            "the handler failed on stream %s (call %s)",
            extra["stream_sid"],
            extra["call_sid"],
            extra=extra,
        )
        await stream.fail(error)
        return CallOutcome.HANDLER_ERROR
    return CallOutcome.COMPLETED


def context_of(stream: MediaStream) -> CallContext | None:
    """``stream.context``, typed: what the call's webhook knew (see :func:`run_stream`)."""
    context = getattr(stream, "context", None)
    return context if isinstance(context, CallContext) else None


def play_handler(mulaw: bytes, *, hangup_after_play: bool = False) -> Handler:
    """A handler that plays audio when the stream starts, then waits for the caller.

    Args:
        mulaw: headerless mu-law/8000 (convert files once, with ``mediastreams.audio``).
        hangup_after_play: end the stream once the audio played, instead of waiting.
    """

    async def play(stream: MediaStream) -> None:
        handle = await stream.play(mulaw)
        logger.info(
            "played %.0f ms of %.0f ms (%s)",
            handle.played_ms,
            handle.sent_ms,
            handle.outcome.value,
            extra={"stream_sid": stream.stream_sid, "call_sid": stream.call_sid},
        )
        if hangup_after_play:
            return
        async for _ in stream:  # wait for the caller to hang up
            pass

    return play


async def echo_handler(stream: MediaStream) -> None:
    """A handler that plays the caller's audio back to them, frame by frame.

    When playout falls behind (the caller's side does not confirm the audio as fast as it
    sends it), at most ``stream.limits.max_echo_backlog_ms`` of it waits; older audio is
    dropped, so the caller hears the present. What was dropped is logged at the end.

    Each frame goes back in the call that read it (an :class:`AudioFeed` written from
    :meth:`MediaStream.on_media`): no task wakes per frame.
    """
    feed = AudioFeed()
    handle = stream.play(feed, max_backlog_ms=stream.limits.max_echo_backlog_ms)
    write = feed.write
    stream.on_media(lambda media: write(media.payload))
    async for event in stream:  # marks, DTMF, stop, and media queued before on_media()
        if type(event) is Media:
            write(event.payload)
    feed.end()
    await handle
    if handle.dropped_ms:
        logger.warning(
            "echo: dropped %.0f ms of the caller's audio that playout fell behind on",
            handle.dropped_ms,
            extra={"stream_sid": stream.stream_sid, "call_sid": stream.call_sid},
        )
