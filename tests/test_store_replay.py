"""The stream token rules hold the same in one process and across instances on Redis.

One token per CallSid: a replayed webhook gets the pending token again, or nothing once it
was used or has expired; a flood of new CallSids is refused once the store is full, never by
dropping another call's pending token; a wrong token does not burn the call's real one.
With Redis, the two states below are two instances: what one mints, the other redeems.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from fleet import RedisServer, redis_server
from mediastreams.exceptions import CapacityError, ReplayError, SignatureError
from mediastreams.security import StreamTokens
from mediastreams.store import LocalState, RedisState, SharedState

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@contextlib.asynccontextmanager
async def token_pair(
    kind: str, redis: RedisServer, ttl_s: float
) -> AsyncIterator[tuple[SharedState, SharedState]]:
    """Two views of one token store: the same object in one process, two instances on Redis."""
    tokens = StreamTokens(ttl_seconds=ttl_s, max_pending=5)
    if kind == "local":
        states: list[SharedState] = [LocalState(tokens)]
    else:
        namespace = f"replay-{id(tokens)}"
        states = [RedisState(redis.url, tokens=tokens, namespace=namespace) for _ in range(2)]
    for state in states:
        await state.start()
    try:
        yield states[0], states[-1]
    finally:
        for state in states:
            await state.close()


@pytest.fixture(params=["local", "redis"])
async def pair(
    request: pytest.FixtureRequest, redis: RedisServer
) -> AsyncIterator[tuple[SharedState, SharedState]]:
    async with token_pair(request.param, redis, ttl_s=60.0) as states:
        yield states


@pytest.fixture(params=["local", "redis"])
async def short_pair(
    request: pytest.FixtureRequest, redis: RedisServer
) -> AsyncIterator[tuple[SharedState, SharedState]]:
    async with token_pair(request.param, redis, ttl_s=0.5) as states:
        yield states


async def test_a_replayed_webhook_gets_the_pending_token_then_nothing(
    pair: tuple[SharedState, SharedState],
) -> None:
    first, second = pair
    token = await first.mint_token("CA" + "1" * 32)
    for _ in range(50):  # replays of the same signed webhook, on either instance
        assert await second.mint_token("CA" + "1" * 32) == token
    await second.redeem_token(token, "CA" + "1" * 32)
    with pytest.raises(ReplayError):
        await first.mint_token("CA" + "1" * 32)
    with pytest.raises(SignatureError):
        await first.redeem_token(token, "CA" + "1" * 32)


async def test_an_expired_token_is_refused_and_not_minted_again(
    short_pair: tuple[SharedState, SharedState],
) -> None:
    first, second = short_pair
    token = await first.mint_token("CA" + "2" * 32)
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # the token lives 0.5 s; wait for its expiry to be seen, however slow
        try:
            await second.mint_token("CA" + "2" * 32)
        except ReplayError:
            break
        assert asyncio.get_running_loop().time() < deadline, "the token never expired"
        await asyncio.sleep(0.1)
    with pytest.raises(SignatureError):
        await second.redeem_token(token, "CA" + "2" * 32)


async def test_a_flood_is_refused_without_dropping_a_pending_token(
    pair: tuple[SharedState, SharedState],
) -> None:
    first, second = pair
    kept = await first.mint_token("CA" + "3" * 32)
    refused = 0
    for n in range(200):
        try:
            await second.mint_token(f"CA{n:032x}")
        except CapacityError:
            refused += 1
    assert refused >= 200 - 4  # max_pending is 5: the kept token holds one place
    await first.redeem_token(kept, "CA" + "3" * 32)


async def test_a_wrong_token_does_not_burn_the_real_one(
    pair: tuple[SharedState, SharedState],
) -> None:
    first, second = pair
    token = await first.mint_token("CA" + "4" * 32)
    with pytest.raises(SignatureError):
        await second.redeem_token("not-the-token", "CA" + "4" * 32)
    with pytest.raises(SignatureError):
        await second.redeem_token(token, "CA" + "5" * 32)  # another call's
    await second.redeem_token(token, "CA" + "4" * 32)
