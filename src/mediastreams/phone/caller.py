"""The caller on the page: its microphone, keys, mute and hang-up, one 20 ms frame per tick.

The page sends its microphone as 16-bit PCM at its own sample rate, in chunks of about
10 ms. :class:`LiveCaller` resamples them to 8 kHz (soxr, in small steps:
:class:`~mediastreams.phone.resampler.LiveResampler`), encodes them to mu-law and holds them
in a small jitter buffer; the emulator's line asks it for one 160-byte frame per 20 ms tick,
as it asks a scripted caller
(:class:`~mediastreams.emulator.script.CallerScript`). The page's audio clock and the
line's clock drift apart, and chunks arrive in bursts: the buffer starts sending after a
prefill more than a frame is in (:data:`INBOUND_PREFILL_BYTES` at first), sends silence when
it runs dry (and fills up again), and drops its oldest audio past the prefill and
:data:`INBOUND_HEADROOM_BYTES`, so the caller's voice never lags behind by more than that.
Below that cap, delay gained once (a burst) would stay for the rest of the call: when for a
whole second the buffer never went below the prefill by more than :data:`TRIM_MARGIN_BYTES`,
the excess is dropped with the next quiet frame.

Running dry means the chunks came late (a busy machine): each time, the prefill grows to
cover the dry spell (the ticks until audio came again) and a frame more, by a frame at least,
up to :data:`INBOUND_PREFILL_MAX_BYTES`; after every 5 s without running dry it shrinks back
by a frame. An idle machine keeps the small delay; a busy one trades some delay for speech
without holes.
"""

from __future__ import annotations

import numpy as np

from ..audio import MULAW_SAMPLE_RATE, mulaw
from ..emulator.loudness import is_audible
from ..emulator.script import Utterance, UtteranceCutter
from ..wireformat import FRAME_BYTES, SILENCE_FRAME
from .resampler import LiveResampler

__all__ = [
    "DTMF_KEYS",
    "INBOUND_HEADROOM_BYTES",
    "INBOUND_PREFILL_BYTES",
    "INBOUND_PREFILL_MAX_BYTES",
    "TRIM_MARGIN_BYTES",
    "LiveCaller",
]

INBOUND_PREFILL_BYTES = 80
"""10 ms of mu-law, the prefill at first: after running dry, the caller's audio goes out
again once a frame and the prefill are buffered, so that the next chunk's jitter does not
empty it at once."""
INBOUND_PREFILL_MAX_BYTES = 2400
"""300 ms: the most the prefill grows to on a busy machine."""
INBOUND_HEADROOM_BYTES = 4000
"""500 ms: more buffered than this past the prefill (the page's clock runs fast, or a long
burst came) and the oldest audio is dropped down to a frame plus the prefill. A shorter burst
is kept whole, and its delay trimmed at the next quiet moment."""
TRIM_MARGIN_BYTES = 80
"""10 ms: a lasting excess of buffered audio smaller than this is left alone."""
DTMF_KEYS = "0123456789*#"
"""The keys of the page's keypad (a phone's twelve)."""

_TRIM_WINDOW_TICKS = 50  # one second of ticks
_PREFILL_STEP_BYTES = FRAME_BYTES
_SETTLE_TICKS = 250  # 5 s without running dry: the prefill shrinks by a step


