"""Where detector state lives: this process (default) or Redis (``redis_url``), so several
gateway processes judge one shared picture.

The detectors use four primitives, each one Redis round trip:

* :meth:`State.burst` — did ``threshold`` events fall within ``window_s``? (last-N timestamps)
* :meth:`State.distinct` — how many distinct members within ``window_s``? (sorted set)
* :meth:`State.remember` — add to a long-lived bounded set; was it new, how big is it?
* :meth:`State.update` — read-modify-write of a small per-subject record (baselines); in Redis
  under a per-subject lock-free compare-and-set (WATCH), so two replicas never lose an update.

Everything is bounded: in-process tables forget their least recently used subjects beyond
``max_subjects``; Redis keys expire.

With Redis the gateway uses :class:`SharedState`: counts that must add up across replicas
(bursts, distinct values, known networks, de-duplication) go to Redis, with local caches so
an ordinary request costs no round trip; per-key baselines (:meth:`State.update`) stay in
each process, because they are ratios of a key's traffic to its own past and a load balancer
splits both alike.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

import redis
from redis.exceptions import WatchError

Record = dict[str, Any]
Updater = Callable[[Record | None], Record]


class State(Protocol):
    def burst(self, name: str, now: float, threshold: int, window_s: float) -> bool: ...

    def distinct(self, name: str, member: str, now: float, window_s: float) -> int: ...

    def remember(self, name: str, member: str, cap: int) -> tuple[bool, int]: ...

    def update(self, name: str, fn: Updater, ttl_s: float) -> Record: ...

    def once(self, name: str, now: float, ttl_s: float) -> bool: ...

    def close(self) -> None: ...


class _Lru(OrderedDict[str, Any]):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def touch(self, name: str, make: Callable[[], Any]) -> Any:
        value = self.get(name)
        if value is None:
            value = make()
            self[name] = value
            if len(self) > self.cap:
                self.popitem(last=False)
        else:
            self.move_to_end(name)
        return value


class MemoryState:
    """In-process state. Not thread-safe: the monitor calls it from one worker at a time."""

    def __init__(self, max_subjects: int = 100_000) -> None:
        self._bursts = _Lru(max_subjects)
        self._distinct = _Lru(max_subjects)
        self._sets = _Lru(max_subjects)
        self._records = _Lru(max_subjects)
        self._once = _Lru(max_subjects)

    def burst(self, name: str, now: float, threshold: int, window_s: float) -> bool:
        times: deque[float] = self._bursts.touch(name, lambda: deque(maxlen=threshold))
        if times.maxlen != threshold:
            times = deque(times, maxlen=threshold)
            self._bursts[name] = times
        times.append(now)
        return len(times) == threshold and now - times[0] <= window_s

    def distinct(self, name: str, member: str, now: float, window_s: float) -> int:
        seen: OrderedDict[str, float] = self._distinct.touch(name, OrderedDict)
        seen[member] = now
        seen.move_to_end(member)
        while seen and next(iter(seen.values())) < now - window_s:
            seen.popitem(last=False)
        while len(seen) > 10_000:
            seen.popitem(last=False)
        return len(seen)

    def remember(self, name: str, member: str, cap: int) -> tuple[bool, int]:
        members: OrderedDict[str, None] = self._sets.touch(name, OrderedDict)
        new = member not in members
        members[member] = None
        members.move_to_end(member)
        while len(members) > cap:
            members.popitem(last=False)
        return new, len(members)

    def update(self, name: str, fn: Updater, ttl_s: float) -> Record:
        record: Record = fn(self._records.get(name))
        self._records[name] = record
        self._records.move_to_end(name)
        if len(self._records) > self._records.cap:
            self._records.popitem(last=False)
        return record

    def once(self, name: str, now: float, ttl_s: float) -> bool:
        until = self._once.get(name)
        if until is not None and until > now:
            return False
        self._once[name] = now + ttl_s
        self._once.move_to_end(name)
        if len(self._once) > self._once.cap:
            self._once.popitem(last=False)
        return True

    def close(self) -> None:
        pass


class RedisState:
    """Shared state in Redis under ``prefix``; used from the monitor's worker thread only."""

    def __init__(self, url: str, *, prefix: str = "wardgate:mon:") -> None:
        self._r = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._p = prefix

    def burst(self, name: str, now: float, threshold: int, window_s: float) -> bool:
        key = self._p + "b:" + name
        pipe = self._r.pipeline(transaction=False)
        pipe.lpush(key, repr(now))
        pipe.ltrim(key, 0, threshold - 1)
        pipe.lindex(key, threshold - 1)
        pipe.expire(key, int(window_s) + 1)
        _, _, oldest, _ = pipe.execute()
        return oldest is not None and now - float(oldest) <= window_s

    def distinct(self, name: str, member: str, now: float, window_s: float) -> int:
        key = self._p + "d:" + name
        pipe = self._r.pipeline(transaction=False)
        pipe.zadd(key, {member: now})
        pipe.zremrangebyscore(key, "-inf", now - window_s)
        pipe.zremrangebyrank(key, 0, -10_001)
        pipe.zcard(key)
        pipe.expire(key, int(window_s) + 1)
        return int(pipe.execute()[3])

    def remember(self, name: str, member: str, cap: int) -> tuple[bool, int]:
        # A sorted set scored by insertion counter: the oldest member is dropped first.
        key = self._p + "s:" + name
        pipe = self._r.pipeline(transaction=False)
        pipe.zscore(key, member)
        pipe.incr(key + ":n")
        score, counter = pipe.execute()[:2]
        pipe = self._r.pipeline(transaction=False)
        pipe.zadd(key, {member: counter})
        pipe.zremrangebyrank(key, 0, -cap - 1)
        pipe.zcard(key)
        pipe.expire(key, 30 * 86_400)
        pipe.expire(key + ":n", 30 * 86_400)
        size = int(pipe.execute()[2])
        return score is None, size

    def update(self, name: str, fn: Updater, ttl_s: float) -> Record:
        key = self._p + "r:" + name
        with self._r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = json.loads(raw) if raw else None
                    record = fn(current)
                    pipe.multi()
                    pipe.set(key, json.dumps(record), ex=max(1, int(ttl_s)))
                    pipe.execute()
                    return record
                except WatchError:
                    continue

    def once(self, name: str, now: float, ttl_s: float) -> bool:
        if ttl_s <= 0:
            return True
        return bool(self._r.set(self._p + "o:" + name, "1", nx=True, px=int(ttl_s * 1000)))

    def close(self) -> None:
        self._r.close()


