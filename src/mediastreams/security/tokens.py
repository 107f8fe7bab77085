"""One-time stream tokens: a stream tied to the signed webhook that asked for it.

A signature covers only the URL of the upgrade, so it is the same for every call;
:class:`StreamTokens` adds one token per call, minted when the webhook is answered (a
replayed webhook gets the same pending token or none) and burned when the stream starts.
:class:`TokenStore` states the rules every store keeps (the Redis one too).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..exceptions import CapacityError, ReplayError, SignatureError
from .escapes import loggable

__all__ = ["StreamTokens", "TokenStore"]


class TokenStore(Protocol):
    """Where stream tokens are kept: the rules below hold for every store.

    - **One token per call.** :meth:`mint_for` gives a ``CallSid`` one token; asked again
      while that token is pending (a webhook retried or replayed), it gives the same token,
      and once the token was used or expired it refuses (:class:`ReplayError`), never
      minting a second one.
    - **Bounded, never evicting.** When the pending tokens reach the store's bound, new
      mints are refused (:class:`CapacityError`); a pending token is never dropped to make
      room, so no flood of webhooks can take another call's token away.
    - **Once, for that call, in time.** :meth:`redeem` accepts the call's pending token
      once, before it expires.

    :class:`StreamTokens` keeps them in memory, for one process; a store shared by several
    processes (Redis) implements the same two methods with the same rules.
    """

    def mint_for(self, call_sid: str) -> str:
        """The token for ``call_sid``: a new one, or the one still pending.

        Raises:
            ReplayError: this call's token was already used or has expired.
            CapacityError: the store is full of pending tokens.
        """
        ...

    def redeem(self, token: str | None, call_sid: str) -> None:
        """Accept and burn the pending token of ``call_sid``.

        Raises:
            SignatureError: the token is missing, was never issued to this call, was
                already used, or has expired.
        """
        ...


@dataclass(slots=True)
class _Spent:
    forget_at: float
    reason: str  # "used" or "expired"


class StreamTokens:
    """One-time tokens that tie a stream to the webhook that asked for it, kept in memory.

    The upgrade's signature covers only its URL, so it is the same for every call and can
    be replayed. Mint a token while answering the (signed) voice webhook, put it in a
    ``<Parameter>``, and redeem it when ``start`` arrives with the token in
    ``customParameters``: it works once, for that call, before it expires. The rules are
    :class:`TokenStore`'s.

    A call whose token was used or expired is remembered for ``remember_seconds``, so a
    replay of its webhook mints nothing; past ``max_remembered`` calls the oldest memory is
    dropped (that only lets a very old replay mint again, and a signed replay is the only
    kind that reaches the store when signatures are checked).

    Use one instance per process, from one thread or event loop.

    Args:
        ttl_seconds: how long a token stays valid; a stream starts within seconds.
        max_pending: how many unredeemed tokens are kept; past that, mints are refused.
        remember_seconds: how long a call whose token was used or expired stays refused.
        max_remembered: how many such calls are remembered.
        clock: seconds from an arbitrary origin (``time.monotonic``); injectable for tests.
    """

    def __init__(
        self,
        ttl_seconds: float = 60.0,
        *,
        max_pending: int = 10_000,
        remember_seconds: float = 4 * 3600.0,
        max_remembered: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = {
            "ttl_seconds": ttl_seconds,
            "max_pending": max_pending,
            "remember_seconds": remember_seconds,
            "max_remembered": max_remembered,
        }
        for name, value in settings.items():
            if value <= 0:
                raise ValueError(f"StreamTokens {name} must be positive, not {value!r}")
        self.ttl_seconds = ttl_seconds
        self.max_pending = max_pending
        self.remember_seconds = remember_seconds
        self.max_remembered = max_remembered
        self._clock = clock
        # CallSid -> (token, expiry); CallSid -> what became of its token. One TTL each and a
        # monotonic clock make insertion order expiry order: what is due is at the front.
        self._pending: dict[str, tuple[str, float]] = {}
        self._spent: dict[str, _Spent] = {}

    @property
    def pending(self) -> int:
        """How many tokens wait to be redeemed (expired ones not yet swept included)."""
        return len(self._pending)

    def mint_for(self, call_sid: str) -> str:
        """The token for ``call_sid``, to send in a ``<Parameter>``.

        Args:
            call_sid: the ``CallSid`` of the webhook being answered.

        Returns:
            An unguessable URL-safe token (43 characters); the same one while it is pending.

        Raises:
            ReplayError: this call's token was already used or has expired: the webhook was
                replayed.
            CapacityError: ``max_pending`` tokens are pending.
        """
        now = self._clock()
        self._sweep(now)
        entry = self._pending.get(call_sid)
        if entry is not None:
            return entry[0]
        spent = self._spent.get(call_sid)
        if spent is not None:
            raise ReplayError(
                f"the stream token of call {_sid(call_sid)} was already {spent.reason}; "
                "a replayed webhook gets no new one"
            )
        if len(self._pending) >= self.max_pending:
            raise CapacityError(
                f"{len(self._pending)} stream tokens are pending, the most this store keeps "
                "(StreamTokens max_pending): new calls are refused until some start or expire"
            )
        token = secrets.token_urlsafe(32)
        self._pending[call_sid] = (token, now + self.ttl_seconds)
        return token

    def redeem(self, token: str | None, call_sid: str) -> None:
        """Check and burn the token received in ``start.customParameters``.

        A wrong token leaves the call's pending token in place: whoever knows a ``CallSid``
        cannot burn the token of that call by guessing.

        Args:
            token: the token received, or ``None`` if the parameter was missing.
            call_sid: ``start.callSid``.

        Raises:
            SignatureError: the token is missing, was not issued to this call, was already
                used, or has expired.
        """
        if not token:
            raise SignatureError("the stream carries no token")
        now = self._clock()
        self._sweep(now)
        entry = self._pending.get(call_sid)
        if entry is None:
            spent = self._spent.get(call_sid)
            if spent is None:
                raise SignatureError(f"no stream token was issued to call {_sid(call_sid)}")
            raise SignatureError(
                f"the stream token of call {_sid(call_sid)} was already {spent.reason}"
            )
        if not hmac.compare_digest(entry[0].encode(), token.encode()):
            raise SignatureError(f"the stream token is not the one issued to call {_sid(call_sid)}")
        del self._pending[call_sid]
        self._remember(call_sid, "used", now)

    def _sweep(self, now: float) -> None:
        while self._pending:
            call_sid, (_, expires_at) = next(iter(self._pending.items()))
            if expires_at > now:
                break
            del self._pending[call_sid]
            self._remember(call_sid, "expired", now)
        while self._spent:
            call_sid, spent = next(iter(self._spent.items()))
            if spent.forget_at > now:
                break
            del self._spent[call_sid]

    def _remember(self, call_sid: str, reason: str, now: float) -> None:
        while len(self._spent) >= self.max_remembered:
            del self._spent[next(iter(self._spent))]
        self._spent[call_sid] = _Spent(now + self.remember_seconds, reason)


def _sid(call_sid: str) -> str:
    # A CallSid comes from the peer (a webhook's form, a start frame) and these messages
    # end up in log lines.
    return loggable(call_sid, max_chars=64)
