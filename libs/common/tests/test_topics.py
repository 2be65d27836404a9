from __future__ import annotations

import re

from ragbus.common import topics
from ragbus.common.events import BY_TOPIC, EVENT_TYPES
from ragbus.common.topics import Topics


def test_every_topic_has_one_event_model_and_follows_the_naming_rule() -> None:
    assert set(BY_TOPIC) == set(topics.ALL)
    assert len(EVENT_TYPES) == len(topics.ALL)
    for name in topics.ALL:
        assert re.fullmatch(r"[a-z]+\.[a-z]+\.v\d+", name), name


def test_prefix_applies_everywhere() -> None:
    t = Topics("staging.")
    assert t(topics.DOCS_SUBMITTED) == "staging.docs.submitted.v1"
    assert t.dlq(topics.DOCS_SUBMITTED) == "staging.docs.submitted.v1.dlq"
    name = "staging.docs.submitted.v1"
    assert t.strip(name) == topics.DOCS_SUBMITTED
    assert len(t.all_with_dlq) == 2 * len(topics.ALL)
    pattern = re.compile(t.pattern())
    assert all(pattern.fullmatch(name) for name in t.all_with_dlq)
    assert not pattern.fullmatch("docs.submitted.v1")  # another namespace
    assert not pattern.fullmatch("staging.docs.submitted.v1.dlq.dlq")