class SharedState:
    """Redis for what replicas must count together; this process for baselines.

    Local caches keep the steady state free of round trips: a network already known to this
    process is known (networks are only ever added), and a key's client IP is re-announced
    to Redis at most every ``window_s / 10`` (the distinct count in between is the last one
    Redis returned).
    """

    def __init__(self, shared: RedisState, local: MemoryState | None = None) -> None:
        self._shared = shared
        self._local = local or MemoryState()
        self._known: _Lru = _Lru(100_000)
        self._recent: _Lru = _Lru(100_000)

    def burst(self, name: str, now: float, threshold: int, window_s: float) -> bool:
        return self._shared.burst(name, now, threshold, window_s)

    def distinct(self, name: str, member: str, now: float, window_s: float) -> int:
        slot = name + "\0" + member
        hit = self._recent.get(slot)
        if hit is not None and now - hit[0] < window_s / 10:
            return int(hit[1])
        count = self._shared.distinct(name, member, now, window_s)
        self._recent[slot] = (now, count)
        self._recent.move_to_end(slot)
        if len(self._recent) > self._recent.cap:
            self._recent.popitem(last=False)
        return count

    def remember(self, name: str, member: str, cap: int) -> tuple[bool, int]:
        members: set[str] = self._known.touch(name, set)
        if member in members:
            return False, len(members)
        new, size = self._shared.remember(name, member, cap)
        members.add(member)
        if len(members) > cap:
            members.clear()  # re-learnt from Redis on the next misses
        return new, size

    def update(self, name: str, fn: Updater, ttl_s: float) -> Record:
        return self._local.update(name, fn, ttl_s)

    def once(self, name: str, now: float, ttl_s: float) -> bool:
        return self._shared.once(name, now, ttl_s)

    def close(self) -> None:
        self._shared.close()
