"""What the caller heard, measured: the app's replies, barge-ins, stalls and pauses.

The stream records its playout run-length (when app audio was queued at Twilio or playing,
and how many bytes had played), every ``clear`` (with the bytes it threw away), the app's
``media`` arrivals and the ticks at which something audible played. The caller's script
records its utterances and key presses. From these:

- A **reply** is the app's audio as Twilio played it. It starts with the first tick that
  finds audio queued after a boundary, and ends at the next boundary. A boundary is a
  ``clear``, or a stretch with nothing queued (the playout idle) that lasts at least
  :data:`REPLY_IDLE_MS` or in which the caller ended a turn (an utterance ended, or a key was
  pressed): what comes after it answers the caller. A shorter idle stretch in which the
  caller ended no turn is a **stall** inside the reply: the app's audio stopped coming while
  the caller listened (or went on talking over it). An idle stretch between two replies is a
  **pause**.
- A **barge-in** is an utterance that starts during a reply (a pause inside queued audio
  counts) while audible audio is still to come in it, or that the app answers with a
  ``clear`` cutting the reply. Trailing silence at the end of a reply does not count.
- ``heard_ms`` is the audio of the interrupted reply played before its ``clear``: what an
  app should send as ``audio_end_ms`` in an OpenAI Realtime ``conversation.item.truncate``.

Times are milliseconds since ``start`` was sent; the playout moves in 20 ms ticks.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..audio.frames import FRAME_MS
from ..protocol import BYTES_PER_MS
from .script import Utterance
from .talkback import Talkback

__all__ = [
    "REPLY_IDLE_MS",
    "STALL_LISTED_MS",
    "BargeIn",
    "Measures",
    "Pause",
    "Reply",
    "Stall",
    "Turn",
    "measure",
]

REPLY_IDLE_MS = 2000
"""The playout idle this long (nothing queued) ends a reply, even without speech or clear."""
STALL_LISTED_MS = 100
"""Stalls this long or longer are listed one by one; shorter ones count in the totals."""


@dataclass(frozen=True)
class Turn:
    """The caller stopped speaking at ``speech_end_ms``; the app answered ``latency_ms`` later.

    Attributes:
        speech_end_ms: the end of the utterance.
        first_reply_ms: when the app's next ``media`` frame arrived (``None``: never).
        latency_ms: ``first_reply_ms - speech_end_ms``.
    """

    speech_end_ms: int
    first_reply_ms: float | None
    latency_ms: float | None


@dataclass(frozen=True)
class Reply:
    """One reply of the app, as Twilio played it.

    Attributes:
        start_ms: when the first tick that played it began.
        end_ms: when the last tick that played it ended (the ``clear`` stops the playout
            at the end of the tick in which it comes).
        played_ms: its audio played, silence the app sent included, stalls not.
        clear_ms: the ``clear`` that cut it (``None``: it played out).
    """

    start_ms: int
    end_ms: int
    played_ms: float
    clear_ms: float | None


@dataclass(frozen=True)
class BargeIn:
    """The caller spoke over the app's reply.

    Attributes:
        onset_ms: when the utterance started.
        clear_ms: the ``clear`` the app sent for it (``None``: the app talked over the caller).
        clear_reaction_ms: ``clear_ms - onset_ms``.
        heard_ms: how much of the interrupted reply the caller had heard at the ``clear``
            (the whole reply if it had played out by then; ``None`` without a clear).
        discarded_ms: the queued audio that ``clear`` threw away.
        audio_after_clear_ms: audio the app still sent after the ``clear`` while the caller
            was speaking.
    """

    onset_ms: int
    clear_ms: float | None
    clear_reaction_ms: float | None
    heard_ms: float | None
    discarded_ms: float
    audio_after_clear_ms: float


@dataclass(frozen=True)
class Stall:
    """Inside a reply, the playout ran dry at ``at_ms`` for ``duration_ms``."""

    at_ms: int
    duration_ms: int


PauseCause = Literal["clear", "caller", "idle"]


@dataclass(frozen=True)
class Pause:
    """Between two replies, nothing played from ``at_ms`` for ``duration_ms``.

    Attributes:
        cause: what ended the reply before it: ``"clear"``, ``"caller"`` (the caller spoke
            while nothing was queued) or ``"idle"`` (nothing was queued for 2 s or more).
    """

    at_ms: int
    duration_ms: int
    cause: PauseCause


@dataclass
class Measures:
    """Everything :func:`measure` finds."""

    turns: list[Turn] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)


@dataclass
class _Piece:
    """A stretch of the playout with audio queued, up to its end or a clear."""

    start_ms: int
    end_ms: int
    played_start: int  # bytes played before it
    played_end: int
    clear: int | None = None  # index of the clear that cut it


@dataclass
class _Reply:
    pieces: list[_Piece]
    stalls: list[Stall] = field(default_factory=list)

    @property
    def start_ms(self) -> int:
        return self.pieces[0].start_ms

    @property
    def end_ms(self) -> int:
        return self.pieces[-1].end_ms

    @property
    def clear(self) -> int | None:
        return self.pieces[-1].clear


def measure(
    talkback: Talkback, speech: Sequence[Utterance], keys_ms: Sequence[int] = ()
) -> Measures:
    """Turns, replies, barge-ins, stalls and pauses from what the stream recorded.

    Args:
        talkback: the app's audio as it came and played.
        speech: the caller's utterances.
        keys_ms: when the caller pressed keys.
    """
    turn_ends = sorted([u.end_ms for u in speech] + list(keys_ms))
    replies = _replies(_pieces(talkback), talkback, turn_ends)
    found = Measures(turns=[_turn(u, talkback) for u in speech])
    for reply in replies:
        first, last = reply.pieces[0], reply.pieces[-1]
        clear_ms = None if reply.clear is None else talkback.clears_ms[reply.clear]
        played_ms = (last.played_end - first.played_start) / BYTES_PER_MS
        found.replies.append(Reply(reply.start_ms, reply.end_ms, played_ms, clear_ms))
        found.stalls += reply.stalls
    found.pauses = [
        Pause(
            before.end_ms,
            after.start_ms - before.end_ms,
            _cause(before, after, talkback, speech, keys_ms),
        )
        for before, after in itertools.pairwise(replies)
    ]
    audible = list(talkback.audible_runs)
    if talkback.audible_open is not None:
        audible.append((talkback.audible_open, talkback.duration_ms))
    for utterance in speech:
        barge = _barge_in(utterance, replies, talkback, audible)
        if barge is not None:
            found.barge_ins.append(barge)
    return found


def _pieces(talkback: Talkback) -> list[_Piece]:
    """The playout's busy stretches, cut at every clear that came during one."""
    runs = list(talkback.playout_runs)
    if talkback.playout_open is not None:  # the call ended with audio playing
        start_ms, played = talkback.playout_open
        runs.append((start_ms, talkback.duration_ms, played, talkback.played_bytes))
    clears = talkback.clears_ms
    pieces = []
    index = 0
    for start_ms, end_ms, played_start, played_end in runs:
        piece = _Piece(start_ms, end_ms, played_start, played_end)
        while index < len(clears) and clears[index] < end_ms:
            if clears[index] >= start_ms:
                # A clear comes after the tick at its time played; audio queued after it
                # plays from the next tick.
                played = talkback.clears_played_bytes[index]
                next_ms = (int(clears[index]) // FRAME_MS + 1) * FRAME_MS
                piece.end_ms, piece.played_end, piece.clear = next_ms, played, index
                pieces.append(piece)
                piece = _Piece(next_ms, end_ms, played, played_end)
            index += 1
        if piece.played_end > piece.played_start:  # (nothing after a clear: no piece)
            pieces.append(piece)
    return pieces


def _replies(pieces: list[_Piece], talkback: Talkback, turn_ends: list[int]) -> list[_Reply]:
    replies: list[_Reply] = []
    for piece in pieces:
        last = replies[-1] if replies else None
        if last is None or not _same_reply(last.pieces[-1], piece, talkback, turn_ends):
            replies.append(_Reply([piece]))
            continue
        gap_start = last.pieces[-1].end_ms
        last.stalls.append(Stall(int(gap_start), int(piece.start_ms - gap_start)))
        last.pieces.append(piece)
    return replies


def _same_reply(before: _Piece, after: _Piece, talkback: Talkback, turn_ends: list[int]) -> bool:
    """Whether the idle stretch between two pieces is a stall inside one reply."""
    if before.clear is not None or after.start_ms - before.end_ms >= REPLY_IDLE_MS:
        return False
    if _clear_between(talkback, before.end_ms, after.start_ms) is not None:
        return False
    # The caller finished an utterance, or pressed a key, while nothing played: what comes
    # next answers it. Caller speech that merely goes on through a hole in the audio (an app
    # streaming slower than real time while the caller talks over it) does not end the reply.
    first = bisect.bisect_left(turn_ends, before.end_ms)
    return not (first < len(turn_ends) and turn_ends[first] <= after.start_ms)


def _clear_between(talkback: Talkback, start_ms: float, end_ms: float) -> int | None:
    """The index of the first clear in ``[start_ms, end_ms)``, if any."""
    index = bisect.bisect_left(talkback.clears_ms, start_ms)
    return index if index < len(talkback.clears_ms) and talkback.clears_ms[index] < end_ms else None


def _speech_between(speech: Sequence[Utterance], start_ms: float, end_ms: float) -> bool:
    return any(u.onset_ms < end_ms and u.end_ms > start_ms for u in speech)


def _cause(
    before: _Reply,
    after: _Reply,
    talkback: Talkback,
    speech: Sequence[Utterance],
    keys_ms: Sequence[int],
) -> PauseCause:
    if before.clear is not None or _clear_between(talkback, before.end_ms, after.start_ms):
        return "clear"
    if _speech_between(speech, before.end_ms, after.start_ms) or any(
        before.end_ms <= key_ms <= after.start_ms for key_ms in keys_ms
    ):
        return "caller"
    return "idle"


def _turn(utterance: Utterance, talkback: Talkback) -> Turn:
    index = bisect.bisect_left(talkback.media_ms, utterance.end_ms)
    reply = talkback.media_ms[index] if index < len(talkback.media_ms) else None
    latency = None if reply is None else reply - utterance.end_ms
    return Turn(utterance.end_ms, reply, latency)


def _barge_in(
    utterance: Utterance,
    replies: list[_Reply],
    talkback: Talkback,
    audible: list[tuple[int, int]],
) -> BargeIn | None:
    onset = utterance.onset_ms
    number = next((i for i, r in enumerate(replies) if r.start_ms <= onset < r.end_ms), None)
    if number is None:
        return None
    reply = replies[number]
    # Audible audio queued or playing at the onset (or, in a stall of the reply, when the
    # reply resumes), or a clear cutting the reply: the caller spoke over the app. Silence
    # the app sends (an echo of the line, a reply's tail) is no speech to talk over.
    if reply.clear is None and not _audible(_resumes_at(reply, onset), audible):
        return None
    clear = reply.clear
    if clear is None:  # a clear after the reply played out, before the next one started
        next_start = replies[number + 1].start_ms if number + 1 < len(replies) else float("inf")
        clear = _clear_between(talkback, reply.end_ms, next_start)
    if clear is None:
        return BargeIn(onset, None, None, None, 0.0, 0.0)
    clear_ms = talkback.clears_ms[clear]
    played = min(talkback.clears_played_bytes[clear], reply.pieces[-1].played_end)
    heard_ms = (played - reply.pieces[0].played_start) / BYTES_PER_MS
    return BargeIn(
        onset,
        clear_ms,
        clear_ms - onset,
        heard_ms,
        talkback.clears_discarded_bytes[clear] / BYTES_PER_MS,
        _audio_after(talkback, clear, utterance.end_ms),
    )


def _resumes_at(reply: _Reply, onset_ms: int) -> int:
    """``onset_ms``, or the end of the stall of ``reply`` it falls in."""
    for before, after in itertools.pairwise(reply.pieces):
        if before.end_ms <= onset_ms < after.start_ms:
            return after.start_ms
    return onset_ms


def _audible(at_ms: int, audible: list[tuple[int, int]]) -> bool:
    return any(start <= at_ms < end for start, end in audible)


def _audio_after(talkback: Talkback, clear: int, until_ms: float) -> float:
    """Audio that arrived after a clear, up to ``until_ms``."""
    first = talkback.clears_after_media[clear]
    last = bisect.bisect_right(talkback.media_ms, until_ms, lo=first)
    return sum(talkback.media_bytes[first:last]) / BYTES_PER_MS
