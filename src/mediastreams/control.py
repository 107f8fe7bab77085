"""Call control from anywhere: play, clear and hang up a call, whichever instance holds it.

A supervisor's "say this", a CRM's "hang up": the command goes to the instance that holds
the call's socket (over Redis pub/sub, or straight to the stream in a single process), and
is carried out there through the same :class:`~mediastreams.session.MediaStream` API a
handler uses (``play``, ``clear``, ``close``). The answer says what happened.

From Python, with the same Redis as the servers::

    from mediastreams.control import Control

    async with await Control.connect("redis://127.0.0.1:6379/0") as control:
        for call in await control.calls():
            print(call.call_sid, call.instance)
        result = await control.play("CA...", "notice.wav", wait=True)
        print(result.outcome, result.played_ms)
        await control.hangup("CA...")

Over HTTP, every ``serve`` instance answers the same with ``--control-token``
(``GET /calls``, ``GET /calls/{CallSid}``, ``POST /calls/{CallSid}/play``, ``/clear``,
``/hangup``; ``docs/deploy.md``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .exceptions import StreamClosed
from .security import loggable
from .session import MediaStream
from .store import CallGone, CallNotFound, CallRecord, CommandTimeout, SharedState
from .wireformat import SAMPLE_RATE

__all__ = [
    "CallGone",
    "CallNotFound",
    "CommandTimeout",
    "Control",
    "LocalCalls",
    "PlayResult",
]

logger = logging.getLogger("mediastreams.control")

#: How long a command other than a waited play may take on the instance that holds the call.
COMMAND_TIMEOUT_S = 5.0
#: The longest a ``wait=True`` play is waited for.
MAX_PLAY_WAIT_S = 3600.0


@dataclass(frozen=True)
class PlayResult:
    """What became of a play sent to a call.

    Attributes:
        play_id: the play's id (in the log line written when it ends).
        outcome: ``"played"``, ``"cleared"``, ``"ended"``... (the handle's ``Outcome``);
            ``None`` when the answer came at once, before the play ended.
        played_ms: the audio the caller heard, once it ended.
        sent_ms: the audio sent, once it ended.
    """

    play_id: str
    outcome: str | None = None
    played_ms: float | None = None
    sent_ms: float | None = None


class Control:
    """Sends commands to live calls and lists them.

    Args:
        state: the servers' shared state (a started :class:`~mediastreams.store.RedisState`,
            or a server's own).
    """

    def __init__(self, state: SharedState) -> None:
        self.state = state

    @classmethod
    async def connect(cls, redis_url: str, *, namespace: str = "mediastreams") -> Control:
        """A client on the Redis the servers use (``serve --redis``).

        Raises:
            StateUnavailable: Redis does not answer.
        """
        from .store.redis import RedisState

        state = RedisState(redis_url, namespace=namespace)
        try:
            await state.start()
        except BaseException:
            await state.close()
            raise
        return cls(state)

    async def close(self) -> None:
        """Release the connection."""
        await self.state.close()

    async def __aenter__(self) -> Control:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def calls(self) -> list[CallRecord]:
        """Every live call, on every instance."""
        return await self.state.calls()

    async def call(self, call_sid: str) -> CallRecord:
        """The live call ``call_sid``.

        Raises:
            CallNotFound: no such call, or it has ended.
            CallGone: its instance stopped answering.
        """
        return await self.state.lookup(call_sid)

    async def play(
        self,
        call_sid: str,
        audio: bytes | str | os.PathLike[str],
        *,
        wait: bool = False,
        timeout_s: float | None = None,
    ) -> PlayResult:
        """Play audio to a call.

        Args:
            call_sid: the call.
            audio: headerless mu-law/8000 bytes, or a file (a path, read here) of any format
                :func:`mediastreams.audio.to_mulaw` reads.
            wait: answer once the play ended (its outcome and ``played_ms``) instead of as
                soon as it started.
            timeout_s: the longest to wait; by default the audio's length plus 10 s.

        Raises:
            CallNotFound, CallGone, CommandTimeout, AudioError, StateUnavailable.
        """
        if isinstance(audio, bytes):
            mulaw = audio
        else:
            from .audio import to_mulaw

            mulaw = to_mulaw(os.fspath(audio))
        if timeout_s is None:
            timeout_s = COMMAND_TIMEOUT_S
            if wait:
                # One byte a sample: the play's length in seconds, and a margin.
                timeout_s = min(MAX_PLAY_WAIT_S, len(mulaw) / SAMPLE_RATE + 10.0)
        command = {"action": "play", "audio": base64.b64encode(mulaw).decode(), "wait": wait}
        answer = await self._send(call_sid, command, timeout_s)
        return PlayResult(
            play_id=str(answer["play_id"]),
            outcome=answer.get("outcome"),
            played_ms=answer.get("played_ms"),
            sent_ms=answer.get("sent_ms"),
        )

    async def clear(self, call_sid: str) -> int:
        """Stop what the call is playing (Twilio's ``clear``); how many plays were cut."""
        answer = await self._send(call_sid, {"action": "clear"}, COMMAND_TIMEOUT_S)
        return int(answer["cleared"])

    async def hangup(self, call_sid: str) -> None:
        """End the call's stream (the TwiML has nothing after it, so the call ends)."""
        await self._send(call_sid, {"action": "hangup"}, COMMAND_TIMEOUT_S)

    async def _send(
        self, call_sid: str, command: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        answer = await self.state.send_command(call_sid, command, timeout_s=timeout_s)
        status = int(answer.get("status", 500))
        if status == 404:
            raise CallNotFound(str(answer.get("error", f"call {call_sid!r} has ended")))
        if status >= 400:
            raise CommandFailed(str(answer.get("error", "the command failed")))
        return answer


class CommandFailed(Exception):
    """The instance that holds the call could not carry the command out."""


class LocalCalls:
    """The calls this instance holds, and the commands carried out on them.

    The server adds each stream once it started and removes it when it ends;
    :meth:`execute` is the instance's answer to a command sent through the shared state.
    """

    def __init__(self) -> None:
        self._streams: dict[str, MediaStream] = {}
        self._plays: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: MediaStream) -> None:
        """A stream started on this instance."""
        self._streams[stream.call_sid] = stream

    def remove(self, stream: MediaStream) -> None:
        """The stream ended."""
        if self._streams.get(stream.call_sid) is stream:
            del self._streams[stream.call_sid]

    def streams(self) -> list[MediaStream]:
        """The streams held now."""
        return list(self._streams.values())

    async def execute(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """Carry ``command`` out on its call; the answer, with an HTTP ``status``."""
        call_sid = str(command.get("call_sid"))
        stream = self._streams.get(call_sid)
        if stream is None or stream.ended:
            return {"status": 404, "error": f"call {loggable(call_sid, max_chars=64)} has ended"}
        action = command.get("action")
        try:
            if action == "play":
                return await self._play(stream, command)
            if action == "clear":
                return {"status": 200, "cleared": len(stream.clear())}
            if action == "hangup":
                await stream.close()
                return {"status": 200, "closed": True}
        except StreamClosed:
            return {"status": 404, "error": f"call {loggable(call_sid, max_chars=64)} has ended"}
        return {"status": 400, "error": f"unknown action {loggable(action, max_chars=20)}"}

    async def _play(self, stream: MediaStream, command: Mapping[str, Any]) -> dict[str, Any]:
        play_id = uuid.uuid4().hex[:12]
        handle = stream.play(base64.b64decode(command["audio"]))
        if not command.get("wait"):
            task = asyncio.create_task(_log_end(stream, handle, play_id))
            self._plays.add(task)
            task.add_done_callback(self._plays.discard)
            return {"status": 202, "play_id": play_id}
        await handle
        return {
            "status": 200,
            "play_id": play_id,
            "outcome": handle.outcome.value,
            "played_ms": handle.played_ms,
            "sent_ms": handle.sent_ms,
        }


async def _log_end(stream: MediaStream, handle: Any, play_id: str) -> None:
    await handle
    logger.info(
        "play %s sent by control ended: %s, %.0f ms of %.0f ms played",
        play_id,
        handle.outcome.value,
        handle.played_ms,
        handle.sent_ms,
        extra={"stream_sid": loggable(stream.stream_sid), "call_sid": loggable(stream.call_sid)},
    )
