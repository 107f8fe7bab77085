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
    └── EmulatorError                  the emulator could not place or run a call

A :class:`ProtocolError` carries the :class:`~mediastreams.diagnostics.Violation` that
describes it: Twilio's error code, who sent the frame, the frame itself, a plain message and
a hint on how to fix it. ``str(error)`` is the message followed by the hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .diagnostics import Violation

__all__ = [
    "AudioError",
    "CapacityError",
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


class EmulatorError(MediaStreamsError):
    """The emulator could not place or run a call."""
