"""The asyncio session an app uses on one Media Stream: events in, paced audio out.

A :class:`MediaStream` runs over any :class:`Transport` (a WebSocket seen through an adapter
from :mod:`mediastreams.adapters`) and drives :class:`~mediastreams.protocol.AppProtocol`::

    async with MediaStream(transport) as stream:  # waits for `connected` and `start`
        greeting = stream.play("hello.wav")       # returns at once
        async for event in stream:                # Media, DTMF, Mark, Stop, UnknownMessage
            if isinstance(event, DTMF):
                stream.clear()                    # barge-in: the greeting stops now
        print(greeting.outcome, greeting.played_ms)

What "played" means and how audio is paced: see :mod:`mediastreams.pacing`.

This module is the stream's life (open, close, the end, whatever causes it) and its public
face; each other job of the session has its own module, which this one wires together:

- :mod:`mediastreams.inbound`: frames in (from a reader task, or pushed by the transport),
  checked by the protocol's ``receive()``, bad ones counted by Twilio code, logged once per
  kind and ignored; and the fan-out of events to their readers;
- :mod:`mediastreams.playback`: plays and marks, their handles, the sources feeding them
  (an :class:`AudioFeed` is written to by the app) and the writer, paced by the loop-free
  :class:`~mediastreams.pacing.Pacer`; turning a source into mu-law is
  :mod:`mediastreams.audio.source`'s;
- :mod:`mediastreams.watchdog`: the idle and send deadlines;
- :mod:`mediastreams.websocket`: the adapter interface, close codes and close reasons.

On a transport that pushes frames and writes at once (:class:`PushTransport`: picows), a
media frame goes from the socket's callback through the protocol to the app's media callback
(:meth:`MediaStream.on_media`) and an :class:`AudioFeed`'s frame back to the socket in one
call, with no task woken: what lets one core carry the most calls.

A frame over ``max_frame_bytes``, a lost socket, a silent peer, a peer that does not read,
and any exception in a task of the session end the stream. Every bound comes from one
:class:`~mediastreams.limits.Limits`. Nothing is left running after the end: every play and
mark handle resolves, every iterator finishes, every task is awaited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any

from .exceptions import StreamClosed, StreamTimeout
from .inbound import MAX_GAP_FILL_MS, Event, Inbound
from .limits import DEFAULT_LIMITS, Limits
from .messages import Media, Start
from .pacing import (
    DEFAULT_FRAME_MS,
    DEFAULT_LEAD_MS,
    DEFAULT_MARK_INTERVAL_MS,
    Outcome,
    Pacer,
)
from .playback import AudioFeed, AudioInput, MarkHandle, Playback, PlayHandle
from .protocol import STREAMING, AppProtocol
from .watchdog import Watchdog
from .websocket import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
    MAX_CLOSE_REASON_BYTES,
    PushTransport,
    Transport,
    close_reason,
    close_transport,
    push_transport,
)
from .websocket import (
    CLOSE_POLICY as CLOSE_POLICY,  # re-exported for the server
)

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "DEFAULT_FRAME_MS",
    "DEFAULT_LEAD_MS",
    "DEFAULT_MARK_INTERVAL_MS",
    "DEFAULT_START_TIMEOUT_MS",
    "MAX_CLOSE_REASON_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_GAP_FILL_MS",
    "AudioFeed",
    "AudioInput",
    "Event",
    "MarkHandle",
    "MediaStream",
    "Outcome",
    "Pacer",
    "PlayHandle",
    "PushTransport",
    "Transport",
    "close_reason",
]

logger = logging.getLogger("mediastreams.session")

DEFAULT_START_TIMEOUT_MS = round(DEFAULT_LIMITS.start_timeout_s * 1000)
"""The default of ``Limits.start_timeout_s``, in milliseconds."""
MAX_FRAME_BYTES = DEFAULT_LIMITS.max_frame_bytes
"""The default of ``Limits.max_frame_bytes``: Twilio's largest frame (``start``) is well under
2 KiB."""

_DEPRECATED_OPTIONS = {
    "start_timeout_ms": ("start_timeout_s", 1 / 1000),
    "max_frame_bytes": ("max_frame_bytes", 1),
    "max_queued_media": ("max_queued_frames", 1),
}


# --- the session -----------------------------------------------------------------------------


class MediaStream:
    """The app's side of one Media Stream, over a :class:`Transport`.

    Args:
        transport: the WebSocket, through an adapter.
        limits: every bound and deadline of the stream (frame size, inbound queues, the
            start, idle and send timeouts); see :class:`~mediastreams.limits.Limits`.
        frame_ms: outbound frame size (Twilio sends 20 ms frames; any size plays).
        lead_ms: how far sent audio may run ahead of what Twilio confirmed playing.
        mark_interval_ms: a mark goes out at least this often in a play, so ``played_ms``
            is exact to this interval.
        start_timeout_ms: deprecated; use ``limits=Limits(start_timeout_s=...)``.
        max_frame_bytes: deprecated; use ``limits=Limits(max_frame_bytes=...)``.
        max_queued_media: deprecated; use ``limits=Limits(max_queued_frames=...)``.

    Attributes:
        limits: the stream's :class:`~mediastreams.limits.Limits`.
        start: Twilio's ``start`` (SIDs, custom parameters, media format, tracks), once open.
        end_reason: why the stream ended: ``"stop"``, ``"closed"``, ``"dropped"``,
            ``"too-big"``, ``"timeout"`` (no ``start`` in time), ``"idle"`` (no frame after
            ``start`` for ``idle_timeout_s``), ``"send-timeout"`` (the peer did not read for
            ``send_timeout_s``) or ``"error"`` (a task of the session, or the app, raised);
            ``None`` while it runs.
        close_code: the WebSocket close code the stream ended with (1000, 1008, 1009 or
            1011); ``None`` while it runs.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        limits: Limits | None = None,
        frame_ms: int = DEFAULT_FRAME_MS,
        lead_ms: int = DEFAULT_LEAD_MS,
        mark_interval_ms: int = DEFAULT_MARK_INTERVAL_MS,
        start_timeout_ms: int | None = None,
        max_frame_bytes: int | None = None,
        max_queued_media: int | None = None,
    ) -> None:
        self.transport = transport
        self.limits = _with_deprecated(
            limits or DEFAULT_LIMITS,
            start_timeout_ms=start_timeout_ms,
            max_frame_bytes=max_frame_bytes,
            max_queued_media=max_queued_media,
        )
        self.protocol = AppProtocol()
        self.pacer = Pacer(frame_ms=frame_ms, lead_ms=lead_ms, mark_interval_ms=mark_interval_ms)
        self.end_reason: str | None = None
        self.close_code: int | None = None
        self._close_text = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None
        self._log_extra: dict[str, str] = {}  # filled in at start, shared with the halves
        self._push = push_transport(transport)
        self._playback = Playback(
            self.protocol,
            transport.send,
            self.pacer,
            send_now=None if self._push is None else self._push.send_now,
            spawn=self._spawn,
            on_dropped=lambda: self._end("dropped"),
            on_crash=self._crash,
        )
        self._inbound = Inbound(
            transport.receive,
            self.protocol,
            self.limits,
            self._log_extra,
            on_echo=self._playback.on_echo,
            on_end=self._end,
            on_crash=self._crash,
        )
        self._watchdog = Watchdog(self.limits, self._progress, self._time_out)

    # --- opening and closing ------------------------------------------------------------------

    @property
    def start(self) -> Start:
        """Twilio's ``start`` message.

        Raises:
            LocalProtocolError: before :meth:`open` has returned.
        """
        start = self.protocol.start
        if start is None:
            self.protocol.stream_sid  # noqa: B018 -- raises the "too early" error
        assert start is not None
        return start

    @property
    def stream_sid(self) -> str:
        """The stream's SID (from ``start``)."""
        return self.start.stream_sid

    @property
    def call_sid(self) -> str:
        """The call's SID (from ``start``)."""
        return self.start.call_sid

    @property
    def custom_parameters(self) -> dict[str, str]:
        """What the TwiML's ``<Parameter>`` elements set."""
        return self.start.custom_parameters

    @property
    def ended(self) -> bool:
        """Whether the stream has ended."""
        return self.end_reason is not None

    async def open(self) -> MediaStream:
        """Wait for ``connected`` and ``start``, then run the stream.

        Returns:
            The stream itself.

        Raises:
            StreamTimeout: no ``start`` within ``limits.start_timeout_s`` (the socket is
                closed with 1008).
            StreamClosed: the socket closed, sent an oversized frame, or reading it failed
                before ``start``.
        """
        try:
            async with asyncio.timeout(self.limits.start_timeout_s):
                while self.protocol.state is not STREAMING:
                    await self._receive_opening()
        except TimeoutError:
            await self._abort("timeout", CLOSE_POLICY, "no start frame in time")
            raise StreamTimeout(
                f"no start frame within {self.limits.start_timeout_s:g} s; is this a Twilio "
                "<Connect><Stream> WebSocket?"
            ) from None
        except (StreamClosed, asyncio.CancelledError):
            raise
        except Exception as error:
            self._crash(error)
            await self._start_closing()
            raise StreamClosed(f"reading the stream failed before start: {error!r}") from error
        start = self.start
        self._log_extra.update(stream_sid=start.stream_sid, call_sid=start.call_sid)
        logger.info(
            "stream started: stream %s, call %s",
            start.stream_sid,
            start.call_sid,
            extra=self._log_extra,
        )
        self._spawn(self._guard(self._playback.run))
        self._watchdog.start()
        if self._push is None:
            self._spawn(self._guard(self._inbound.run))
        else:
            # Last: the frames that came in since start are read now, and may end the stream.
            self._push.set_receiver(self._inbound.on_frame)
        return self

    async def _receive_opening(self) -> None:
        data = await self.transport.receive()
        if data is None:
            await self._abort("dropped", CLOSE_NORMAL)
            raise StreamClosed("the WebSocket closed before Twilio's start frame")
        if len(data) > self.limits.max_frame_bytes:
            await self._abort("too-big", CLOSE_TOO_BIG)
            raise StreamClosed(
                f"a {len(data)}-byte frame before start; the limit is {self.limits.max_frame_bytes}"
            )
        self._inbound.check(data)  # anything but connected/start is logged and ignored

    async def _abort(self, reason: str, code: int, text: str = "") -> None:
        self._end(reason, code, text)
        await self._start_closing()

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the stream from the app's side and close the socket.

        Every pending play resolves as ``ENDED``, iterators finish, and the session's tasks
        are awaited. A play that failed and that nobody awaited is logged here, as an error
        naming its source. Safe to call more than once, and after the stream ended by itself
        (the socket then keeps the close code it ended with).

        Args:
            code: the WebSocket close code (1000, or 1008 to refuse the stream).
            reason: the close reason (at most 123 bytes of UTF-8).
        """
        await self._close("closed", code, reason)

    async def fail(self, error: BaseException) -> None:
        """End the stream because the app failed: close code 1011, the error as the reason.

        The reason is :func:`close_reason` of the error (its type and message, never the
        traceback). This does not log the error: whoever caught it does, once. After the
        stream has ended by itself it only awaits the end, like :meth:`close`.
        """
        await self._close("error", CLOSE_INTERNAL_ERROR, close_reason(error))

    async def _close(self, reason: str, code: int, text: str) -> None:
        self._end(reason, code, text)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)  # their done callbacks may not have run yet
        await self._start_closing()
        self._log_unseen_failures()

    def _start_closing(self) -> asyncio.Task[None]:
        """Close the socket with the code the stream ended with, once, in its own task.

        Its own task, so that cancelling the task that asked (a reader, a handler) does not
        cut the close handshake short; :meth:`close` awaits it.
        """
        if self._closing is None:
            loop = asyncio.get_running_loop()
            code = CLOSE_NORMAL if self.close_code is None else self.close_code
            closing = close_transport(
                self.transport, code, self._close_text, self.limits.close_timeout_s, self._log_extra
            )
            self._closing = loop.create_task(closing)
        return self._closing

    def _log_unseen_failures(self) -> None:
        for handle, error in self._playback.unseen_failures():
            logger.error(
                "play %d (%s) failed and nothing awaited it: %s",
                handle.id,
                handle.source,
                close_reason(error),
                extra=self._log_extra,
            )

    async def wait_closed(self) -> None:
        """Wait until the stream has ended, whoever ended it, and its socket is closed."""
        await self._ended.wait()
        assert self._closing is not None
        await asyncio.shield(self._closing)

    async def __aenter__(self) -> MediaStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The error goes on to whoever called (a server logs it, once); the peer learns of it
        # from the 1011 close, as from any server whose handler crashed.
        if isinstance(exc, Exception):
            await self.fail(exc)
        else:
            await self.close()

    def _end(self, reason: str, code: int = CLOSE_NORMAL, text: str = "") -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.close_code = code
        self._close_text = text
        self._watchdog.cancel()
        self.protocol.close()
        self._playback.end()
        self._inbound.end()
        if self._push is not None:
            self._push.set_receiver(None)
        self._ended.set()
        self._start_closing()
        if self._log_extra:
            dropped = self._inbound.events.dropped_media
            logger.info(
                "stream ended (%s)%s",
                reason,
                f"; {dropped} unread media frames dropped" if dropped else "",
                extra=self._log_extra,
            )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- failures and deadlines ---------------------------------------------------------------

    async def _guard(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # A task of the session that raises ends the stream; it never dies alone, leaving the
        # handler waiting on a stream nobody reads.
        try:
            await work()
        except Exception as error:
            self._crash(error)

    def _crash(self, error: BaseException) -> None:
        """Something raised where nothing should: log it, end the stream with 1011."""
        logger.error(
            "the stream failed: %s",
            close_reason(error),
            exc_info=error,
            extra=self._log_extra,
        )
        self._end("error", CLOSE_INTERNAL_ERROR, close_reason(error))
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    def _progress(self) -> tuple[int, int, bool]:
        return self._inbound.frames_in, self._playback.frames_out, self._playback.sending

    def _time_out(self, reason: str, text: str) -> None:
        logger.warning("%s: ending the stream", text, extra=self._log_extra)
        self._end(reason, CLOSE_INTERNAL_ERROR, text)
        for task in self._tasks:
            task.cancel()  # the reader waits on a silent peer, a sender on a full buffer

    # --- reading -----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    def events(self) -> AsyncIterator[Event]:
        """Every event from Twilio, in order: ``Media``, ``DTMF``, ``Mark`` (echoes of marks
        sent with :meth:`send_mark`), ``Stop`` (always last when Twilio sends it) and
        ``UnknownMessage``. Ends when the stream ends.

        Events are kept from the moment the stream opens, so none is missed before the first
        iteration; for a slow reader at most ``limits.max_queued_frames`` events and
        ``limits.max_queued_bytes`` bytes are kept, the oldest media dropped first. A key
        press that a waiting :meth:`collect_digits` takes is not among them.
        """
        return self._inbound.iterate()

    def on_media(self, callback: Callable[[Media], object] | None) -> None:
        """Give every inbound ``Media`` to ``callback`` as it arrives, instead of to
        ``async for event in stream``; ``None`` gives them back to the iterator.

        The callback runs synchronously, in the call that read the frame (on picows, the
        socket's own callback): keep it short and never block; what it raises ends the stream
        with 1011. :meth:`audio` readers still get every frame. With an :class:`AudioFeed`
        this relays audio with no task woken per frame::

            feed = AudioFeed()
            stream.play(feed)
            stream.on_media(lambda media: feed.write(media.payload))
            async for event in stream:  # marks, DTMF, stop; media go to the callback
                ...
        """
        self._inbound.on_media(callback)

    @property
    def violations_by_code(self) -> Mapping[int, int]:
        """Frames from Twilio that were ignored, counted by Twilio error code.

        For example ``{31951: 2, 31950: 1}``: two frames Twilio's side should not have sent
        (bad JSON, out of order, a wrong ``streamSid``...) and one binary frame. Each was
        logged (once per kind) and ignored; the stream went on. A read-only view, kept up to
        date while the stream runs and final once it has ended, for metrics.
        """
        return self._inbound.violations_by_code

    def audio(self, sample_rate: int = 8000) -> AsyncIterator[bytes]:
        """The caller's audio as 16-bit little-endian mono PCM at ``sample_rate``.

        A gap in the media timestamps is filled with silence (up to
        :data:`MAX_GAP_FILL_MS`), so speech recognition downstream keeps time with the call.
        The audio is kept from this call on (iterate the result: it buffers until read, within
        the stream's ``limits``, the oldest dropped first); the iterator ends when the stream
        ends.
        """
        return self._inbound.audio(sample_rate)

    async def collect_digits(
        self, count: int, *, timeout_ms: int | None = None, finish_on: str | None = None
    ) -> str:
        """Wait for the caller to press ``count`` keys and return them.

        Digits are counted from this call on, and the keys it takes are its alone: while it
        waits, no ``DTMF`` reaches ``async for event in stream`` (other events do), so it can
        be awaited inside that loop. It returns early, with what was pressed, when
        ``timeout_ms`` passes, when a key in ``finish_on`` is pressed (that key is taken, not
        included) or when the stream ends; keys pressed after it returned reach the loop
        again. When several wait at once, the first called takes the keys until it returns.
        """
        return await self._inbound.collect_digits(count, timeout_ms=timeout_ms, finish_on=finish_on)

    # --- marks and plays ----------------------------------------------------------------------

    def send_mark(self, name: str) -> MarkHandle:
        """Queue a ``mark`` behind everything queued so far; await the handle for its echo.

        The mark goes out once the plays queued before it are sent, so its echo says the
        caller heard all of them (``PLAYED``), or that a ``clear`` discarded them
        (``INTERRUPTED``).

        Raises:
            LocalProtocolError: the name is empty or starts with ``"_ms:"`` (reserved for the
                session's own marks).
            StreamClosed: the stream has ended.
        """
        self._check_open()
        return self._playback.send_mark(name)

    def play(
        self,
        source: AudioInput,
        *,
        format: Any = None,
        sample_rate: int | None = None,
        max_backlog_ms: int | None = None,
    ) -> PlayHandle:
        """Queue audio behind earlier plays and return its handle at once.

        Args:
            source: what to play:

                - ``bytes`` with no file header (and no ``format``): headerless mu-law at
                  8000 Hz, sent as it is;
                - a path, or ``bytes`` of a WAV/MP3/FLAC/Ogg file: converted with
                  :func:`mediastreams.audio.to_mulaw`;
                - a numpy array of samples, with ``sample_rate``;
                - an :class:`AudioFeed` the app writes mu-law to as it comes (a relay, an
                  echo): sent with no task, at once when the pacing allows;
                - an async iterable of ``bytes`` chunks (a TTS stream): raw samples of
                  ``format``, or a stream starting with a WAV header, or mu-law/8000 when
                  ``format`` is ``None`` and there is no header. Chunks are converted and
                  sent as they arrive.
            format: a :class:`mediastreams.audio.AudioFormat` for raw samples.
            sample_rate: the sample rate of a numpy array.
            max_backlog_ms: for a live source (a relay, an echo): keep at most this much
                audio waiting to be sent and drop the oldest past it (counted in
                ``handle.dropped_ms``), so the caller hears the present rather than a delay
                that grows whenever playout falls behind. ``None`` (the default) keeps all.

        Returns:
            A :class:`PlayHandle`; ``await`` it for the outcome. A play that fails and that
            nothing awaits is logged as an error when the stream is closed.

        Raises:
            StreamClosed: the stream has ended.
            ValueError: ``max_backlog_ms`` is not positive.
        """
        self._check_open()
        return self._playback.play(source, format, sample_rate, max_backlog_ms)

    def clear(self) -> list[PlayHandle]:
        """Barge-in: send ``clear`` and interrupt every pending play.

        Twilio drops the audio it holds and echoes the pending marks; those echoes are not
        counted as played. Queued plays are not sent. Safe when nothing is playing (the
        ``clear`` still goes out, dropping any audio sent with the low-level protocol) and
        after the stream ended (it does nothing then).

        Returns:
            The plays interrupted, with ``played_ms`` as far as marks confirmed.
        """
        if self.end_reason is not None:
            return []
        return self._playback.clear()

    def _check_open(self) -> None:
        if self.end_reason is not None:
            raise StreamClosed(f"the stream has ended ({self.end_reason})")
        if self.protocol.state is not STREAMING:
            self.protocol.stream_sid  # noqa: B018 -- raises the "too early" error


def _with_deprecated(limits: Limits, **options: int | None) -> Limits:
    """``limits`` with the values of the deprecated keyword arguments that were given."""
    changes: dict[str, Any] = {}
    for option, value in options.items():
        if value is None:
            continue
        field, scale = _DEPRECATED_OPTIONS[option]
        warnings.warn(
            f"MediaStream({option}=...) is deprecated; pass limits=Limits({field}=...)",
            DeprecationWarning,
            stacklevel=3,
        )
        changes[field] = value * scale
    return dataclasses.replace(limits, **changes) if changes else limits
