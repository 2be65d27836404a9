"""Helpers for component tests on FastStream's in-memory `TestKafkaBroker`.

    settings = component_settings(IngestSettings, prefix, allowed_roots=[root])
    async with Harness(create_app(settings, deps)) as service:
        sent = await service.send(DocsSubmitted(doc_id="a", text="..."))
    assert service.events(topics.DOCS_CHUNKED)[0].data.doc_id == "a"
    assert not service.letters(topics.DOCS_SUBMITTED)

The harness records, from before the broker starts, every topic the app declares it publishes and the
dead-letter topic of every topic it reads (`dead`: all of them, in order); `watch=` adds others.

For tests and benchmarks against real services: `read_topic` reads a topic of a real broker from its
start, `TcpProxy` stands between a client and a server, to cut the connection and mend it, and
`TempPostgres` is a PostgreSQL server of a test's own, to stop and start again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from faststream import TestApp
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber, DefaultSubscriber

from ragbus.common.app import RagbusApp
from ragbus.common.broker import raw_decoder
from ragbus.common.envelope import CE_CONTENT_TYPE, Envelope, EnvelopeAttributes, parse_event
from ragbus.common.events import DeadLetter, EventData
from ragbus.common.imports import ML_IMPORT_LOCK
from ragbus.common.kafka import client_options
from ragbus.common.settings import KafkaSettings, RetrySettings, ServiceSettings, TelemetrySettings
from ragbus.common.topics import DLQ_SUFFIX, Topics

PRODUCER = "urn:ragbus:test"
S = TypeVar("S", bound=ServiceSettings)


def component_settings(cls: type[S], prefix: str = "", **fields: Any) -> S:
    """A service's settings for a component test: its own topic prefix, no span file, fast retries
    (an unclassified error is dead-lettered at the second attempt)."""
    defaults: dict[str, Any] = {
        "kafka": KafkaSettings(topic_prefix=prefix),
        "telemetry": TelemetrySettings(enabled=False),
        "retry": RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.01, max_attempts_unknown=2),
    }
    return cls(**(defaults | fields))


@dataclass(frozen=True, slots=True)
class Received:
    """One message as a consumer saw it: raw bytes, key, headers and the topic it came from."""

    value: bytes
    key: bytes | None
    headers: dict[str, Any]
    topic: str = ""

    def event(self) -> Envelope[Any]:
        return parse_event(self.value)

    def letter(self) -> DeadLetter:
        return DeadLetter.from_headers(self.headers)


def record(broker: KafkaBroker, *topic_names: str) -> list[Received]:
    """Subscribe a collector to the topics (before the test broker starts); the list fills as they arrive.

    Bodies are kept raw: a dead letter may not be JSON, which the services' JSON decoder would refuse.
    """
    into: list[Received] = []

    async def collect(msg: KafkaMessage) -> None:
        raw = msg.raw_message
        into.append(
            Received(msg.body, getattr(raw, "key", None), dict(msg.headers), getattr(raw, "topic", ""))
        )

    broker.subscriber(*topic_names, decoder=raw_decoder)(collect)
    return into


async def eventually(
    condition: Callable[[], Awaitable[object] | object], *, timeout: float = 10.0, every: float = 0.05
) -> None:
    """Wait until `condition()` (sync or async) is truthy; TimeoutError after `timeout` seconds. For what
    a service does in the background, on its own schedule, where there is no event to wait on."""

    async def poll() -> None:
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(every)

    await asyncio.wait_for(poll(), timeout)


async def publish_raw(broker: KafkaBroker, topic: str, value: bytes, *, key: bytes | None = None) -> None:
    """Publish bytes as any Kafka client would (with the CloudEvents content type)."""
    await broker.publish(value, topic, key=key, headers={"content-type": CE_CONTENT_TYPE})


async def publish(
    broker: KafkaBroker, topics: Topics, data: EventData, *, tenant: str = "acme", source: str = PRODUCER
) -> Envelope[Any]:
    """Publish a new event carrying `data` to its topic; returns the envelope sent."""
    event = Envelope.new(data, source=source, tenant=tenant)
    await publish_raw(broker, topics(type(data).topic), event.to_bytes(), key=event.key)
    return event


async def publish_event(broker: KafkaBroker, topics: Topics, event: Envelope[Any]) -> None:
    """Publish an envelope built by the test (a redelivery, an event from another service)."""
    await publish_raw(broker, topics(type(event.data).topic), event.to_bytes(), key=event.key)


class Harness:
    """A service app on the in-memory broker: send it events, read what it published and dead-lettered.

    Topic arguments are base names (`topics.DOCS_CHUNKED`); the app's prefix is applied here.
    """

    def __init__(self, app: RagbusApp, *, watch: Iterable[str] = ()) -> None:
        self.app = app
        self.broker = app.kafka_broker
        self.topics = app.topics
        published = [self.topics.strip(t) for p in self.broker.publishers if (t := getattr(p, "topic", ""))]
        read = [self.topics.strip(t) for s in self.broker.subscribers for t in getattr(s, "topic_names", ())]
        letters = [t + DLQ_SUFFIX for t in dict.fromkeys(read) if not t.endswith(DLQ_SUFFIX)]
        # A topic the app reads is recorded only when asked (`watch=`): one it hands to itself (the
        # orchestrator's escalations) is then seen by the test as well.
        watched = set(watch)
        names = [
            n
            for n in dict.fromkeys([*published, *watch])
            if (n not in read or n in watched) and n not in letters
        ]
        self._received = {name: record(self.broker, self.topics(name)) for name in names}
        # One collector for every dead-letter topic: `dead` keeps the order the letters were written in.
        self.dead = record(self.broker, *(self.topics(n) for n in letters)) if letters else []
        self._letter_topics = set(letters)
        self._running = AsyncExitStack()

    async def __aenter__(self) -> Self:
        # The in-memory broker, then the app's own startup and shutdown (its dependencies open as in
        # production; deps handed to `create_app` are used as they are).
        await self._running.enter_async_context(TestKafkaBroker(self.broker))
        await self._running.enter_async_context(TestApp(self.app))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._running.__aexit__(exc_type, exc, tb)

    async def send(self, data: EventData, *, tenant: str = "acme", source: str = PRODUCER) -> Envelope[Any]:
        """Publish a new event carrying `data` to its topic, as a producer would."""
        return await publish(self.broker, self.topics, data, tenant=tenant, source=source)

    async def send_event(self, event: Envelope[Any]) -> None:
        """Publish an envelope built by the test (a redelivery, an event from another service)."""
        await publish_event(self.broker, self.topics, event)

    async def send_raw(self, topic: str, value: bytes, *, key: bytes | None = None) -> None:
        """Publish any bytes to a topic (base name), as a misbehaving producer might."""
        await publish_raw(self.broker, self.topics(topic), value, key=key)

    def received(self, topic: str) -> list[Received]:
        """Every message published to `topic` (a base name the harness watches), in order."""
        try:
            return self._received[topic]
        except KeyError:
            raise KeyError(f"the harness does not watch {topic}; pass it in `watch=`") from None

    def events(self, topic: str) -> list[Envelope[Any]]:
        """The events published to `topic`, parsed."""
        return [r.event() for r in self.received(topic)]

    def letters(self, topic: str) -> list[Received]:
        """The dead letters of `topic` (the base name of the topic the message was read from); `dead`
        holds those of every topic the app reads, in order."""
        if topic + DLQ_SUFFIX not in self._letter_topics:
            return self.received(topic + DLQ_SUFFIX)
        return [r for r in self.dead if r.topic == self.topics(topic + DLQ_SUFFIX)]


def consumer_record(
    topic: str,
    value: bytes | Envelope[Any],
    *,
    offset: int = 0,
    key: bytes | Literal["auto"] | None = "auto",
    headers: Sequence[tuple[str, Any]] = (("content-type", CE_CONTENT_TYPE.encode()),),
) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it to a subscriber, with any header bytes (TestKafkaBroker's are text).

    The key is by default the one its producer would give it: the event's own, or `<tenant>:doc` for
    bytes that are an event, else `acme:doc`."""
    body = value if isinstance(value, bytes) else value.to_bytes()
    if key == "auto":
        attrs = EnvelopeAttributes.peek(body)
        tenant = attrs.tenantid if attrs else "acme"
        key = value.key if isinstance(value, Envelope) else f"{tenant}:doc".encode()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=1_780_000_000_000,
        timestamp_type=0,
        key=key,
        value=body,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(body),
        headers=list(headers),
    )


