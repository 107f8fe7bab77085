"""The outbound half of a session: plays and marks queued by the app, paced, written out.

:class:`Playback` owns what :meth:`MediaStream.play`, :meth:`~MediaStream.send_mark` and
:meth:`~MediaStream.clear` start: the handles the app awaits (:class:`PlayHandle`,
:class:`MarkHandle`), a task per audio source that feeds its mu-law to the loop-free
:class:`~mediastreams.pacing.Pacer` (or an :class:`AudioFeed` the app writes to, with no
task), and the writer that sends what the pacer allows through
:class:`~mediastreams.protocol.AppProtocol`. The pacer decides; this module maps its play and
mark ids to handles and resolves them.

On a transport that writes at once (:class:`~mediastreams.websocket.PushTransport`), frames
go out in the call that made them due (a play queued, audio fed, a mark echoed) with no task
switch; the writer task takes over only while the peer reads too slowly. On any other
transport the writer task sends them.

Part of :mod:`mediastreams.session`: what that module exports is public, the rest of this
module may change.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeAlias

from .containers import container_format
from .exceptions import LocalProtocolError, StreamClosed
from .pacing import (
    MARK_PREFIX,
    MarkResolved,
    Outcome,
    Pacer,
    PlayProgress,
)
from .protocol import AppProtocol
from .violations import local_violation
from .wireformat import BYTES_PER_MS

__all__ = ["AudioFeed", "AudioInput", "MarkHandle", "PlayHandle", "Playback"]

AudioInput: TypeAlias = Any
"""A path, bytes, a numpy array or an async iterable of chunks; see :meth:`MediaStream.play`."""


class _Handle:
    """An awaitable result that resolves once; awaiting it returns the handle itself."""

    def __init__(self) -> None:
        self.outcome = Outcome.PENDING
        self._done = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        """Whether the outcome is known."""
        return self.outcome is not Outcome.PENDING

    def _resolve(self, outcome: Outcome) -> None:
        if self.outcome is Outcome.PENDING:
            self.outcome = outcome
            self._done.set_result(None)

    async def wait(self) -> Outcome:
        """Wait for the outcome and return it (never raises)."""
        await asyncio.shield(self._done)
        self._seen()
        return self.outcome

    def _seen(self) -> None:
        """The app has looked at the outcome."""


class PlayHandle(_Handle):
    """One queued play; returned by :meth:`MediaStream.play` at once.

    ``await handle`` returns the handle once Twilio confirmed the audio played (the final
    mark was echoed), a ``clear`` interrupted it or the stream ended. It raises the source's
    error if the audio could not be read.

    Attributes:
        id: the play's number in its stream, from 1.
        source: what was played, for messages (a path, ``"1600 bytes"``, ``"a stream"``).
        outcome: :class:`Outcome`; ``PENDING`` until resolved.
    """

    def __init__(self, play_id: int, source: str = "", progress: PlayProgress | None = None):
        super().__init__()
        self.id = play_id
        self.source = source
        self._progress = progress or PlayProgress()
        self._error: BaseException | None = None
        self._error_seen = False

    @property
    def error(self) -> BaseException | None:
        """What the source raised, when ``outcome`` is ``FAILED``."""
        self._error_seen = True
        return self._error

    def _unseen_error(self) -> BaseException | None:
        """The source's error, if nobody awaited the handle or read :attr:`error`."""
        return None if self._error_seen else self._error

    @property
    def sent_ms(self) -> float:
        """Audio sent to Twilio so far, in milliseconds."""
        return self._progress.sent_bytes / BYTES_PER_MS

    @property
    def played_ms(self) -> float:
        """Audio Twilio confirmed as played (by mark echoes), in milliseconds."""
        return self._progress.played_bytes / BYTES_PER_MS

    @property
    def dropped_ms(self) -> float:
        """Audio dropped unsent because it fell more than ``max_backlog_ms`` behind."""
        return self._progress.dropped_bytes / BYTES_PER_MS

    def _seen(self) -> None:
        if self.outcome is Outcome.FAILED:
            self._error_seen = True

    def __await__(self) -> Generator[Any, None, PlayHandle]:
        yield from self.wait().__await__()
        if self._error is not None:
            raise self._error
        return self

    def __repr__(self) -> str:
        return (
            f"<PlayHandle {self.id} {self.outcome.value} sent_ms={self.sent_ms:.0f} "
            f"played_ms={self.played_ms:.0f}>"
        )


