"""The one retry / dead-letter mechanism every service uses (a FastStream broker middleware).

Around each handler call it:
- binds `event_id`, `tenant_id`, `topic`, `service` (and the trace id) to the structured log context;
- retries a retryable failure in place, with capped exponential backoff and jitter, for as long as it
  takes (a dependency that is down, the broker included, is waited for, never dead-lettered; nothing
  later on the partition is committed meanwhile);
- sends a poison message (it does not decode, breaks the contract, or the handler says so) to
  `<topic>.dlq`: the original bytes unchanged, the reason in `x-ragbus-dlq-*` headers, then returns so
  that `AckPolicy.ACK` commits it and the service goes on;
- refuses a record whose key names another tenant than its event, and (`RAGBUS_TRUST_MODE=enforce`)
  one not signed by a principal allowed to write it (ragbus.common.trust): poison, dead-lettered;
- retries an unclassified error a few times, then dead-letters it with its type and message;
- dead-letters a record FastStream could not even parse (header bytes that are not UTF-8 fail before
  any handler scope), which would otherwise be committed with only a log line.
Only after it returns does FastStream commit (subscribers use `AckPolicy.ACK`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import aiokafka.errors as kafka_errors
import structlog
from faststream.middlewares import BaseMiddleware

from ragbus.common.envelope import EnvelopeAttributes
from ragbus.common.errors import POISON, RETRYABLE
from ragbus.common.events import DeadLetter
from ragbus.common.headers import header_text
from ragbus.common.settings import KafkaSettings, RetrySettings
from ragbus.common.topics import DLQ_SUFFIX
from ragbus.common.trust import PRINCIPAL_HEADER, SIGNATURE_HEADER, Signer, Trust

if TYPE_CHECKING:
    from types import TracebackType

    from faststream._internal.context.repository import ContextRepo
    from faststream.kafka import KafkaBroker
    from faststream.message import StreamMessage

log = structlog.stdlib.get_logger("ragbus.middleware")
# What a handler's publish raises while the broker is away: aiokafka's connection, timeout and leader
# errors. They are RuntimeErrors, so as unclassified errors a publish during a broker restart
# dead-lettered its input after three attempts (for the monitor, its whole batch, already stored, came
# back from the `.dlq` topics as dead letters too). The broker is a dependency like any other: wait.
BROKER_AWAY: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,  # a publish not acknowledged in time
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.NotLeaderForPartitionError,
)
# The producer's request limit by default: a dead letter must fit it.
MAX_DEAD_LETTER_BYTES: int = KafkaSettings.model_fields["max_request_size"].default


def backoff_delay(attempt: int, policy: RetrySettings) -> float:
    """Exponential backoff, "equal jitter": uniform in [c/2, c] with c = min(max, initial * 2**(n-1))."""
    # The exponent is capped: a dependency down for hours runs into thousands of attempts, and
    # 2**1024 no longer converts to a float.
    ceiling = min(policy.max_backoff_s, policy.initial_backoff_s * 2.0 ** min(max(attempt - 1, 0), 64))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " | ")
    return (text[:1000] + "…") if len(text) > 1000 else text or type(exc).__name__


class DeadLetterMiddleware(BaseMiddleware):
    """Built per message by FastStream through `DeadLetterMiddleware.factory(...)`."""

    def __init__(
        self,
        msg: Any,
        /,
        *,
        context: ContextRepo,
        broker: KafkaBroker,
        service: str,
        policy: RetrySettings,
        max_bytes: int = MAX_DEAD_LETTER_BYTES,
        trust: Trust | None = None,
    ) -> None:
        super().__init__(msg, context=context)
        self.broker = broker
        self.service = service
        self.policy = policy
        self.max_bytes = max_bytes
        self.trust = trust or Trust()

    @classmethod
    def factory(
        cls,
        broker: KafkaBroker,
        *,
        service: str,
        policy: RetrySettings,
        max_bytes: int = MAX_DEAD_LETTER_BYTES,
        trust: Trust | None = None,
    ) -> Callable[..., DeadLetterMiddleware]:
        def build(msg: Any, /, *, context: ContextRepo) -> DeadLetterMiddleware:
            return cls(
                msg,
                context=context,
                broker=broker,
                service=service,
                policy=policy,
                max_bytes=max_bytes,
                trust=trust,
            )

        return build

    async def consume_scope(
        self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        raw = msg.raw_message
        attrs: EnvelopeAttributes | None = None
        if isinstance(raw, tuple | list):  # a batch subscriber: its handler dead-letters items one by one
            bound: dict[str, Any] = {"service": self.service, "batch_size": len(raw)}
        else:
            attrs = EnvelopeAttributes.peek(msg.body)
            bound = {
                "service": self.service,
                "topic": getattr(raw, "topic", None),
                "offset": getattr(raw, "offset", None),
                "event_id": str(attrs.id) if attrs else None,
                "tenant_id": attrs.tenantid if attrs else None,
                "correlation_id": attrs.correlationid if attrs else None,
            }
        with structlog.contextvars.bound_contextvars(**bound):
            if not isinstance(raw, tuple | list):  # a batch handler checks its records one by one
                try:
                    admit(raw, self.trust, attrs)
                except POISON as exc:
                    await self._dead_letter(raw, exc, 1)
                    return None
            attempt = 0
            while True:
                attempt += 1
                try:
                    return await call_next(msg)
                except asyncio.CancelledError:
                    raise
                except POISON as exc:
                    await self._dead_letter(raw, exc, attempt)
                    return None
                except (*RETRYABLE, *BROKER_AWAY) as exc:
                    await self._back_off("retrying", attempt, exc)
                except Exception as exc:
                    if attempt >= self.policy.max_attempts_unknown:
                        log.exception("giving up on message", attempt=attempt)
                        await self._dead_letter(raw, exc, attempt)
                        return None
                    await self._back_off("unexpected error, retrying", attempt, exc)

    async def _back_off(self, message: str, attempt: int, exc: BaseException) -> None:
        delay = backoff_delay(attempt, self.policy)
        log.warning(
            message,
            attempt=attempt,
            delay_s=round(delay, 2),
            error=_reason(exc),
            error_type=type(exc).__name__,
        )
        await asyncio.sleep(delay)

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        # `consume_scope` settles every error of the handler itself, so an Exception seen here was
        # raised while FastStream parsed the record (before any scope): dead-letter the raw record.
        if not isinstance(exc_val, Exception):
            return False
        with structlog.contextvars.bound_contextvars(service=self.service):
            await self._dead_letter(self.msg, exc_val, 1)
        return True  # handled: FastStream acks (commits) it and the consumer goes on

    async def _dead_letter(self, raw: Any, exc: BaseException, attempts: int) -> None:
        # A batch that fails as a whole (after its retries) dead-letters each of its records.
        for record in raw if isinstance(raw, tuple | list) else (raw,):
            await dead_letter(
                self.broker, record, exc, service=self.service, attempts=attempts, max_bytes=self.max_bytes
            )


def admit(
    record: Any, trust: Trust, attrs: EnvelopeAttributes | Literal["unread"] | None = "unread"
) -> str | None:
    """`Trust.admit` for an aiokafka record (see ragbus.common.trust). Raises PoisonMessage."""
    headers = {name: header_text(v) for name, v in getattr(record, "headers", None) or ()}
    value = getattr(record, "value", None) or b""
    topic = getattr(record, "topic", "") or ""
    return trust.admit(topic, getattr(record, "key", None), value, headers, attrs)


class SigningMiddleware(BaseMiddleware):
    """Signs every record the broker publishes (ragbus.common.trust), dead letters included."""

    def __init__(self, msg: Any, /, *, context: ContextRepo, signer: Signer) -> None:
        super().__init__(msg, context=context)
        self.signer = signer

    @classmethod
    def factory(cls, signer: Signer) -> Callable[..., SigningMiddleware]:
        def build(msg: Any = None, /, *, context: ContextRepo) -> SigningMiddleware:
            return cls(msg, context=context, signer=signer)

        return build

    async def publish_scope(self, call_next: Callable[[Any], Awaitable[Any]], cmd: Any) -> Any:
        value = cmd.body if isinstance(cmd.body, bytes) else None
        if value is None:  # ragbus publishes bytes; anything else is not signed (and will be refused)
            return await call_next(cmd)
        headers = dict(cmd.headers or {})
        if PRINCIPAL_HEADER in headers:
            # Already signed by its producer (a record passed on as it is): its signature verifies for
            # exactly this record or not at all, so it is left to speak for itself.
            return await call_next(cmd)
        key = cmd.key.encode() if isinstance(cmd.key, str) else cmd.key
        cmd.headers = headers | self.signer.headers(cmd.destination, key, value, headers)
        return await call_next(cmd)


def fit(value: bytes, room: int) -> tuple[bytes, int | None, str | None]:
    """The value cut to `room` bytes if it is longer, with its whole size and sha256 (else Nones)."""
    if len(value) <= room:
        return value, None, None
    return value[: max(room, 0)], len(value), hashlib.sha256(value).hexdigest()


async def dead_letter(
    broker: KafkaBroker,
    record: Any,
    exc: BaseException,
    *,
    service: str,
    attempts: int = 1,
    max_bytes: int = MAX_DEAD_LETTER_BYTES,
) -> None:
    """Publish one Kafka record to `<its topic>.dlq`: its key and bytes unchanged, the reason in headers.

    A record too large for the producer's request limit (`max_bytes`, KAFKA_MAX_REQUEST_SIZE) keeps its
    first bytes, its size and its sha256: a dead letter that cannot be published would lose the
    message's every trace (a 5 MB question left no dead letter, no row and no reply).

    The middleware calls it for a failed message; a batch handler calls it for each poison item and
    carries on with the rest.
    """
    topic: str = getattr(record, "topic", "") or ""
    key = getattr(record, "key", None)
    original = {name: header_text(value) for name, value in getattr(record, "headers", None) or ()}
    # The letter is signed by this service (SigningMiddleware); the producer's own signature is kept
    # aside, so that a replay is the original record again, as its producer signed it (or did not),
    # never one laundered by a signature of the service or of the operator who replays it.
    principal, signature = original.pop(PRINCIPAL_HEADER, None), original.pop(SIGNATURE_HEADER, None)
    # What besides the value takes room in the request: the headers (the letter's own ~400 bytes, a
    # digest included), the key, and the record and request framing.
    overhead = sum(len(k) + len(v.encode()) for k, v in original.items()) + len(key or b"") + 2048
    value, size, digest = fit(getattr(record, "value", None) or b"", max_bytes - overhead)
    letter = DeadLetter(
        original_topic=topic,
        partition=getattr(record, "partition", None),
        offset=getattr(record, "offset", None),
        service=service,
        error_type=type(exc).__name__,
        reason=_reason(exc),
        attempts=attempts,
        failed_at=datetime.now(UTC),
        original_size=size,
        original_sha256=digest,
        original_principal=principal,
        original_signature=signature,
    )
    if topic.endswith(DLQ_SUFFIX):
        # A dead letter that cannot be handled is logged and dropped, never dead-lettered again.
        log.error("unprocessable dead letter dropped", reason=letter.reason, offset=letter.offset)
        return
    headers = original | letter.to_headers()
    # The DLQ keeps the original key and bytes, so a fixed consumer can replay it as it was.
    await broker.publish(value, topic + DLQ_SUFFIX, key=key, headers=headers)
    log.error(
        "dead-lettered",
        reason=letter.reason,
        error_type=letter.error_type,
        dlq=topic + DLQ_SUFFIX,
        offset=letter.offset,
        cut_from=size,
    )
