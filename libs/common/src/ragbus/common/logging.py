"""Structured logs: key=value on a console, JSON lines in production.

The shared middleware binds `event_id`, `tenant_id`, `trace_id`, `topic` and `service` once per message
(structlog contextvars), so every line logged while handling it carries them, FastStream's own included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import defaultdict
from typing import Any

import structlog

from ragbus.common.settings import LogSettings

_configured: tuple[str, str] | None = None


def _add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Add the current OpenTelemetry trace id, if a span is active and none is bound yet."""
    if "trace_id" not in event_dict:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event_dict["trace_id"] = format(ctx.trace_id, "032x")
    return event_dict


_ASSIGNED = re.compile(r"^Consumer (\S*) assigned to partitions: \((.*)\)$", re.DOTALL)
_PARTITION = re.compile(r"TopicPartition\(topic='([^']*)', partition=(\d+)\)")


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8"."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive numbers
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class CondenseAssignments(logging.Filter):
    """FastStream logs every assignment as one line listing each TopicPartition: a consumer of the 26
    topics a monitor reads writes a 15 kB line at every rebalance. Keep the line, shortened to topics
    and partition ranges (`answers.completed.v1[0-7]`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and (m := _ASSIGNED.match(record.msg)):
            by_topic: dict[str, list[int]] = defaultdict(list)
            for topic, partition in _PARTITION.findall(m.group(2)):
                by_topic[topic].append(int(partition))
            listed = " ".join(f"{t}[{_ranges(ps)}]" for t, ps in sorted(by_topic.items()))
            count = sum(len(ps) for ps in by_topic.values())
            none = "consumer assigned no partition"
            record.msg = f"consumer assigned {count} partitions: {listed}" if count else none
            record.args = None
            record.member_id = m.group(1)
        return True


def setup_logging(settings: LogSettings | None = None) -> None:
    """Configure structlog and route the standard library's logging (FastStream, aiokafka) through it."""
    global _configured
    settings = settings or LogSettings()
    if _configured == (settings.level, settings.format):
        return
    _configured = (settings.level, settings.format)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), pad_event_to=0)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CondenseAssignments())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # aiokafka logs every rebalance step at INFO; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