class MarkHandle(_Handle):
    """A mark sent with :meth:`MediaStream.send_mark`; awaiting it returns the handle.

    ``outcome`` is ``PLAYED`` when Twilio echoed it with no ``clear`` in between (the audio
    before it played), ``INTERRUPTED`` when a ``clear`` sent after it caused the echo, and
    ``ENDED`` when the stream ended first.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __await__(self) -> Generator[Any, None, MarkHandle]:
        yield from self.wait().__await__()
        return self


class AudioFeed:
    """Live audio the app writes as it comes: headerless mu-law/8000, played in order.

    Give it to :meth:`MediaStream.play` (``handle = stream.play(feed)``), then call
    :meth:`write` with each piece of audio, from a callback or a task, and :meth:`end` when
    there is no more. Each :meth:`write` queues the audio and sends what the pacing allows at
    once, with no task between: the cheapest way to relay audio (an echo, a bridge to another
    call, a TTS engine that calls back). Audio written before :meth:`MediaStream.play` waits
    for it; audio written after :meth:`end`, or after the play resolved (a ``clear``, the
    stream's end), is dropped.

    Example::

        feed = AudioFeed()
        handle = stream.play(feed, max_backlog_ms=2000)
        stream.on_media(lambda media: feed.write(media.payload))  # an echo
    """

    __slots__ = ("_early", "_ended", "_play_id", "_playback")

    def __init__(self) -> None:
        self._playback: Playback | None = None
        self._play_id = 0
        self._early: list[bytes] = []
        self._ended = False

    def write(self, mulaw: bytes) -> None:
        """Queue audio (headerless mu-law at 8000 Hz) and send what is due."""
        if self._ended:
            return
        playback = self._playback
        if playback is None:
            self._early.append(bytes(mulaw))
            return
        playback.feed(self._play_id, mulaw)

    def end(self) -> None:
        """No more audio: the play resolves once what was written has played."""
        if self._ended:
            return
        self._ended = True
        if self._playback is not None:
            self._playback.end_feed(self._play_id)

    def _attach(self, playback: Playback, play_id: int) -> None:
        if self._playback is not None:
            raise ValueError("this AudioFeed is already playing; make one per play")
        self._playback, self._play_id = playback, play_id
        early, self._early = self._early, []
        for mulaw in early:
            playback.pacer.add_audio(play_id, mulaw)
        if self._ended:
            playback.end_feed(play_id)
        else:
            playback.pump()


class Playback:
    """Plays and marks for one stream: handles, source feeders, and the frame writer.

    Args:
        protocol: the stream's protocol; frames are queued on it, then sent.
        send: sends one text frame on the socket.
        pacer: decides what goes out when.
        send_now: writes one frame's bytes at once if the socket can take it (a
            :class:`~mediastreams.websocket.PushTransport`'s ``send_now``), or ``None``.
        spawn: starts a task the stream awaits at its end.
        on_dropped: a send found the socket gone.
        on_crash: a send raised something else.
    """

    def __init__(
        self,
        protocol: AppProtocol,
        send: Callable[[str], Awaitable[None]],
        pacer: Pacer,
        *,
        send_now: Callable[[bytes], bool] | None = None,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        on_dropped: Callable[[], None],
        on_crash: Callable[[BaseException], None],
    ) -> None:
        self.protocol = protocol
        self.pacer = pacer
        self._send = send
        self._send_now = send_now
        self._held: list[bytes] = []  # frames made, waiting for the writer task to send
        self._spawn = spawn
        self._on_dropped = on_dropped
        self._on_crash = on_crash
        self._ids = itertools.count(1)  # plays and marks share one count
        self._plays: dict[int, PlayHandle] = {}  # pending
        self._marks: dict[int, MarkHandle] = {}  # pending
        self._failed: list[PlayHandle] = []  # failed plays, until someone saw the error
        self._feeders: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._ended = False
        self.sending = False
        self.frames_out = 0  # the watchdog's view of progress

    # --- what the app asks for ----------------------------------------------------------------

    def play(
        self, source: AudioInput, format: Any, sample_rate: int | None, max_backlog_ms: int | None
    ) -> PlayHandle:
        """Queue a play (see :meth:`MediaStream.play`) and return its handle."""
        if max_backlog_ms is not None and max_backlog_ms <= 0:
            raise ValueError(
                f"max_backlog_ms must be positive (or None to keep all), not {max_backlog_ms}"
            )
        play_id = next(self._ids)
        progress = self.pacer.add_play(play_id, max_backlog_ms=max_backlog_ms)
        if isinstance(source, AudioFeed):
            handle = PlayHandle(play_id, "an AudioFeed", progress)
            self._plays[play_id] = handle
            source._attach(self, play_id)
            return handle
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            handle = PlayHandle(play_id, f"{len(data)} bytes", progress)
            self._plays[play_id] = handle
            if format is None and not (data and container_format(data)):
                # Headerless mu-law: sent as it is, with no task and no audio import.
                self.pacer.add_audio(play_id, data)
                self.pacer.end_source(play_id)
                self.pump()
                return handle
        else:
            # mediastreams.audio (numpy, soxr, miniaudio) is imported only when a source
            # needs converting, so a session that sends mu-law bytes never pays for it.
            from .audio.source import describe_source

            handle = PlayHandle(play_id, describe_source(source), progress)
            self._plays[play_id] = handle
        feeder = self._spawn(self._feed(handle, source, format, sample_rate))
        self._feeders[play_id] = feeder
        feeder.add_done_callback(lambda _: self._feeders.pop(play_id, None))
        return handle

    def send_mark(self, name: str) -> MarkHandle:
        """Queue a mark of the app's own (see :meth:`MediaStream.send_mark`)."""
        if not name or name.startswith(MARK_PREFIX):
            raise LocalProtocolError(
                local_violation(
                    "bad-mark",
                    f"mark names must be non-empty and not start with {MARK_PREFIX!r}",
                    "Pick another name.",
                )
            )
        handle = MarkHandle(name)
        mark_id = next(self._ids)
        self._marks[mark_id] = handle
        self.pacer.add_mark(mark_id, name)
        self.pump()
        return handle

    def clear(self) -> list[PlayHandle]:
        """Send ``clear`` and interrupt every pending play (see :meth:`MediaStream.clear`)."""
        self.protocol.send_clear()
        interrupted = [self._plays[play_id] for play_id in self.pacer.pending()]
        self.pacer.clear()
        self._apply()
        current = asyncio.current_task()
        for handle in interrupted:
            feeder = self._feeders.get(handle.id)
            if feeder is not None and feeder is not current:
                feeder.cancel()  # stop pulling from a TTS stream nobody will hear
        self.pump()
        return interrupted

    # --- what the stream tells it -------------------------------------------------------------

    def on_echo(self, name: str) -> bool:
        """Twilio echoed a mark; returns whether it was the pacer's own (not an app event)."""
        own = self.pacer.on_echo(name)
        self._apply()
        if own:
            self.pump()  # room for more audio
        return own

    def feed(self, play_id: int, mulaw: bytes) -> None:
        """More audio for an :class:`AudioFeed`'s play; sent as the pacing allows."""
        send_now = self._send_now
        if (
            send_now is not None
            and not self.sending
            and not self._held
            and not self._ended
            and self.pacer.pass_through(play_id, mulaw)
        ):
            # A relay's frame, whole and due now (the hot path): straight out, no queue.
            try:
                frame = self.protocol.encode_media(mulaw)
                if send_now(frame):
                    self.frames_out += 1
                else:
                    self._held.append(frame)  # the peer reads too slowly: the writer waits
                    self._wake.set()
            except StreamClosed:
                self._on_dropped()
            except Exception as error:
                self._on_crash(error)
            return
        self.pacer.add_audio(play_id, mulaw)
        self.pump()

    def end_feed(self, play_id: int) -> None:
        """An :class:`AudioFeed` has ended."""
        self.pacer.end_source(play_id)
        self.pump()

    def end(self) -> None:
        """The stream ended: every handle resolves, every source stops, the writer returns."""
        self._ended = True
        self.pacer.end()
        self._apply()
        current = asyncio.current_task()
        for feeder in self._feeders.values():
            if feeder is not current:
                feeder.cancel()  # a TTS source may never end by itself
        self._wake.set()

    def unseen_failures(self) -> list[tuple[PlayHandle, BaseException]]:
        """Each play that failed with nobody awaiting it, once: the stream logs them."""
        unseen = []
        for handle in self._failed:
            error = handle._unseen_error()
            if error is not None:
                unseen.append((handle, error))
                handle._error_seen = True
        self._failed.clear()
        return unseen

    # --- inside -------------------------------------------------------------------------------

    def _apply(self) -> None:
        """Resolve the handles of what the pacer resolved."""
        for resolved in self.pacer.resolved():
            if isinstance(resolved, MarkResolved):
                self._marks.pop(resolved.mark_id)._resolve(resolved.outcome)
            else:
                self._plays.pop(resolved.play_id)._resolve(resolved.outcome)

    async def _feed(
        self, handle: PlayHandle, source: AudioInput, format: Any, sample_rate: int | None
    ) -> None:
        from .audio.source import mulaw_chunks

        try:
            async for chunk in mulaw_chunks(source, format=format, sample_rate=sample_rate):
                if handle.done():
                    return  # interrupted: stop pulling from the source
                self.pacer.add_audio(handle.id, chunk)
                if self._send_now is None:
                    await self.flush()  # from this task: saves a switch to the writer's
                else:
                    self.pump()
        except Exception as error:
            # Not swallowed: the error goes to whoever awaits the handle, or to the log when
            # the stream is closed and nothing did.
            if not handle.done():
                handle._error = error
                self._failed.append(handle)
            self.pacer.fail_source(handle.id)
            self._apply()
        finally:
            self.pacer.end_source(handle.id)
            self.pump()

    async def run(self) -> None:
        """The writer task: sends what synchronous calls (play, send_mark, clear, echoes) queued."""
        while not self._ended:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    def pump(self) -> None:
        """Make the frames due now and send them: at once on a transport that writes at once,
        else by the writer task. Called after each change (a play, audio, a mark, an echo, a
        clear)."""
        if self._ended:
            return
        send_now = self._send_now
        if send_now is None or self.sending or self._held:
            # The writer task sends, in order; the frames are made now, so the pacing (and a
            # live play's backlog) sees them sent as soon as the lead allows.
            self._make_frames()
            self._wake.set()
            return
        self.sending = True
        try:
            # One pass: sending calls nothing back, so nothing new is due after it.
            self._make_frames()
            frames = self.protocol.encoded_to_send()
            sent = 0
            for frame in frames:
                if not send_now(frame):
                    # The peer reads too slowly: the writer task waits for room.
                    self._held = frames[sent:]
                    self._wake.set()
                    break
                sent += 1
            self.frames_out += sent
        except StreamClosed:
            self._on_dropped()  # the reader sees the socket gone and finishes
        except Exception as error:
            self._on_crash(error)
        finally:
            self.sending = False

    def _make_frames(self) -> None:
        """Queue on the protocol the frames and marks the pacer lets go now."""
        protocol = self.protocol
        for item in self.pacer.frames_to_send():
            if type(item) is bytes:
                protocol.send_media(item)
            else:  # a mark's name: now and then, not per frame
                assert isinstance(item, str)
                protocol.send_mark(item)
        self._apply()  # a play with no audio resolves when its turn comes

    async def flush(self) -> None:
        """Send what the pacer allows now, from the calling task.

        One task sends at a time, and it loops until nothing is left, so frames leave in the
        order they were queued; another task finding it busy leaves its frames to it. A
        source feeding audio calls this directly, which saves a task switch per frame. A
        send that fails ends the stream, whichever task it ran in.
        """
        if self.sending:
            return
        self.sending = True
        protocol = self.protocol
        try:
            while not self._ended:
                frames, self._held = self._held, []
                if not frames:
                    self._make_frames()
                    frames = protocol.encoded_to_send()
                if not frames:
                    break
                for frame in frames:
                    await self._send(frame.decode())
                    self.frames_out += 1
                if self._send_now is not None:
                    break  # room again: pump() sends the rest at once
        except StreamClosed:
            self._on_dropped()  # the reader sees the socket gone and finishes
        except Exception as error:
            self._on_crash(error)
        finally:
            self.sending = False
        if self._send_now is not None and not self._ended:
            self.pump()
