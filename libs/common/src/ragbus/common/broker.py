"""The FastStream Kafka broker every service runs on, and its consumer defaults.

Defaults that hold on both Apache Kafka and Tansu: offsets reset to `earliest` (a new group must not
miss what was published before it joined; Tansu mishandles `latest`), commits only after the handler
and its outputs are done (`AckPolicy.ACK`, with the dead-letter middleware deciding what "done" means),
and group timeouts / fetch wait taken from `KafkaSettings`.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from typing import Any, Literal, TypedDict

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from ragbus.common import safejson
from ragbus.common.headers import header_text
from ragbus.common.middleware import DeadLetterMiddleware, SigningMiddleware
from ragbus.common.settings import KafkaSettings, ServiceSettings
from ragbus.common.telemetry import tracer_provider
from ragbus.common.trust import Trust


async def json_decoder(msg: Any, original_decoder: Any) -> Any:
    """Decode every body as JSON: CloudEvents' `application/cloudevents+json` is JSON too.

    A body that is not JSON, or nested too deep to parse, raises here (a ValueError), inside the
    middleware, and is dead-lettered.
    """
    return safejson.loads(msg.body)


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


def make_broker(service: str, settings: ServiceSettings, trust: Trust | None = None) -> KafkaBroker:
    """A broker with tracing (outermost) and the retry / dead-letter middleware around every handler;
    with trust enforced, every record it publishes is signed and every record it consumes checked.

    ValueError when trust is enforced without its files (the service stops at startup)."""
    k = settings.kafka
    trust = trust or Trust.open(settings.trust, service, k.topic_prefix)
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
    if trust.signer is not None:
        broker.add_middleware(SigningMiddleware.factory(trust.signer))
    broker.add_middleware(
        DeadLetterMiddleware.factory(
            broker, service=service, policy=settings.retry, max_bytes=k.max_request_size, trust=trust
        )
    )
    return broker


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
