"""Properties that hold for any input, checked with Hypothesis."""

from __future__ import annotations

import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from netbroker.common.errors import InvalidGridDocument
from netbroker.db.grid import GridDB
from netbroker.registry import registry
from netbroker.registry.grid_document import parse_grid_document
from tests.strategies import grid_documents, json_values, section_like


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, section_like))
def test_any_json_is_parsed_or_refused_never_crashes(value: object) -> None:
    try:
        parse_grid_document(json.dumps(value))
    except InvalidGridDocument as exc:
        assert exc.problems
        assert all(p.record and p.message for p in exc.problems)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reimporting_any_valid_document_is_a_no_op(engine: Engine, data: st.DataObject) -> None:
    doc = data.draw(grid_documents(prefix=f"P{uuid.uuid4().hex[:6]}"))
    raw = json.dumps(doc)
    first = registry.import_grid_document(engine, raw)
    assert first.counts["sites"].inserted == len(doc["site"])
    with engine.connect() as conn:
        before = GridDB(conn).table_counts()
    second = registry.import_grid_document(engine, raw)
    assert all(c.inserted == 0 and c.updated == 0 for c in second.counts.values())
    with engine.connect() as conn:
        assert GridDB(conn).table_counts() == before
