"""Who may say what on the bus: every record is signed by its producer, and checked by its consumers.

Kafka tells a consumer nothing about who produced a record, and a ragbus event names its own tenant: a
producer with write access to `queries.submitted` could ask as any tenant, and one with access to
`docs.chunked` could plant chunks in any tenant's index. So, with `RAGBUS_TRUST_MODE=enforce`:

- each producer is a *principal* with an Ed25519 key pair. It signs every record it publishes over the
  topic, the key, the sha256 of the value and the dead-letter headers (`x-ragbus-principal`,
  `x-ragbus-signature`); a record moved to another topic, or altered, no longer verifies;
- the *trust file* (`trust.json`) lists each principal's public key, the topics it may write (base names,
  `fnmatch` patterns: `*.dlq`) and the tenants it may speak for (`*`: any). Services hold only public
  keys and their own private key: a service that is taken over can sign as itself, never as another;
- a consumer refuses, as poison (dead-lettered with the reason, never processed), a record that is not
  signed, signed by an unknown principal, does not match its signature, is on a topic its principal may
  not write, or speaks for a tenant its principal may not speak for.

Whatever the mode, an event's Kafka key must begin with its own tenant (`tenant:`): the key picks the
partition and the order, so a key naming another tenant is refused as a contract breach.

docs/trust.md is the trust model: what a producer with write access can and cannot do.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragbus.common import topics
from ragbus.common.envelope import CE_CONTENT_TYPE, EnvelopeAttributes
from ragbus.common.errors import PoisonMessage
from ragbus.common.events import DLQ_HEADER_PREFIX
from ragbus.common.topics import DLQ_SUFFIX

PRINCIPAL_HEADER = "x-ragbus-principal"
SIGNATURE_HEADER = "x-ragbus-signature"
TRUST_FILE = "trust.json"
ANY = "*"
_CONTEXT = b"ragbus-record-signature-v1"

# What the people and applications outside the stack submit.
SUBMISSIONS: tuple[str, ...] = (
    topics.DOCS_SUBMITTED,
    topics.DOCS_DELETED,
    topics.QUERIES_SUBMITTED,
    topics.FEEDBACK_SUBMITTED,
)
# What each service publishes (its `publishes=[...]`; a test holds the two together), and the
# dead letters every service writes.
SERVICE_TOPICS: Mapping[str, tuple[str, ...]] = {
    "ingest": (topics.DOCS_CHUNKED,),
    "embed": (topics.DOCS_INDEXED,),
    "guard": (topics.QUERIES_ACCEPTED, topics.QUERIES_REJECTED, topics.ANSWERS_COMPLETED),
    "orchestrator": (topics.QUERIES_ESCALATED, topics.ANSWERS_DRAFTED, topics.ANSWERS_DELTA),
    "monitor": (topics.FEEDBACK_RECORDED,),
    # The HTTP gateway submits for the tenants of its API keys (it publishes through the client library).
    "gateway": SUBMISSIONS,
}
DEAD_LETTERS = "*" + DLQ_SUFFIX
# The stack's operator (the `ragbus` CLI on the machine that runs it): submits for any tenant and
# replays dead letters to the topics they came from.
OPERATOR = "operator"


class Unauthenticated(PoisonMessage):
    """The record's producer cannot be told: no signature, an unknown principal, or a bad signature."""


class Forbidden(PoisonMessage):
    """The producer is known, but may not write this topic or speak for this tenant."""


class TrustSettings(BaseSettings):
    """`RAGBUS_TRUST_*`: whether records are signed and checked, and with which keys."""

    model_config = SettingsConfigDict(env_prefix="RAGBUS_TRUST_", extra="ignore")

    mode: Literal["off", "enforce"] = Field(
        default="off",
        description="enforce: sign what this process publishes, refuse what is not signed by a principal "
        "allowed to write it (`ragbus up` turns it on with keys under $RAGBUS_HOME/trust)",
    )
    dir: Path | None = Field(default=None, description=f"holds {TRUST_FILE} and the private keys")
    principal: str | None = Field(default=None, description="who this process signs as (a service: its name)")
    key_file: Path | None = Field(default=None, description="its private key (else <dir>/<principal>.key)")

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    def trust_file(self) -> Path:
        if self.dir is None:
            raise ValueError("RAGBUS_TRUST_MODE=enforce needs RAGBUS_TRUST_DIR (where trust.json is)")
        return self.dir / TRUST_FILE

    def private_key_file(self, principal: str) -> Path:
        if self.key_file is not None:
            return self.key_file
        if self.dir is None:
            raise ValueError("RAGBUS_TRUST_MODE=enforce needs RAGBUS_TRUST_DIR or RAGBUS_TRUST_KEY_FILE")
        return self.dir / f"{principal}.key"


# --- signing -------------------------------------------------------------------------------------------


