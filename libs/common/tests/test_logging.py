"""The log setup's own behaviour: FastStream's assignment lines condensed to topics and ranges."""

from __future__ import annotations

import logging

from ragbus.common.logging import CondenseAssignments


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("ragbus.monitor.broker", logging.INFO, __file__, 1, msg, None, None)


def test_an_assignment_line_names_topics_and_partition_ranges_not_every_partition() -> None:
    parts = [("b.v1", 3), ("a.v1", 1), ("a.v1", 0), ("a.v1", 2), ("a.v1", 5), ("b.v1", 4)]
    listed = ", ".join(f"TopicPartition(topic='{t}', partition={p})" for t, p in parts)
    line = record(f"Consumer ragbus-monitor-1234 assigned to partitions: ({listed})")
    assert CondenseAssignments().filter(line)
    assert line.getMessage() == "consumer assigned 6 partitions: a.v1[0-2,5] b.v1[3-4]"
    assert line.member_id == "ragbus-monitor-1234"  # type: ignore[attr-defined]


def test_an_empty_assignment_and_other_lines_pass_as_they_are_or_plainly() -> None:
    empty = record("Consumer m-1 assigned to partitions: ()")
    CondenseAssignments().filter(empty)
    assert empty.getMessage() == "consumer assigned no partition"
    other = record("Heartbeat failed for group g because it is rebalancing")
    assert CondenseAssignments().filter(other)
    assert other.getMessage() == "Heartbeat failed for group g because it is rebalancing"