class LiveCaller:
    """A caller driven in real time from outside the emulator (the page).

    It is a :class:`~mediastreams.emulator.script.Caller`, given to
    :func:`~mediastreams.emulator.place_call_async` as ``caller=``: the line asks it for
    :meth:`tick` every 20 ms, and the report reads :attr:`speech` (the caller's utterances,
    cut on silence as for a script) and :attr:`key_presses_ms`.

    Args:
        sample_rate: the rate of the PCM given to :meth:`feed`, in Hz.

    Raises:
        ValueError: the sample rate cannot be resampled to 8 kHz in small steps
            (see :class:`~mediastreams.phone.resampler.LiveResampler`).
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._resampler = LiveResampler(sample_rate, MULAW_SAMPLE_RATE)
        self._inbound = bytearray()
        self._sending = False
        self.prefill_bytes = INBOUND_PREFILL_BYTES
        """The prefill now: it grows when the buffer runs dry, and shrinks back."""
        self._steady_ticks = 0  # since the buffer last ran dry, or the prefill last moved
        self._dry_ticks: int | None = None  # silent ticks since it ran dry, until audio comes
        self._lowest = self._most  # the least left after a tick, in this trim window
        self._window_ticks = 0
        self._excess = 0
        self._digits = ""
        self._hang_up = False
        self._cutter = UtteranceCutter()
        self.muted = False
        """While muted the caller sends silence; the microphone's audio is dropped."""
        self.underruns = 0
        """How many times the buffer ran dry while the caller's audio was going out."""
        self.dropped_ms = 0.0
        """Audio dropped: more was buffered than the prefill and the headroom, or delay
        lasted."""
        self.key_presses_ms: list[int] = []
        """When the caller's keys went out (the tick's time), in order."""

    # --- what the page does ----------------------------------------------------------------

    def feed(self, pcm16: bytes) -> None:
        """Microphone audio: little-endian 16-bit mono PCM at :attr:`sample_rate`.

        Raises:
            ValueError: an odd number of bytes (half a sample).
        """
        if len(pcm16) % 2:
            raise ValueError(f"{len(pcm16)} bytes of 16-bit PCM: half a sample is missing")
        # Resampled even while muted, so the filter has no hole in it when the caller unmutes.
        samples = self._resampler.process(np.frombuffer(pcm16, dtype="<i2"))
        if self.muted or not samples.size:
            return
        if self._dry_ticks is not None:  # next time, cover a dry spell this long
            wanted = (self._dry_ticks + 1) * FRAME_BYTES
            self._adapt(max(_PREFILL_STEP_BYTES, wanted - self.prefill_bytes))
            self._dry_ticks = None
        self._inbound += mulaw.encode_array(samples).tobytes()
        if len(self._inbound) > self._most:
            keep = FRAME_BYTES + self.prefill_bytes
            dropped = len(self._inbound) - keep
            del self._inbound[:dropped]
            self.dropped_ms += dropped / 8

    def press(self, digits: str) -> None:
        """Keys pressed: sent with the next frame, as ``dtmf`` frames in order.

        Raises:
            ValueError: a key that is not on a phone's keypad (``0-9 * #``).
        """
        bad = [key for key in digits if key not in DTMF_KEYS]
        if not digits or bad:
            raise ValueError(f"{digits!r}: the keypad has 0-9, * and #")
        self._digits += digits

    def mute(self, muted: bool) -> None:
        """Mute or unmute the microphone."""
        self.muted = muted
        if muted:
            self._inbound.clear()
            self._sending = False
            self._dry_ticks = None  # silence on purpose: no jitter to cover

    def hang_up(self) -> None:
        """The caller hangs up at the next tick."""
        self._hang_up = True

    # --- what the line asks ----------------------------------------------------------------

    def tick(self, now_ms: int, *, quiet_ms: int, app_spoke: bool) -> tuple[bytes, str, bool]:
        """The caller's frame for the 20 ms starting at ``now_ms``.

        Returns:
            ``(frame, digits, hang_up)``, as a caller script's ``tick``.
        """
        digits, self._digits = self._digits, ""
        if self._hang_up and not digits:  # keys pressed just before go out first
            return SILENCE_FRAME, digits, True
        if digits:
            self.key_presses_ms.append(now_ms)
        frame = self._next_frame()
        self._cutter.add(now_ms, is_audible(frame))
        return frame, digits, False

    @property
    def _most(self) -> int:
        """More buffered than this and the oldest audio is dropped."""
        return self.prefill_bytes + INBOUND_HEADROOM_BYTES

    def _next_frame(self) -> bytes:
        if self._dry_ticks is not None:
            self._dry_ticks += 1
        buffered = len(self._inbound)
        if not self._sending:
            if buffered < FRAME_BYTES + self.prefill_bytes:
                return SILENCE_FRAME
            self._sending = True
        if buffered < FRAME_BYTES:
            self._sending = False
            self.underruns += 1
            self._dry_ticks = 1  # this tick is silent: the first of the dry spell
            self._lowest, self._window_ticks, self._excess = self._most, 0, 0
            return SILENCE_FRAME
        self._steady_ticks += 1
        if self._steady_ticks >= _SETTLE_TICKS and self.prefill_bytes > INBOUND_PREFILL_BYTES:
            self._adapt(-_PREFILL_STEP_BYTES)
        frame = bytes(self._inbound[:FRAME_BYTES])
        del self._inbound[:FRAME_BYTES]
        self._trim(quiet=not is_audible(frame))
        return frame

    def _adapt(self, step_bytes: int) -> None:
        prefill = self.prefill_bytes + step_bytes
        self.prefill_bytes = max(INBOUND_PREFILL_BYTES, min(INBOUND_PREFILL_MAX_BYTES, prefill))
        self._steady_ticks = 0

    def _trim(self, *, quiet: bool) -> None:
        self._lowest = min(self._lowest, len(self._inbound))
        self._window_ticks += 1
        if self._window_ticks == _TRIM_WINDOW_TICKS:
            excess = self._lowest - self.prefill_bytes
            self._excess = excess if excess > TRIM_MARGIN_BYTES else 0
            self._lowest, self._window_ticks = self._most, 0
        if self._excess and quiet:
            dropped = min(self._excess, len(self._inbound))
            del self._inbound[:dropped]
            self.dropped_ms += dropped / 8
            self._excess = 0

    @property
    def speech(self) -> list[Utterance]:
        """The caller's utterances so far, in order (the one in progress once closed)."""
        return self._cutter.found

    @property
    def speaking_since_ms(self) -> int | None:
        """The onset of the utterance in progress, if the caller is speaking."""
        return self._cutter.onset_ms

    @property
    def hung_up(self) -> bool:
        """Whether the caller has asked to hang up."""
        return self._hang_up

    def finish(self) -> None:
        """The call has ended: close the utterance in progress, if any."""
        self._cutter.close()