async def consume(broker: KafkaBroker, *records: ConsumerRecord[bytes, bytes]) -> None:
    """Hand records to the subscriber of their topic as its consumer would: one by one, or as one batch."""
    topic = records[0].topic
    for sub in broker.subscribers:
        if isinstance(sub, DefaultSubscriber | BatchSubscriber) and topic in sub.topic_names:
            if isinstance(sub, BatchSubscriber):
                await sub.consume(tuple(records))
            else:
                for r in records:
                    await sub.consume(r)
            return
    raise LookupError(f"no subscriber of {topic}")


def assert_waits_for_ml_import_lock(load: Callable[[], object], *, held_s: float = 3.0) -> None:
    """Run `load` on another thread while this one holds ML_IMPORT_LOCK: it must not finish while the
    lock is held (it waits to import or build), and must finish once it is released."""
    loaded = threading.Event()

    def run() -> None:
        load()
        loaded.set()

    with ML_IMPORT_LOCK:
        worker = threading.Thread(target=run)
        worker.start()
        assert not loaded.wait(held_s)  # held here: the load cannot start importing or building
    assert loaded.wait(60)
    worker.join()


# --- against real services ----------------------------------------------------------------------------


async def read_topic(kafka: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic on a real broker, from its start to its end as of now, in partition order."""
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        # Every partition of the topic (KAFKA_PARTITIONS of them), in partition order.
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    out += records
        return out
    finally:
        await consumer.stop()


async def read_topic_until(
    kafka: KafkaSettings, topic: str, count: int, timeout: float = 15
) -> list[ConsumerRecord[bytes, bytes]]:
    """`read_topic`, again until it holds `count` records or the time is up (a broker under load may
    report a partition's end a moment after the write)."""
    deadline = asyncio.get_running_loop().time() + timeout
    found = await read_topic(kafka, topic)
    while len(found) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        found = await read_topic(kafka, topic)
    return found


class TcpProxy:
    """Forwards a loopback port to a server (PostgreSQL); `stop()` refuses new connections and cuts the
    open ones, as a server restart or a network partition would; `start()` brings it back on the same
    port (`port`: 0 picks a free one at the first start)."""

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()  # after the cut: from Python 3.12 it waits for open connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def url(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by the proxy's."""
        parts = urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


# A PostgreSQL of a test's own: initdb and pg_ctl of the machine's server, in a temporary directory.
PG_BIN_DIR = os.environ.get("RAGBUS_PG_BIN", "/usr/lib/postgresql/15/bin")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries to run, or no user to run them as."""


class TempPostgres:
    """A PostgreSQL server that a test owns, stops and starts again: `initdb` in a temporary directory,
    `pg_ctl` on a free port of 127.0.0.1, trust authentication for the user `root`, database `postgres`.

    initdb and postgres refuse to run as root, so as root (CI containers) they run as the `postgres`
    user if there is one, else as `nobody`, through `runuser` or `setpriv`, in a directory that user
    owns (created directly under the system's temporary directory: pytest's own is private to root).
    Blocking calls (~0.5 s each): from async code, run them in a thread.
    """

    def __init__(self, bin_dir: str = PG_BIN_DIR, *, user: str = "root") -> None:
        self.bin_dir = Path(bin_dir)
        self.user = user
        self.port = 0
        self.dir: Path | None = None
        self._as, self._owner = self._runner()

    def _runner(self) -> tuple[list[str], tuple[int, int] | None]:
        """The command prefix that runs a server binary, and the (uid, gid) to own its directory."""
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not os.access(self.bin_dir / tool, os.X_OK):
                raise PostgresUnavailable(f"no {tool} in {self.bin_dir} (set RAGBUS_PG_BIN)")
        if os.geteuid() != 0:
            return [], None
        for name in ("postgres", "nobody"):
            try:
                account = pwd.getpwnam(name)
            except KeyError:
                continue
            owner = (account.pw_uid, account.pw_gid)
            if runuser := shutil.which("runuser"):
                return [runuser, "-u", name, "--"], owner
            if setpriv := shutil.which("setpriv"):
                return [setpriv, f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups"], owner
        raise PostgresUnavailable("as root: no `postgres` or `nobody` user, or no runuser or setpriv")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin_dir / tool), *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = (self.dir / "server.log").read_text(errors="replace")[-2000:] if self.dir else ""
            raise PostgresUnavailable(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}\n{log}")

    def init(self) -> None:
        """Create the cluster (once) and pick its port."""
        self.dir = Path(tempfile.mkdtemp(prefix="ragbus-pg-"))
        if self._owner is not None:  # the server's own user must own its directory
            os.chown(self.dir, *self._owner)
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", self.user, "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])

    def start(self) -> None:
        """Start the server (again) on its port and wait until it accepts connections."""
        assert self.dir is not None, "init() first"
        # fsync off: a test's data need not survive the machine, only the server (whose stop, even
        # `immediate`, leaves every committed write in the OS's cache).
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.dir / "data"),
                  "-l", str(self.dir / "server.log"), "-o", options)  # fmt: skip

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server: `fast` rolls back open transactions and closes connections; `immediate`
        kills it as a crash would (recovery at the next start)."""
        assert self.dir is not None, "init() first"
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-D", str(self.dir / "data"), "-m", mode)

    def running(self) -> bool:
        return self.dir is not None and (self.dir / "data" / "postmaster.pid").exists()

    def cleanup(self) -> None:
        """Stop the server if it runs and delete its directory."""
        if self.dir is None:
            return
        if self.running():
            with contextlib.suppress(PostgresUnavailable):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
