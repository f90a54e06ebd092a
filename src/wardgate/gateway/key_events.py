"""Key changes reach every replica at once: revocations over Redis pub/sub.

Each gateway caches verified keys for ``auth.key_cache_ttl_s`` (``auth.py``). Revoking or
rotating a key through one replica's admin API (or ``wardgate keys``) clears that cache at
once; with ``redis_url`` set it also publishes the key id on :data:`CHANNEL`, and every
replica subscribed there clears its cache when the message arrives — milliseconds, not the
TTL. Without Redis, or while Redis is down, the TTL stays the bound: a subscriber that
(re)connects clears its cache first, since it may have missed messages.

Publishing is best effort (the change is already committed to the database); a failure is
logged, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CHANNEL = "wardgate:keys:changed"
_TIMEOUT_S = 1.0
_MAX_BACKOFF_S = 10.0


class KeyEvents:
    """Publishes key changes and, while started, applies other replicas' changes."""

    def __init__(
        self, redis_url: str | None, on_change: Callable[[], None], *, channel: str = CHANNEL
    ) -> None:
        self._url = redis_url
        self._on_change = on_change
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._publisher: aioredis.Redis | None = None
        #: Set while subscribed (tests wait on it; the gateway never does).
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        if self._url is None or self._task is not None:
            return
        self._publisher = aioredis.Redis.from_url(
            self._url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
        )
        self._task = asyncio.create_task(self._listen(), name="wardgate-key-events")

    async def publish(self, key_id: str) -> None:
        if self._publisher is None:
            return
        try:
            await self._publisher.publish(self._channel, key_id)
        except (RedisError, OSError) as exc:
            log.warning(
                "could not announce a key change through Redis (%s); other replicas notice "
                "within auth.key_cache_ttl_s",
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._publisher is not None:
            await self._publisher.aclose()
            self._publisher = None

    async def _listen(self) -> None:
        assert self._url is not None
        backoff = 0.5
        warned = False
        while True:
            client = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=_TIMEOUT_S, health_check_interval=15
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._on_change()  # anything published while we were not listening
                self.subscribed.set()
                if warned:
                    log.info("key-change subscription to Redis restored")
                backoff, warned = 0.5, False
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "message":
                        self._on_change()
            except (RedisError, OSError) as exc:
                if not warned:
                    log.warning(
                        "key-change subscription to Redis lost (%s); revocations from other "
                        "replicas now take up to auth.key_cache_ttl_s",
                        type(exc).__name__,
                    )
                    warned = True
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)


def announce_key_change(redis_url: str | None, key_id: str) -> bool:
    """Publish from a process without an event loop (the CLI). True if Redis took it."""
    if redis_url is None:
        return False
    client = redis.Redis.from_url(
        redis_url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
    )
    try:
        client.publish(CHANNEL, key_id)
        return True
    except (RedisError, OSError):
        return False
    finally:
        client.close()
