"""One consumer, several messages at once, in order per key: the subscriber of a concurrent subscription
(`Service.subscriber(..., concurrent=True)`).

FastStream's own way to work on several messages with commits after the work (`max_workers` with
AckPolicy.ACK) runs one consumer per worker, each on its share of the partitions, one message at a
time. bench/ingest.py showed what that costs ingest and embed (8 workers each):
- sixteen consumers poll the broker on their own, busy or idle: ~160 fetches, ~32 heartbeats and ~16
  metadata requests a second, each a round trip through the kernel for the services and the broker;
- a tenant's bulk load is keyed to two partitions (events.DOC_KEY_SHARDS, for fairness between
  tenants), so two workers worked while six waited, and the embedding model saw two documents' chunks
  at a time.

Here one consumer reads the subscription's partitions, and up to `limit` records are worked on at once,
whichever partitions they come from:
- order holds per key (`key(record)`: the Kafka key by default, `subject_key` for events about one
  document or conversation each): a record starts once every earlier record of its key on its
  partition is done; records of other keys do not wait for it;
- partitions take turns: the next record comes from the partition after the last one served, and at
  most `limit` records of a partition are read ahead of the work, so a backlog on one partition does
  not hold up another's records;
- at most `share` records of one partition are in work at once (all `limit` by default): a tenant's
  bulk load, keyed to a few partitions, then leaves slots free for a record of another partition,
  which starts at once instead of when one of the load's finishes;
- commits stay after the work (at-least-once, what AckPolicy.ACK gives per message): per partition the
  offset committed is that of its first record not done yet, so a restart or a rebalance never skips a
  record still in work; commits go out one request at a time, at most one per `commit_interval_s`
  (a stop or a rebalance commits at once), each with the latest offset of every partition that moved;
- a partition taken away by a rebalance is let go cleanly: what was read ahead is dropped, the records
  in work are waited for (up to `revoke_wait_s`) and committed.
Every record still goes through the broker's whole middleware stack (traces, retries and dead letters,
trust), one message at a time, as before. Scaling out is still Kafka's: more instances of a service in
its consumer group share the partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError
from faststream.kafka.subscriber.usecase import DefaultSubscriber

from ragbus.common import safejson
from ragbus.common.logging import get_logger

log = get_logger("ragbus.keyed")

OrderKey = Callable[[Any], Hashable]


def record_key(record: Any) -> Hashable:
    """Kafka's own order: per record key (records without a key are in no order with each other)."""
    key = getattr(record, "key", None)
    return key if key is not None else object()


def subject_key(record: Any) -> Hashable:
    """Per tenant and CloudEvents `subject` (a document's events: its parts, versions and deletion),
    read from the body; the Kafka key for a body that names no subject. Documents share their keys
    (`tenant:shard`, see events.DOC_KEY_SHARDS), so Kafka's order would hold up a tenant's every
    document behind each other."""
    try:
        body = safejson.loads(getattr(record, "value", None) or b"")
    except ValueError:
        return record_key(record)
    if isinstance(body, dict) and isinstance(body.get("subject"), str):
        return (str(body.get("tenantid")), body["subject"])
    return record_key(record)


class _Ack:
    """What FastStream acknowledges a message through (its `consumer`): remembers the verdict, which the
    subscriber turns into its partition's commit."""

    __slots__ = ("acked", "nacked")

    def __init__(self) -> None:
        self.acked = False
        self.nacked = False

    async def commit(self) -> None:
        self.acked = True

    def seek(self, partition: Any, offset: int) -> None:
        self.nacked = True


