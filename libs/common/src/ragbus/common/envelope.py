"""The envelope: every message value is one CloudEvents 1.0 event in structured JSON mode.

Any Kafka client can publish a ragbus event by writing this JSON (content type
`application/cloudevents+json`); trace context travels in the Kafka headers (W3C `traceparent`), not here.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, cast
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

from ragbus.common import safejson
from ragbus.common.events import BY_TYPE, EventData
from ragbus.common.ids import derived_id, uuid7

CE_CONTENT_TYPE = "application/cloudevents+json"
SCHEMA_BASE = "https://ragbus.dev/schemas/"

P = TypeVar("P", bound=EventData)
Q = TypeVar("Q", bound=EventData)

Tenant = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def schema_id(data_cls: type[EventData]) -> str:
    """The `dataschema` of an event type: where its JSON Schema is published."""
    return f"{SCHEMA_BASE}{data_cls.topic}.json"


class EnvelopeAttributes(BaseModel):
    """The CloudEvents context attributes, without `data`: enough to route, log, store or dead-letter."""

    # extra="allow": CloudEvents lets producers add extension attributes; we keep and pass them on.
    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: UUID
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: AwareDatetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    tenantid: Tenant = "default"
    correlationid: str = Field(min_length=1, description="the request or document this event belongs to")
    causationid: UUID | None = Field(default=None, description="the event that caused this one")

    @classmethod
    def peek(cls, body: bytes | str) -> EnvelopeAttributes | None:
        """The attributes of a raw message, or None if it is not a ragbus event (never raises)."""
        try:
            raw = safejson.loads(body)
            raw.pop("data", None)
            return cls.model_validate(raw)
        except (ValueError, TypeError, AttributeError):
            return None


class Envelope(EnvelopeAttributes, Generic[P]):
    """One event: CloudEvents attributes plus the typed payload in `data`."""

    data: P
    _digest: bytes | None = PrivateAttr(default=None)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by its payload's class, not by its own: pydantic names a parametrized class
        # (`Envelope[DocsSubmitted]`) after whichever module parametrized it first, often where no
        # other process can find it (a function's scope, a test module). A worker process gets the
        # same event whoever made the class.
        return (_unpickle_envelope, (type(self.data), self.__getstate__()))

    @model_validator(mode="after")
    def _type_matches_data(self) -> Envelope[P]:
        expected = type(self.data).event_type()
        if self.type != expected:
            raise ValueError(f"event type {self.type!r} does not match its data ({expected!r})")
        return self

    @classmethod
    def new(
        cls,
        data: Q,
        *,
        source: str,
        tenant: str = "default",
        correlation_id: str | None = None,
        event_id: UUID | None = None,
    ) -> Envelope[Q]:
        """A new event that starts a flow (a request, a document submission)."""
        eid = event_id or uuid7()
        return _envelope_of(data)(
            id=eid,
            source=source,
            type=data.event_type(),
            time=datetime.now(UTC),
            subject=data.subject(),
            dataschema=schema_id(type(data)),
            tenantid=tenant,
            correlationid=correlation_id or data.subject() or str(eid),
            data=data,
        )

    def follow(self, data: Q, *, source: str, seq: int | str = "") -> Envelope[Q]:
        """The event that this one caused: same tenant and correlation, deterministic id.

        `seq` tells apart several events of one type caused by one event (the parts of a document).
        """
        return _envelope_of(data)(
            id=derived_id(self.id, f"{data.event_type()}#{seq}", self._cause_content()),
            source=source,
            type=data.event_type(),
            time=datetime.now(UTC),
            subject=data.subject() or self.subject,
            dataschema=schema_id(type(data)),
            tenantid=self.tenantid,
            correlationid=self.correlationid,
            causationid=self.id,
            data=data,
        )

    @property
    def digest(self) -> bytes:
        """sha256 of what the event says: its type, tenant, correlation and data. Not of its id, time or
        source, so a redelivery, or a producer's retry that re-stamps the time, has the same digest, and
        an id reused for another question or document does not.

        Fields at their default value are left out (`exclude_defaults`): the sender's object and the
        receiver's parse of it agree, and an upgrade that adds a field with a default does not change the
        digest of an event already on the bus. Computed once per envelope (a document's parts all follow
        the same submission).
        """
        if self._digest is None:
            h = hashlib.sha256()
            for part in (self.type, self.tenantid, self.correlationid):
                h.update(part.encode())
                h.update(b"\x00")
            h.update(self.data.model_dump_json(exclude_defaults=True).encode())
            self._digest = h.digest()
        return self._digest

    def _cause_content(self) -> bytes:
        """What of this event its follow-ups' ids depend on besides its id: its digest when it starts a
        flow (its id was chosen by a producer, who may reuse it for another question or document), else
        nothing. A follow-up's id already is a function of its flow's first event; a step that answers
        differently when run again (a model after a restart) must keep the ids after it, so that its
        second answer is a duplicate of the first, not a second answer."""
        return self.digest if self.causationid is None else b""

    @property
    def key(self) -> bytes:
        """The Kafka message key (see EventData.partition_key)."""
        return self.data.partition_key(self.tenantid).encode()

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def _envelope_of(data: Q) -> type[Envelope[Q]]:
    """`Envelope[<the data's class>]`, parametrised at run time (pydantic caches the class)."""
    return cast("type[Envelope[Q]]", cast(Any, Envelope)[type(data)])


def parse_event(body: bytes | str | dict[str, Any]) -> Envelope[Any]:
    """Parse any ragbus event, choosing the payload model by the CloudEvents `type`.

    Raises ValueError (pydantic's ValidationError included) for anything that is not a known event.
    """
    raw = safejson.loads(body) if isinstance(body, bytes | str) else body
    if not isinstance(raw, dict):
        raise ValueError("an event is a JSON object")
    data_cls = BY_TYPE.get(str(raw.get("type")))
    if data_cls is None:
        raise ValueError(f"unknown event type {raw.get('type')!r}")
    result: Envelope[Any] = cast(Any, Envelope)[data_cls].model_validate(raw)
    return result


def _unpickle_envelope(data_type: type[EventData], state: dict[Any, Any]) -> Envelope[Any]:
    cls = Envelope[data_type]  # type: ignore[valid-type]
    event = cls.__new__(cls)
    event.__setstate__(state)
    return event
