from __future__ import annotations

import time
import uuid

from ragbus.common.ids import content_hash, derived_id, record_id, uuid7, uuid7_time_ms


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(50)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    first = ids[0]
    time.sleep(0.002)
    assert uuid7() > first
    ms = uuid7_time_ms(first)
    assert ms is not None
    assert abs(ms - time.time() * 1000) < 5_000


def test_derived_id_is_deterministic_per_cause_and_kind() -> None:
    cause = uuid7()
    assert derived_id(cause, "a") == derived_id(cause, "a")
    assert derived_id(cause, "a") != derived_id(cause, "b")
    assert derived_id(cause, "a") != derived_id(uuid7(), "a")
    assert derived_id(cause, "a").version == 7
    assert derived_id(uuid.uuid4(), "a").version == 7  # foreign cause ids still give a valid v7


def test_an_event_with_a_foreign_id_gets_the_same_follow_up_ids_when_redelivered() -> None:
    # Issue 13: a duplicate sent with a uuid4 id got reply ids from the clock: two different replies.
    cause = uuid.uuid4()
    first = derived_id(cause, "io.ragbus.answers.completed.v1#")
    time.sleep(0.002)
    assert derived_id(cause, "io.ragbus.answers.completed.v1#") == first
    assert derived_id(uuid.uuid4(), "io.ragbus.answers.completed.v1#") != first


def test_record_id_and_content_hash_are_stable() -> None:
    assert record_id("t", "d", "0", "h") == record_id("t", "d", "0", "h")
    assert record_id("t", "d", "0", "h") != record_id("t", "d0", "", "h")  # parts are separated
    assert content_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