def signed_bytes(topic: str, key: bytes | None, value: bytes, headers: Mapping[str, str]) -> bytes:
    """What a signature covers: the topic as published, the key, the value's sha256, and the
    dead-letter headers (the reason of a dead letter is part of what its service says)."""
    dlq = sorted((k, v) for k, v in headers.items() if k.startswith(DLQ_HEADER_PREFIX))
    parts = [_CONTEXT, topic.encode(), key or b"", hashlib.sha256(value).digest()]
    parts += [f"{k}={v}".encode() for k, v in dlq]
    return b"\x00".join(len(p).to_bytes(4, "big") + p for p in parts)  # length-prefixed: unambiguous


@dataclass(frozen=True, slots=True)
class Signer:
    principal: str
    key: Ed25519PrivateKey

    @classmethod
    def load(cls, principal: str, path: Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise ValueError(f"no private key for principal {principal!r} at {path}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(principal, key)

    def headers(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The two headers to add to a record before it is published."""
        signature = self.key.sign(signed_bytes(topic, key, value, headers or {}))
        return {
            PRINCIPAL_HEADER: self.principal,
            SIGNATURE_HEADER: base64.urlsafe_b64encode(signature).decode().rstrip("="),
        }


def publish_headers(
    signer: Signer | None, topic: str, key: bytes | None, value: bytes, extra: Mapping[str, str] | None = None
) -> list[tuple[str, bytes]]:
    """The headers of a ragbus record published from outside a service's broker (the client, the
    journal's re-drive): its content type, `extra` (the trace context), and its signature when there is
    a `signer` (trust on). Services sign in their middleware (ragbus.common.middleware)."""
    headers = {"content-type": CE_CONTENT_TYPE, **(extra or {})}
    if signer is not None:
        headers |= signer.headers(topic, key, value)
    return [(k, v.encode()) for k, v in headers.items()]


def signer_for(settings: TrustSettings, default_principal: str) -> Signer | None:
    """The signer of a process whose settings enforce trust, else None. Raises ValueError when the key
    is missing (a misconfiguration: the service stops at startup rather than publish unsigned)."""
    if not settings.enforced:
        return None
    principal = settings.principal or default_principal
    return Signer.load(principal, settings.private_key_file(principal))


# --- checking ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """One principal of the trust file: its public key and what it may write."""

    principal: str
    public_key: Ed25519PublicKey
    topics: tuple[str, ...]  # base names or fnmatch patterns
    tenants: tuple[str, ...]  # or ("*",)

    def may_write(self, base_topic: str) -> bool:
        return any(fnmatch.fnmatchcase(base_topic, p) for p in self.topics)

    def may_speak_for(self, tenant: str) -> bool:
        return ANY in self.tenants or tenant in self.tenants


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_grants(path: Path) -> dict[str, Grant]:
    """The trust file's principals. ValueError (with the file and the principal) if it is malformed."""
    try:
        raw = json.loads(path.read_text())
        grants = {}
        for name, entry in raw["principals"].items():
            grants[name] = Grant(
                principal=name,
                public_key=Ed25519PublicKey.from_public_bytes(_b64(entry["public_key"])),
                topics=tuple(entry["topics"]),
                tenants=tuple(entry["tenants"]),
            )
    except FileNotFoundError:
        raise ValueError(f"no trust file at {path} (`ragbus trust init` writes one)") from None
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"{path} is not a valid trust file: {type(exc).__name__}: {exc}") from exc
    return grants


class Verifier:
    """Checks consumed records against the trust file, which it re-reads when it changes (a principal
    added with `ragbus trust add` is known to running services without a restart)."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        self._mtime = -1.0
        self._grants: dict[str, Grant] = {}
        self._refresh()

    def _refresh(self) -> None:
        mtime = self.path.stat().st_mtime if self.path.exists() else -1.0
        if mtime != self._mtime:
            self._grants, self._mtime = read_grants(self.path), mtime

    def grant(self, principal: str) -> Grant | None:
        if principal not in self._grants:
            self._refresh()
        return self._grants.get(principal)

    def check(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, str],
        attrs: EnvelopeAttributes | Literal["unread"] | None = "unread",
    ) -> str:
        """The principal that signed this record; raises Unauthenticated or Forbidden with the reason.

        `attrs`: the record's attributes if the caller has read them already (a large event is parsed
        once, not once per check)."""
        principal = headers.get(PRINCIPAL_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not principal or not signature:
            raise Unauthenticated(
                "unsigned: this bus accepts only records signed by a principal of its trust file "
                f"({PRINCIPAL_HEADER} and {SIGNATURE_HEADER} headers; docs/trust.md)"
            )
        grant = self.grant(principal)
        if grant is None:
            raise Unauthenticated(f"signed by {principal!r}, a principal the trust file does not know")
        try:
            grant.public_key.verify(_b64(signature), signed_bytes(topic, key, value, headers))
        except (InvalidSignature, ValueError, binascii.Error):
            raise Unauthenticated(
                f"the signature of {principal!r} does not match this record (altered, or signed for "
                "another topic or key)"
            ) from None
        base = topic.removeprefix(self.prefix)
        if not grant.may_write(base):
            raise Forbidden(f"principal {principal!r} may not write to {base}")
        if not base.endswith(DLQ_SUFFIX):  # a dead letter's body may be anything, any tenant's
            attrs = EnvelopeAttributes.peek(value) if attrs == "unread" else attrs
            if attrs is not None and not grant.may_speak_for(attrs.tenantid):
                raise Forbidden(f"principal {principal!r} may not speak for tenant {attrs.tenantid!r}")
        return principal


@dataclass(frozen=True, slots=True)
class Trust:
    """A process's side of trust: how it signs what it publishes, and checks what it consumes (both
    None when trust is not enforced)."""

    signer: Signer | None = None
    verifier: Verifier | None = None
    prefix: str = ""  # the deployment's topic prefix (KAFKA_TOPIC_PREFIX)

    @classmethod
    def open(cls, settings: TrustSettings, principal: str, prefix: str = "") -> Trust:
        """ValueError when enforced without its files: the process stops rather than run unchecked."""
        if not settings.enforced:
            return cls(prefix=prefix)
        return cls(signer_for(settings, principal), Verifier(settings.trust_file(), prefix), prefix)

    def admit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, str],
        attrs: EnvelopeAttributes | Literal["unread"] | None = "unread",
    ) -> str | None:
        """Check a consumed record: its key against its tenant, its type against its topic, then
        (enforced) its signature and its principal's grants. The principal, or None when not
        enforced; PoisonMessage with the reason.

        `attrs`: the record's attributes (`EnvelopeAttributes.peek`) if the caller has them already."""
        if topic.endswith(DLQ_SUFFIX):
            attrs = None  # a dead letter's body is not checked against its key or signer's tenants
        elif attrs == "unread":
            attrs = EnvelopeAttributes.peek(value)
        check_key(topic, key, attrs)
        base = topic.removeprefix(self.prefix)
        if attrs is not None and base in topics.ALL and attrs.type != topics.event_type(base):
            # A consumer of several topics (ingest) would otherwise act on it: a deletion sent where
            # submissions go is refused everywhere alike, as the monitor refuses to store it.
            raise PoisonMessage(f"event type {attrs.type!r} does not belong on topic {topic!r}")
        return self.verifier.check(topic, key, value, headers, attrs) if self.verifier else None