@dataclass(eq=False, slots=True)
class _Partition:
    """What the subscriber holds of one assigned partition."""

    queue: deque[tuple[Hashable, Any]] = field(default_factory=deque)  # read ahead, not started
    open: deque[int] = field(default_factory=deque)  # offsets read and not yet behind the commit point
    done: set[int] = field(default_factory=set)
    working: int = 0
    end: int | None = None  # the offset after the last record read
    committed: int | None = None

    def point(self) -> int | None:
        """The offset to commit: the first record read and not done (or the one after the last read)."""
        while self.open and self.open[0] in self.done:
            self.done.discard(self.open.popleft())
        return self.open[0] if self.open else self.end


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscriber: KeyedSubscriber, inner: ConsumerRebalanceListener | None) -> None:
        self.subscriber = subscriber
        self.inner = inner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.subscriber._let_go(list(revoked))
        if self.inner is not None:
            await _maybe_await(self.inner.on_partitions_revoked(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.subscriber._take(list(assigned))
        if self.inner is not None:
            await _maybe_await(self.inner.on_partitions_assigned(assigned))


async def _maybe_await(result: Any) -> None:
    if asyncio.iscoroutine(result):
        await result


class KeyedSubscriber(DefaultSubscriber):
    """A FastStream Kafka subscriber (one consumer) that works on up to `limit` records at once, in
    order per key; see the module docstring. Made from a subscriber the broker built (`keyed`)."""

    _limit: int
    _share: int
    _key: OrderKey
    _revoke_wait_s: float
    _parts: dict[TopicPartition, _Partition]
    _busy: set[tuple[TopicPartition, Hashable]]
    _working: set[asyncio.Task[None]]
    _commits: dict[TopicPartition, int]
    _commit_interval_s: float
    _turn: int

    def _setup_keyed(
        self,
        limit: int,
        key: OrderKey,
        revoke_wait_s: float,
        share: int | None = None,
        commit_interval_s: float = 0.0,
    ) -> None:
        self._limit = limit
        self._commit_interval_s = commit_interval_s
        self._share = min(limit, share or limit)
        self._key = key
        self._revoke_wait_s = revoke_wait_s
        self._parts = {}
        self._busy = set()
        self._working = set()
        self._commits = {}
        self._turn = 0
        self._new_signals()
        self._listener = _Rebalance(self, self._listener)

    def _new_signals(self) -> None:
        self._slots = asyncio.Semaphore(self._limit)
        self._ready = asyncio.Event()  # a record came in, or one finished
        self._room = asyncio.Event()  # a partition's read-ahead has room again
        self._commit_due = asyncio.Event()

    @property
    def limit(self) -> int:
        return self._limit

    async def start(self) -> None:
        self._new_signals()  # of this event loop
        await super().start()

    async def stop(self) -> None:
        """Stop taking records, let those in work finish (the broker's graceful timeout), commit."""
        self.running = False
        self._ready.set()
        self._room.set()
        if self._working:
            _, late = await asyncio.wait(set(self._working), timeout=self._outer_config.graceful_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self.consumer is not None:
            await self._commit_now(self.consumer, list(self._parts))
        await super().stop()

    async def _run_consume_loop(self, consumer: Any) -> None:
        fetcher = asyncio.create_task(self._fetch(consumer), name="ragbus-keyed-fetch")
        committer = asyncio.create_task(self._commit_loop(consumer), name="ragbus-keyed-commit")
        try:
            await self._dispatch()
        finally:
            for task in (fetcher, committer):
                task.cancel()
            await asyncio.gather(fetcher, committer, return_exceptions=True)

    # --- reading ahead -------------------------------------------------------------------------

    async def _fetch(self, consumer: Any) -> None:
        while self.running:
            wanted = [tp for tp, part in self._parts.items() if len(part.queue) < self._limit]
            if self._parts and not wanted:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                # A short local wait: the consumer fetches in the background whatever is asked here,
                # and a partition whose read-ahead fills up leaves the next call's list.
                batch = await consumer.getmany(*wanted, timeout_ms=100, max_records=self._limit)
            except ConsumerStoppedError:
                return
            except IllegalStateError:  # a partition was taken away meanwhile
                await asyncio.sleep(0)
                continue
            except KafkaError as exc:
                log.warning("reading from the broker failed, retrying", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for tp, records in batch.items():
                part = self._parts.setdefault(tp, _Partition())
                for record in records:
                    part.queue.append((self._key(record), record))
                    part.open.append(record.offset)
                if records:
                    part.end = records[-1].offset + 1
            if batch:
                self._ready.set()

    # --- working -------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while self.running:
            await self._slots.acquire()
            picked = await self._next()
            if picked is None:
                self._slots.release()
                return
            tp, part, key, record = picked
            self._busy.add((tp, key))
            part.working += 1
            task = asyncio.create_task(self._work(tp, part, key, record))
            self._working.add(task)
            task.add_done_callback(self._working.discard)

    async def _next(self) -> tuple[TopicPartition, _Partition, Hashable, Any] | None:
        """The next record to start, once there is one; None when the subscriber stops."""
        while True:
            picked = self._pick()
            if picked is not None or not self.running:
                return picked
            self._ready.clear()
            await self._ready.wait()

    def _pick(self) -> tuple[TopicPartition, _Partition, Hashable, Any] | None:
        """The next record to start: partitions in turn (those with fewer than `share` in work), in each
        the first record whose key has no earlier record in work or waiting."""
        tps = list(self._parts)
        for step in range(len(tps)):
            at = (self._turn + step) % len(tps)
            tp = tps[at]
            part = self._parts[tp]
            if part.working >= self._share:
                continue
            held: set[Hashable] = set()
            for index, (key, record) in enumerate(part.queue):
                if (tp, key) not in self._busy and key not in held:
                    del part.queue[index]
                    self._turn = at + 1
                    self._room.set()
                    return tp, part, key, record
                held.add(key)
        return None

    async def _work(self, tp: TopicPartition, part: _Partition, key: Hashable, record: Any) -> None:
        ack = _Ack()
        record.consumer = ack  # FastStream's message acknowledges through it (AckPolicy.ACK)
        try:
            await self.consume(record)
        finally:
            self._busy.discard((tp, key))
            part.working -= 1
            self._slots.release()
            self._ready.set()
        if self._parts.get(tp) is not part:  # the partition was let go meanwhile: its next owner reads it
            return
        if ack.nacked and not ack.acked:
            part.queue.appendleft((key, record))  # again, before anything else of its key
            return
        # Not acknowledged while running: FastStream went past it (as a lone consumer's next commit
        # would have). Not acknowledged while stopping: it never ran, leave it to be read again.
        if ack.acked or self.running:
            part.done.add(record.offset)
            self._due(tp, part)

    # --- committing ----------------------------------------------------------------------------

    def _due(self, tp: TopicPartition, part: _Partition) -> None:
        point = part.point()
        if point is not None and point != part.committed:
            self._commits[tp] = point
            self._commit_due.set()

    async def _commit_loop(self, consumer: Any) -> None:
        while True:
            await self._commit_due.wait()
            self._commit_due.clear()
            offsets = {tp: o for tp, o in self._commits.items() if tp in self._parts}
            self._commits.clear()
            if not offsets:
                continue
            if not await self._commit(consumer, offsets):
                for tp, offset in offsets.items():
                    self._commits.setdefault(tp, offset)
                await asyncio.sleep(1.0)
                self._commit_due.set()
            elif self._commit_interval_s:
                # What finishes meanwhile goes in the next commit: one request per interval instead
                # of one per record (a crash re-reads at most an interval's work; handlers are
                # idempotent).
                await asyncio.sleep(self._commit_interval_s)

    async def _commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> bool:
        try:
            await consumer.commit(offsets)
        except (KafkaError, IllegalStateError) as exc:
            # Retried with the next offsets; a record whose commit never lands is read again (the
            # handlers are idempotent), never skipped.
            log.warning("commit failed", error=repr(exc), partitions=len(offsets))
            return False
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None and (part.committed is None or offset > part.committed):
                part.committed = offset
        return True

    async def _commit_now(self, consumer: Any, tps: list[TopicPartition]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp in tps:
            part = self._parts.get(tp)
            point = part.point() if part is not None else None
            if part is not None and point is not None and point != part.committed:
                offsets[tp] = point
            self._commits.pop(tp, None)
        if offsets:
            await self._commit(consumer, offsets)

    # --- rebalances ----------------------------------------------------------------------------

    def _take(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._parts.setdefault(tp, _Partition())

    async def _let_go(self, revoked: list[TopicPartition]) -> None:
        mine = [tp for tp in revoked if tp in self._parts]
        for tp in mine:
            self._parts[tp].queue.clear()  # not started: the partition's next owner reads them
        loop = asyncio.get_running_loop()
        until = loop.time() + self._revoke_wait_s
        while self._working and any(self._parts[tp].working for tp in mine):
            left = until - loop.time()
            if left <= 0:
                break
            await asyncio.wait(set(self._working), timeout=left, return_when=asyncio.FIRST_COMPLETED)
        if self.consumer is not None:
            with contextlib.suppress(ConsumerStoppedError):
                await self._commit_now(self.consumer, mine)
        for tp in mine:
            del self._parts[tp]
        self._room.set()


def keyed(
    subscriber: Any,
    *,
    limit: int,
    key: OrderKey = record_key,
    revoke_wait_s: float = 1.0,
    share: int | None = None,
    commit_interval_s: float = 0.0,
) -> KeyedSubscriber:
    """Turn a subscriber the broker just built (`broker.subscriber(topic, ...)`, one topic, no batch,
    AckPolicy.ACK) into a KeyedSubscriber working on up to `limit` records at once, in order per `key`,
    at most `share` (default: `limit`) of them from one partition, committing at most once per
    `commit_interval_s`.

    The broker keeps the object it registered (its class changes; its state and configuration stay):
    FastStream builds its subscribers in a factory that takes no class of ours."""
    if type(subscriber) is not DefaultSubscriber:
        raise TypeError(f"a keyed subscriber is made of a DefaultSubscriber, not {type(subscriber).__name__}")
    subscriber.__class__ = KeyedSubscriber
    made = cast(KeyedSubscriber, subscriber)
    made._setup_keyed(limit, key, revoke_wait_s, share, commit_interval_s)
    return made
