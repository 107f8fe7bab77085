"""Every exception mediastreams raises.

The tree::

    MediaStreamsError
    ├── ProtocolError                  abstract: a frame or a call broke the Media Streams protocol
    │   ├── LocalProtocolError         you did: sent in the wrong state, built an invalid frame
    │   └── RemoteProtocolError        the peer did: bad JSON, a missing field, out of order
    ├── StreamClosed                   the stream has ended (stop, close or a dropped socket)
    ├── StreamTimeout (TimeoutError)   a deadline passed: no `start`, a mark never echoed
    ├── AudioError (ValueError)        audio that cannot be read or converted
    │   ├── CorruptedAudio             a file whose contents cannot be decoded (damaged)
    │   ├── EmptyAudio                 a file or buffer with no audio in it (zero length)
    │   ├── TruncatedAudio             a file that ends before its header says it should
    │   ├── UnknownAudioFormat         bytes that are no format we know, or raw bytes undeclared
    │   └── UnsupportedAudio           a known container with a codec or width we do not convert
    ├── TwiMLError (ValueError)        TwiML that Twilio would refuse
    ├── SignatureError                 an X-Twilio-Signature is missing or wrong
    │   └── ReplayError                a request already answered once, sent again
    ├── CapacityError                  a bound is full: new work is refused until some ends
    ├── ViolationsFound (AssertionError) an emulated call's app made mistakes (raise_for_violations)
    └── EmulatorError                  the emulator could not place or run a call
        ├── ConnectFailed              the app's WebSocket could not be opened (31901-31920)
        └── WebhookFailed              a request to the app failed: TwiML, a callback (11200)

A :class:`ProtocolError`, a :class:`ConnectFailed` and a :class:`WebhookFailed` carry the
:class:`~mediastreams.violations.Violation` that describes them: Twilio's error code, who
was at fault, the frame if there was one, a plain message and a hint on how to fix it.
``str(error)`` is the message followed by the hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .violations import Finding, Violation

__all__ = [
    "AudioError",
    "CapacityError",
    "ConnectFailed",
    "CorruptedAudio",
    "EmptyAudio",
    "EmulatorError",
    "LocalProtocolError",
    "MediaStreamsError",
    "ProtocolError",
    "RemoteProtocolError",
    "ReplayError",
    "SignatureError",
    "StreamClosed",
    "StreamTimeout",
    "TruncatedAudio",
    "TwiMLError",
    "UnknownAudioFormat",
    "UnsupportedAudio",
    "ViolationsFound",
    "WebhookFailed",
]


class MediaStreamsError(Exception):
    """The root of every error mediastreams raises."""


class ProtocolError(MediaStreamsError):
    """A frame or an action broke the Media Streams protocol.

    Abstract: what is raised is always :class:`LocalProtocolError` or
    :class:`RemoteProtocolError`.

    Attributes:
        violation: what went wrong, with Twilio's code and a hint.
    """

    def __init__(self, violation: Violation) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError, not ProtocolError")
        super().__init__(violation.describe())
        self.violation = violation

    @property
    def code(self) -> int:
        """Twilio's error code for this violation (31950, 31951, ...)."""
        return self.violation.code


class LocalProtocolError(ProtocolError):
    """You broke the protocol: a frame sent in the wrong state, or an invalid frame built."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: bad JSON, a missing field, a frame out of order."""


class StreamClosed(MediaStreamsError):
    """The stream has ended, so nothing more can be sent or received on it."""


class StreamTimeout(MediaStreamsError, TimeoutError):
    """A deadline passed: no ``start`` in time, or a mark was never echoed."""


class AudioError(MediaStreamsError, ValueError):
    """Audio that cannot be read or converted: an unknown format, a truncated file..."""


class CorruptedAudio(AudioError):
    """A file that has a known signature but cannot be decoded: damaged, or cut short."""


class EmptyAudio(AudioError):
    """A file or buffer with no audio in it: zero bytes, or a header with an empty data chunk."""


class TruncatedAudio(AudioError):
    """A file that ends before its header says it should (a partial download or copy)."""


class UnknownAudioFormat(AudioError):
    """Bytes whose format is not recognised, or raw bytes given without a declared format."""


class UnsupportedAudio(AudioError):
    """A recognised container holding something not converted: a codec, a sample width..."""


class TwiMLError(MediaStreamsError, ValueError):
    """TwiML that Twilio would refuse, with the reason."""


class SignatureError(MediaStreamsError):
    """An ``X-Twilio-Signature`` header is missing or does not match."""


class ReplayError(SignatureError):
    """A request that was already answered once came again: a replayed webhook.

    Twilio's signatures carry no timestamp, so a copy of a signed request stays valid; the
    stream token store refuses to mint a second token for a ``CallSid``.
    """


class CapacityError(MediaStreamsError):
    """A bound is full (pending stream tokens, connections): new work is refused."""


class ViolationsFound(MediaStreamsError, AssertionError):
    """An emulated call's app made mistakes: ``CallResult.raise_for_violations()`` raises it.

    An ``AssertionError`` too, so that a test fails with it as with a failed ``assert``.
    ``str(error)`` lists every kind of mistake once, with Twilio's code, the message, the
    hint and how often it happened.

    Attributes:
        findings: the app's mistakes, each kind once (its first occurrence).
    """

    def __init__(self, message: str, findings: Sequence[Finding]) -> None:
        super().__init__(message)
        self.findings = list(findings)


class EmulatorError(MediaStreamsError):
    """The emulator could not place or run a call."""


class _AppUnreachable(EmulatorError):
    """Twilio's side could not get what it needed from the app; ``violation`` says why."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.describe())
        self.violation = violation


class ConnectFailed(_AppUnreachable):
    """The app's WebSocket could not be opened: refused, unreachable, a failed handshake.

    Attributes:
        violation: what went wrong, with Twilio's code (31901, 31902, 31904, 31910, 31920).
    """


class WebhookFailed(_AppUnreachable):
    """A request to the app failed: the voice webhook, more TwiML, a status callback.

    Attributes:
        violation: what went wrong, with Twilio's code (11200).
    """