def check_key(topic: str, key: bytes | None, attrs: EnvelopeAttributes | None) -> None:
    """An event's key must start with its tenant (`tenant:`); a key naming another tenant is poison.

    A record without a key, a dead letter, or one that is no event (`attrs` None: its decoding fails on
    its own) passes here.
    """
    if not key or attrs is None or topic.endswith(DLQ_SUFFIX):
        return
    if not key.startswith(attrs.tenantid.encode() + b":"):
        shown = key[:80].decode("utf-8", "backslashreplace")
        raise PoisonMessage(
            f"the key {shown!r} does not start with the event's tenant {attrs.tenantid!r}: an event is "
            "keyed `tenant:...`, so a key naming another tenant is refused"
        )


# --- keys and the trust file ---------------------------------------------------------------------------


def _public(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _write_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _save(path: Path, principals: Mapping[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"principals": principals}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)  # atomic: a service re-reading it never sees half a file


def add_principal(
    directory: Path, name: str, *, topics: Iterable[str], tenants: Iterable[str], replace: bool = False
) -> Path:
    """Make a key pair for `name`, add its public key and grants to the trust file; the private key's
    path. An existing principal is kept as it is unless `replace`."""
    if not name or any(c in name for c in "/\\\x00") or name.startswith("."):
        raise ValueError(f"{name!r} is not a principal name")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / TRUST_FILE
    principals = json.loads(path.read_text())["principals"] if path.exists() else {}
    key_path = directory / f"{name}.key"
    if name in principals and key_path.exists() and not replace:
        return key_path
    key_path.unlink(missing_ok=True)
    key = Ed25519PrivateKey.generate()
    _write_key(key_path, key)
    principals[name] = {
        "public_key": _public(key),
        "topics": sorted(set(topics)),
        "tenants": sorted(set(tenants)),
    }
    _save(path, principals)
    return key_path


def init(directory: Path) -> list[str]:
    """A trust directory for a whole stack: a key for each service and the operator (those missing).
    The names of the principals it made."""
    path = directory / TRUST_FILE
    known = json.loads(path.read_text())["principals"] if path.exists() else {}
    made = []
    wanted = {name: (*names, DEAD_LETTERS) for name, names in SERVICE_TOPICS.items()}
    wanted[OPERATOR] = (*SUBMISSIONS, *topics.ALL)  # replays dead letters to where they came from
    for name, grants in wanted.items():
        if name not in known or not (directory / f"{name}.key").exists():
            add_principal(directory, name, topics=grants, tenants=[ANY], replace=True)
            made.append(name)
    # The stack's own grants are the code's: a version that adds a topic to a service (the orchestrator's
    # `queries.escalated`) must not find it refused by a trust file an older version wrote. Keys are kept.
    principals = json.loads(path.read_text())["principals"]
    stale = {n for n, g in wanted.items() if principals[n]["topics"] != sorted(set(g))}
    if stale:
        for name in stale:
            principals[name]["topics"] = sorted(set(wanted[name]))
        _save(path, principals)
    return made
