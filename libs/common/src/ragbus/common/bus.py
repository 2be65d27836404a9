"""Kafka wiring shared by every service: the broker factory, consumer defaults, and publishing events.

Defaults that hold on both Apache Kafka and Tansu: offsets reset to `earliest` (a new group must not
miss what was published before it joined; Tansu mishandles `latest`), commits only after the handler
and its outputs are done (`AckPolicy.ACK`, with the dead-letter middleware deciding what "done" means),
and group timeouts / fetch wait taken from `KafkaSettings`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope
from ragbus.common.events import EventData, StageTiming
from ragbus.common.middleware import DeadLetterMiddleware, header_text
from ragbus.common.settings import KafkaSettings, ServiceSettings
from ragbus.common.telemetry import tracer_provider
from ragbus.common.topics import Topics


async def json_decoder(msg: Any, original_decoder: Any) -> Any:
    """Decode every body as JSON: CloudEvents' `application/cloudevents+json` is JSON too.

    A body that is not JSON raises here, inside the middleware, and is dead-lettered.
    """
    return json.loads(msg.body)


def _utf8_headers(record: Any) -> Any:
    """The record, or a copy whose header values are valid UTF-8 (invalid bytes shown as \\xNN)."""
    headers = getattr(record, "headers", None) or ()
    try:
        for _, value in headers:
            value.decode()
    except (UnicodeDecodeError, AttributeError):  # AttributeError: a null header value
        fixed = [(k, header_text(v).encode()) for k, v in headers]
        return dataclasses.replace(record, headers=fixed)
    return record


async def lenient_parser(msg: Any, original_parser: Any) -> Any:
    """FastStream's parser, minus its one way to fail on a valid event: header bytes that are not UTF-8.

    Kafka headers are bytes and any producer may add binary ones (schema ids, tracing systems). Ours
    are text and the event is the body, so such a header is passed on escaped instead of failing the
    record before any handler scope (where only a log line would mark its loss).
    """
    if isinstance(msg, tuple | list):  # a batch subscriber's records (a list in TestKafkaBroker)
        return await original_parser(type(msg)(_utf8_headers(m) for m in msg))
    return await original_parser(_utf8_headers(msg))


async def raw_decoder(msg: Any, original_decoder: Any) -> bytes | list[bytes]:
    """Hand the body over undecoded: for readers of `.dlq` topics, whose bodies may be anything."""
    if isinstance(msg.body, list):  # a batch
        return [bytes(b) for b in msg.body]
    return bytes(msg.body)


def _security(settings: KafkaSettings) -> BaseSecurity | None:
    if settings.security_protocol == "PLAINTEXT":
        return None
    tls = settings.security_protocol.endswith("SSL")
    context = ssl.create_default_context() if tls else None
    if settings.sasl_mechanism is None:
        return BaseSecurity(ssl_context=context, use_ssl=tls)
    user = settings.sasl_username or ""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        settings.sasl_mechanism
    ]
    return cls(username=user, password=password, ssl_context=context, use_ssl=tls)


def make_broker(
    service: str,
    settings: ServiceSettings,
    *,
    retryable: tuple[type[BaseException], ...] = (),
) -> KafkaBroker:
    """A broker with tracing (outermost) and the retry / dead-letter middleware around every handler."""
    k = settings.kafka
    broker = KafkaBroker(
        k.bootstrap,
        client_id=f"ragbus-{service}",
        security=_security(k),
        request_timeout_ms=k.request_timeout_ms,
        metadata_max_age_ms=k.metadata_max_age_ms,
        max_request_size=k.max_request_size,
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=tracer_provider(service, settings.telemetry))],
        parser=lenient_parser,
        decoder=json_decoder,
        logger=logging.getLogger(f"ragbus.{service}.broker"),
        # FastStream logs "Received"/"Processed" for every message at this level: keep it out of INFO.
        log_level=logging.DEBUG,
        description=f"ragbus {service} service",
    )
    broker.add_middleware(
        DeadLetterMiddleware.factory(broker, service=service, policy=settings.retry, retryable=retryable)
    )
    return broker


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for plain aiokafka clients (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context()
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


async def ensure_topics(settings: KafkaSettings, names: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet; returns those it created.

    Consumers subscribed to a topic that does not exist yet may not see it until their metadata
    refreshes (minutes), so the runner creates every topic before it starts any service. Production
    clusters get their topics from the operator (compose's topic-init); this is for local brokers.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(n, num_partitions=settings.partitions, replication_factor=1) for n in missing]
            )
            # aiokafka reports per-topic failures in the response instead of raising them.
            for topic, code, *_ in getattr(response, "topic_errors", ()):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(f"cannot create topic {topic}")
        return missing
    finally:
        await admin.close()


async def tail(settings: KafkaSettings, names: Sequence[str]) -> AIOKafkaConsumer:
    """A started consumer, in no group, positioned at the current end of every partition of `names`.

    For readers that wait for what is published from now on (the client's replies, test taps): no
    group means no rebalance and nothing committed, so any number of them can read at once.
    """
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_max_wait_ms
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, including those just created
        partitions = []
        for name in names:
            found = consumer.partitions_for_topic(name)
            if not found:
                raise RuntimeError(f"topic {name} has no partitions on {settings.bootstrap}")
            partitions += [TopicPartition(name, p) for p in found]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve positions now, so nothing published after this is missed
            await consumer.position(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


class ConsumerOptions(TypedDict):
    group_id: str
    auto_offset_reset: Literal["earliest"]
    ack_policy: AckPolicy
    session_timeout_ms: int
    heartbeat_interval_ms: int
    fetch_max_wait_ms: int
    max_poll_interval_ms: int


def consumer_options(service: str, settings: KafkaSettings) -> ConsumerOptions:
    """Keyword arguments for `broker.subscriber(...)`: the ragbus consumer defaults."""
    return ConsumerOptions(
        group_id=settings.group_id(service),
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
    )


@dataclass(frozen=True, slots=True)
class Bus:
    """What a handler needs to publish: the broker, the topic names, and its own `source`."""

    broker: KafkaBroker
    topics: Topics
    source: str
    _publishers: dict[str, Any] = field(default_factory=dict)

    def declare(self, *event_types: type[EventData]) -> Bus:
        """Declare what this service publishes, so its AsyncAPI document shows it (call in create_app)."""
        for cls in event_types:
            topic = self.topics(cls.topic)
            if topic not in self._publishers:
                self._publishers[topic] = self.broker.publisher(
                    topic,
                    title=f"{topic}:publish",
                    schema=Envelope[cls],  # type: ignore[valid-type]
                    description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None,
                )
        return self

    async def publish(self, event: Envelope[Any]) -> None:
        # An explicit publish inside the handler (rather than a returned value) makes the next hop's
        # span a child of this handler's span, so a trace reads as a chain, not a flat fan.
        topic = self.topics(type(event.data).topic)
        publisher = self._publishers.get(topic)
        options: dict[str, Any] = {"key": event.key, "headers": {"content-type": CE_CONTENT_TYPE}}
        if publisher is not None:
            await publisher.publish(event.to_bytes(), **options)
        else:
            await self.broker.publish(event.to_bytes(), topic, **options)

    async def reply(self, cause: Envelope[Any], data: EventData, *, seq: int | str = "") -> Envelope[Any]:
        """Publish the event `cause` led to (same tenant and correlation, deterministic id)."""
        event = cause.follow(data, source=self.source, seq=seq)
        await self.publish(event)
        return event


class Stopwatch:
    """Measures one stage of a request for the `stages` list that travels with it."""

    def __init__(self, stage: str, service: str) -> None:
        self.stage = stage
        self.service = service
        self.started_at = datetime.now(UTC)

    def stop(self) -> StageTiming:
        return StageTiming(
            stage=self.stage, service=self.service, started_at=self.started_at, finished_at=datetime.now(UTC)
        )
