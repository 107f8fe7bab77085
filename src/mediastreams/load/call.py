"""One call of the load generator: a WebSocket as Twilio opens it, on a lean hot path.

:class:`LoadCall` is an :class:`asyncio.Protocol`. Its Twilio side is a real
:class:`~mediastreams.protocol.TwilioProtocol` whose playout is a
:class:`~mediastreams.load.playout.CountingPlayout`; most frames never reach it:

- **Caller frames** are a template filled per tick (:mod:`mediastreams.load.caller`), numbered
  by the call and counted into the protocol (:meth:`TwilioProtocol.count_media`) only when
  the protocol numbers a frame of its own (a mark echo, ``stop``).
- **The app's media** in the exact form a well-behaved app writes (this stream's SID, nothing
  else, a payload that is valid base64 and no file header) is counted into the playout with
  no JSON parse: a prefix and suffix check, one base64 decode, a stamp check.
- **Everything else** (marks, clears, media in another form, anything wrong) goes through
  :meth:`TwilioProtocol.receive` with full diagnostics, so violations are still found.

Times are microseconds since the run's epoch.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import socket
from collections.abc import Callable
from enum import Enum

from ..containers import HEADER_FIRST_BYTES, container_format
from ..messages import Clear, Mark, Media, media_frame_prefix
from ..protocol import MAX_BUFFERED_MS, STREAMING, AfterStop
from ..twilio_side import TwilioProtocol
from ..violations import Violation
from ..wireformat import BYTES_PER_MS, FRAME_BYTES, FRAME_MS
from .caller import CallerAudio, Turns, mark_prefix, media_template
from .measures import CallMeasures
from .playout import CountingPlayout
from .stats import Stats
from .target import CallFailed, StreamAddress, close_error, dropped, handshake_error
from .wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Upgrade,
    client_frame,
    close_code,
    read_frames,
    text_frame,
)

__all__ = ["CallSetup", "LoadCall", "Phase"]

_SUFFIX = b'"}}'
_CLOSE_WAIT_S = 5.0  # for the app's close frame after ours


class Phase(Enum):
    OPENING = "opening"  # TCP and the upgrade
    STREAMING = "streaming"  # the caller talks
    DRAINING = "draining"  # the caller stopped: echoes and the app's audio play out
    CLOSING = "closing"  # stop and our close frame sent
    ENDED = "ended"


class CallSetup:
    """What every call of a process shares: the stats, the audio, the turns, the clock."""

    def __init__(
        self,
        stats: Stats,
        audio: CallerAudio,
        turns: Turns,
        clock_us: Callable[[], int],
        auth_token: str | None,
    ) -> None:
        self.stats = stats
        self.audio = audio
        self.turns = turns
        self.clock_us = clock_us
        self.auth_token = auth_token


class LoadCall(asyncio.Protocol):
    """One call: the upgrade, ``connected`` and ``start``, caller frames per tick, the app's
    frames in, the drain, ``stop`` and the close."""

    def __init__(
        self,
        setup: CallSetup,
        address: StreamAddress,
        stream_sid: str,
        call_sid: str,
        account_sid: str,
    ) -> None:
        self.setup = setup
        self.address = address
        self.phase = Phase.OPENING
        self.slot = 0  # which of the run's tick slots serves it
        self.up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failure: Violation | None = None
        self.transport: asyncio.Transport | None = None
        self._upgrade: Upgrade = address.upgrade(setup.auth_token)
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragment_op = OP_TEXT
        self.playout = CountingPlayout(MAX_BUFFERED_MS * BYTES_PER_MS)
        self.protocol = TwilioProtocol(
            stream_sid=stream_sid,
            call_sid=call_sid,
            account_sid=account_sid,
            custom_parameters=address.parameters,
            playout=self.playout,
        )
        self._prefix = media_frame_prefix(stream_sid).encode()
        self._prefix_len = len(self._prefix)
        self._mark_prefix = mark_prefix(stream_sid)
        self._mark_prefix_len = len(self._mark_prefix)
        self._template = media_template(stream_sid)
        self._sequence = 0
        self._frame = 0  # caller frames sent
        self._synced = 0  # of them, counted into the protocol
        audio = setup.audio
        self._speech, self._speech_frames, self._silence = (
            audio.speech,
            len(audio.speech),
            audio.silence,
        )
        self._turns = setup.turns if setup.turns.listen_ms else None
        self._talking = False
        self.measures = CallMeasures(setup.stats)
        self.end_us = 0  # when the caller stops talking
        self.drain_until_us = 0
        self._app_closed: int | None = None
        self._closing_timer: asyncio.TimerHandle | None = None
        self._counters = setup.stats.counters

    # --- opening ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self._upgrade.request)

    def _upgraded(self) -> None:
        head, sep, rest = self._buffer.partition(b"\r\n\r\n")
        if not sep:
            if len(self._buffer) > 16_384:
                self.fail(handshake_error("no end to the answer's headers", self.address.url))
            return
        problem = self._upgrade.check(head)
        if problem is not None:
            self.fail(handshake_error(problem, self.address.url))
            return
        self._buffer = rest
        self.protocol.send_connected()
        self.protocol.send_start()
        self._send_protocol_frames()
        self.phase = Phase.STREAMING
        self.measures.started_us = self.setup.clock_us()
        self._counters["calls_up"] += 1
        if not self.up.done():
            self.up.set_result(None)

    def begin(self, duration_us: int, drain_us: int) -> None:
        """Set when the caller stops talking, and how long the drain may last."""
        self.end_us = self.measures.started_us + duration_us
        self.drain_until_us = self.end_us + drain_us

    # --- the tick: one caller frame, 20 ms of playout ----------------------------------------

    def tick(self, now_us: int, stamp_text: bytes) -> None:
        """Send this tick's caller frame (stamped ``stamp_text``), play 20 ms, echo the marks
        it passes."""
        phase = self.phase
        if phase is Phase.STREAMING:
            if now_us < self.end_us:
                frame = self._frame
                self._frame = frame + 1
                talking = True if self._turns is None else self._turn(frame, now_us)
                self._sequence += 1
                body = self._template % (
                    self._sequence,
                    frame + 1,
                    FRAME_MS * (frame + 1),
                    stamp_text,
                    self._speech[frame % self._speech_frames] if talking else self._silence,
                )
                assert self.transport is not None
                self.transport.write(text_frame(body))
            else:
                self.phase = Phase.DRAINING
        elif phase is not Phase.DRAINING:
            return
        playout = self.playout
        if playout.queued > playout.played:
            playout.played = min(playout.played + FRAME_BYTES, playout.queued)
            if playout.played == playout.queued:
                self.measures.dry_us = now_us
            marks = playout.marks
            if marks and marks[0][0] <= playout.played:
                self._echo_marks()
        if self.phase is Phase.DRAINING and self._drained(now_us):
            self.hang_up()

    def _turn(self, frame: int, now_us: int) -> bool:
        assert self._turns is not None
        talking = self._turns.talking(frame, FRAME_MS)
        if talking is not self._talking:
            self._turn_edge(talking, now_us)
        return talking

    def _turn_edge(self, talking: bool, now_us: int) -> None:
        self._talking = talking
        if talking:
            self.measures.caller_talks(self.playout.queued - self.playout.played, now_us)
        else:
            self.measures.caller_listens(now_us)

    def _drained(self, now_us: int) -> bool:
        if now_us >= self.drain_until_us:
            return True
        echoed = self.measures.echoed
        echoes_back = echoed == 0 or echoed >= self._frame
        return echoes_back and self.playout.queued == self.playout.played and not self.playout.marks

    def _echo_marks(self) -> None:
        self._sync()
        self.protocol.play(0)  # the counts moved already: this echoes the marks passed
        self._send_protocol_frames()

    # --- the app's frames ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if self.phase is Phase.OPENING:
            self._buffer = buffer
            self._upgraded()
            if self.phase is Phase.OPENING:
                return
            buffer, self._buffer = self._buffer, b""
        now_us = self.setup.clock_us()
        prefix, prefix_len = self._prefix, self._prefix_len
        offset, size = 0, len(buffer)
        # The frames a server writes for an app: unmasked, under 64 KiB. Anything else is
        # read by read_frames, from there on.
        while size - offset >= 2:
            first, length = buffer[offset], buffer[offset + 1]
            if length < 126:
                at = offset + 2
            elif length == 126 and size - offset >= 4:
                length, at = int.from_bytes(buffer[offset + 2 : offset + 4], "big"), offset + 4
            elif length == 126:
                break
            else:
                self._unusual_frames(buffer[offset:], now_us)
                return
            end = at + length
            if end > size:
                break
            payload = buffer[at:end]
            offset = end
            if first == 0x81 and payload.endswith(_SUFFIX):
                if payload.startswith(prefix):
                    if self._fast_media(payload[prefix_len:-3], now_us):
                        continue
                elif payload.startswith(self._mark_prefix) and self._fast_mark(
                    payload[self._mark_prefix_len : -3]
                ):
                    continue
            self._frame_in(first, payload, now_us)
        self._buffer = buffer[offset:] if offset < size else b""

    def _unusual_frames(self, buffer: bytes, now_us: int) -> None:
        frames, self._buffer = read_frames(buffer)
        for first, payload in frames:
            self._frame_in(first, payload, now_us)

    def _fast_media(self, text: bytes, now_us: int) -> bool:
        """A media frame in the exact form: counted here; ``False`` sends it the slow way."""
        if self.phase is not Phase.STREAMING and self.phase is not Phase.DRAINING:
            return False
        try:
            audio = binascii.a2b_base64(text, strict_mode=True)
        except binascii.Error:
            return False
        if not audio:
            return False
        if audio[0] in HEADER_FIRST_BYTES and container_format(audio) is not None:
            return False  # a file header: the protocol words the warning (31924)
        playout = self.playout
        was_empty = playout.queued == playout.played
        if not playout.add_bytes(len(audio)):
            return False  # the buffer is full: the protocol words the warning (31931)
        self.measures.media(audio, was_empty, now_us)
        return True

    def _fast_mark(self, text: bytes) -> bool:
        """A mark in the exact form, with a name that needs no unescaping: queued here."""
        if self.phase is not Phase.STREAMING and self.phase is not Phase.DRAINING:
            return False
        if b'"' in text or b"\\" in text:
            return False
        try:
            name = text.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if not name.isprintable():  # control characters are not valid JSON: diagnose them
            return False
        self._counters["marks_received"] += 1
        # Queued behind the audio, as the protocol would; into an empty buffer it is reached
        # at once, and the protocol echoes it now (as its own rule says).
        playout = self.playout
        playout.marks.append((playout.queued, name))
        if playout.queued == playout.played:
            self._echo_marks()
        return True

    def _frame_in(self, first: int, payload: bytes, now_us: int) -> None:
        opcode = first & 0x0F
        if opcode == OP_CONTINUATION or not first & 0x80:
            whole = self._fragment(first, payload)
            if whole is None:
                return
            opcode, payload = whole
        if opcode == OP_TEXT:
            self._slow(payload, now_us, text=True)
        elif opcode == OP_BINARY:
            self._slow(payload, now_us, text=False)
        elif opcode == OP_PING:
            self._write(client_frame(payload, OP_PONG))
        elif opcode == OP_CLOSE:
            self._close_received(close_code(payload))

    def _fragment(self, first: int, payload: bytes) -> tuple[int, bytes] | None:
        """Fragments (RFC 6455 5.4) gathered into the message; ``None`` until the last."""
        if first & 0x0F != OP_CONTINUATION:
            self._fragments, self._fragment_op = [], first & 0x0F
        self._fragments.append(payload)
        if not first & 0x80:
            return None
        whole, self._fragments = b"".join(self._fragments), []
        return self._fragment_op, whole

    def _slow(self, payload: bytes, now_us: int, *, text: bool) -> None:
        """Any frame off the fast path, read by the Twilio side with full diagnostics."""
        self._sync()
        playout = self.playout
        was_empty = playout.queued == playout.played
        frame: str | bytes = payload
        if text:
            # Not UTF-8: read as the binary it is (Twilio's 31950, "not a text frame").
            with contextlib.suppress(UnicodeDecodeError):
                frame = payload.decode("utf-8")
        received = self.protocol.receive(frame)
        stats = self.setup.stats
        for violation in received.violations:
            stats.violation(violation)
        message = received.message
        if isinstance(received, AfterStop):
            self._counters["frames_after_stop"] += 1
        elif type(message) is Media:
            self.measures.media(message.payload, was_empty, now_us)
        elif type(message) is Mark:
            self._counters["marks_received"] += 1
        elif type(message) is Clear:
            self.measures.cleared(now_us)
        self._send_protocol_frames()

    # --- the protocol's own frames -------------------------------------------------------

    def _sync(self) -> None:
        unsynced = self._frame - self._synced
        if unsynced and self.protocol.state is STREAMING:
            self.protocol.count_media(unsynced)
        self._synced = self._frame

    def _send_protocol_frames(self) -> None:
        for text in self.protocol.data_to_send():
            self._write(text_frame(text.encode()))
        self._sequence = self.protocol.sequence_number

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # --- the end -------------------------------------------------------------------------

    def hang_up(self) -> None:
        """Send ``stop`` and a close frame (1000); the call ends when the app closes too."""
        if self.phase is not Phase.STREAMING and self.phase is not Phase.DRAINING:
            return
        self._sync()
        self._counters["marks_lost"] += len(self.playout.marks)
        self.protocol.send_stop()
        self._send_protocol_frames()
        self._write(client_frame((1000).to_bytes(2, "big"), OP_CLOSE))
        self.phase = Phase.CLOSING
        self._closing_timer = asyncio.get_running_loop().call_later(_CLOSE_WAIT_S, self._abort)

    def fail(self, error: CallFailed) -> None:
        """End the call as failed, for ``error``'s reason."""
        if self.phase is Phase.ENDED or self.failure is not None:
            return
        self.failure = error.violation
        self.setup.stats.failure(error.violation)
        if not self.up.done():
            self.up.set_exception(error)
        self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        else:
            self._ended()

    def _close_received(self, code: int | None) -> None:
        if self.phase is Phase.CLOSING:  # the answer to our close
            assert self.transport is not None
            self.transport.close()
            return
        self._app_closed = code if code is not None else 1005
        self._write(client_frame((code or 1000).to_bytes(2, "big"), OP_CLOSE))
        if self.phase is not Phase.OPENING:
            self.protocol.close()
        if code in (1000, 1001):
            self._counters["calls_ended_by_app"] += 1
        else:
            self.fail(close_error(code))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase is Phase.CLOSING:
            self._counters["calls_completed"] += 1
        elif self._app_closed is None and self.failure is None:
            self.fail(dropped(exc, self.phase is Phase.OPENING, self.address.url))
        self._ended()

    def _ended(self) -> None:
        if self.phase is Phase.ENDED:
            return
        self.phase = Phase.ENDED
        if self._closing_timer is not None:
            self._closing_timer.cancel()
        self._counters["marks_echoed"] += self.protocol.marks_echoed
        self._counters["marks_echoed_by_clear"] += self.protocol.marks_echoed_by_clear
        self.measures.fold(self._counters, self._frame)
        if not self.up.done():
            failed = self.failure
            self.up.set_exception(
                CallFailed(failed) if failed else dropped(None, True, self.address.url)
            )
        if not self.ended.done():
            self.ended.set_result(None)

    @property
    def frames_sent(self) -> int:
        return self._frame
