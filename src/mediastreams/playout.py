"""Twilio's playout buffer: the app's audio waiting to be played, and its marks in between.

https://www.twilio.com/docs/voice/media-streams/websocket-messages: audio the app sends is
queued and played in order; a ``mark`` waits behind the audio sent before it and is echoed
once that audio has played (at once when nothing is queued); ``clear`` drops the audio and
echoes every waiting mark. This class keeps that order and says which marks to echo; the
frames themselves are :class:`~mediastreams.protocol.TwilioProtocol`'s.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Playout"]


class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Playout:
    """Audio and marks in the order the app sent them.

    Args:
        max_bytes: audio past this many queued bytes is refused (Twilio discards it, 31931).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._queue: deque[bytes | _Mark] = deque()
        self._bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Audio waiting to be played, in bytes."""
        return self._bytes

    @property
    def pending_marks(self) -> tuple[str, ...]:
        """Names of the marks waiting behind audio, oldest first."""
        return tuple(e.name for e in self._queue if isinstance(e, _Mark))

    def add_audio(self, payload: bytes) -> bool:
        """Queue audio; ``False`` (and nothing queued) when it would pass ``max_bytes``."""
        if self._bytes + len(payload) > self.max_bytes:
            return False
        self._queue.append(payload)
        self._bytes += len(payload)
        return True

    def add_mark(self, name: str) -> bool:
        """Queue a mark behind the audio; ``False`` when nothing is queued: echo it now."""
        if not self._queue:
            return False
        self._queue.append(_Mark(name))
        return True

    def clear(self) -> tuple[str, ...]:
        """Drop everything; the marks that were waiting, in order, to echo now."""
        pending = self.pending_marks
        self._queue.clear()
        self._bytes = 0
        return pending

    def play(self, n_bytes: int) -> tuple[bytes, list[str]]:
        """Play up to ``n_bytes``: the audio played, and the marks it reached, in order.

        A mark right after the played audio is reached too: everything before it has played.
        The audio is shorter than ``n_bytes`` when the queue ran out.
        """
        queue = self._queue
        played = bytearray()
        reached: list[str] = []
        while queue:
            head = queue[0]
            if type(head) is _Mark:
                reached.append(head.name)
                queue.popleft()
                continue
            if len(played) >= n_bytes:
                break
            assert isinstance(head, bytes)
            take = n_bytes - len(played)
            if len(head) <= take:
                played += head
                queue.popleft()
            else:
                played += head[:take]
                queue[0] = head[take:]
        self._bytes -= len(played)
        return bytes(played), reached
