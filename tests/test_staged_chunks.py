"""Staged chunks (``netbroker.common.sample_rows.stage_chunk``): what a SQLite writer copies
with INSERT ... SELECT holds exactly what the tuple chunks of PostgreSQL hold."""

from __future__ import annotations

import math
import random
import sqlite3

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.sample_rows import (
    SAMPLE_COLUMNS,
    StagedChunk,
    fold_into_buckets,
    origin_key,
    prepare_chunk,
    stage_chunk,
)
from netbroker.db import begin_immediate
from netbroker.db.metrics import MetricsDB
from netbroker.db.schema import metric_buckets, metric_samples


def _rows(n: int, seed: int, bucket_s: int = 600) -> list[tuple]:
    """Sample rows on a few links, many to a bucket, with times on and just off
    the bucket edges (and before 1970), values of every magnitude."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        # A quarter before 1970, where truncating the quotient is not its floor.
        edge = rng.randrange(-3_000_000 if i % 4 == 0 else 0, 3_000_000) * bucket_s
        ts = rng.choice([float(edge), math.nextafter(edge, -math.inf),
                         math.nextafter(edge, math.inf), edge + rng.random() * bucket_s])
        kind = rng.choice(["throughput", "success"])
        rows.append((origin_key("fts", f"t{i}:{kind}"), "fts", f"t{i}:{kind}",
                     rng.randrange(1, 4), rng.randrange(1, 4), kind,
                     rng.random() * 10 ** rng.randrange(-6, 9), ts,
                     rng.choice([0.0, 1.0, rng.random() * 4e9]), "MB/s"))
    return rows


def _staged(chunk: StagedChunk, table: str) -> list[tuple]:
    db = sqlite3.connect(":memory:")
    db.deserialize(chunk.image)
    return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_staged_buckets_are_the_fold_of_the_rows_to_the_bit(seed: int) -> None:
    """The bucket starts (floor, on and around the edges, negative times too) and the
    sums, added in the rows' order, are exactly fold_into_buckets'."""
    rows = _rows(3_000, seed)
    chunk = stage_chunk(rows, 600)
    assert chunk.size == len(rows)
    assert _staged(chunk, "samples") == rows  # as given, in the order given
    assert _staged(chunk, "buckets") == prepare_chunk(rows, 600).buckets


def test_an_image_of_another_layout_is_refused_and_nothing_is_stored(
        grid_engine: Engine) -> None:
    """The writer's statements were prepared on the first image: one whose tables sit
    on other pages would be read wrongly, so it is refused by name."""
    if grid_engine.dialect.name != "sqlite":
        pytest.skip("staged chunks are SQLite's")
    with grid_engine.connect() as conn:
        site = conn.execute(sa.text("SELECT min(id) FROM sites")).scalar_one()
    rows = [(origin_key("fts", "x"), "fts", "x", site, site, "success", 1.0, 600.0, 1.0, "t")]
    other = sqlite3.connect(":memory:")
    other.execute("CREATE TABLE padding (a)")  # moves samples and buckets one page on
    other.execute(f"CREATE TABLE samples ({', '.join(SAMPLE_COLUMNS)})")
    other.execute("CREATE TABLE buckets (a)")
    other.commit()
    with pytest.raises(ValueError, match="staged chunk holds tables"), \
            begin_immediate(grid_engine) as conn:
        store = MetricsDB(conn)
        with store.large_batch():
            store.add_chunk(stage_chunk(rows, 600), 600)
            store.add_chunk(StagedChunk(other.serialize(), 1), 600)
    with grid_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(metric_samples)
                            ).scalar_one() == 0


def test_a_batch_leaves_no_staging_schema_behind(grid_engine: Engine) -> None:
    """The staged chunks' schema goes at the end of the batch, so the pooled connection
    holds no image and the next batch attaches afresh; duplicates fold once."""
    if grid_engine.dialect.name != "sqlite":
        pytest.skip("staged chunks are SQLite's")
    with grid_engine.connect() as conn:
        site = conn.execute(sa.text("SELECT min(id) FROM sites")).scalar_one()
    rows = [(origin_key("fts", f"r{i}"), "fts", f"r{i}", site, site, "success", float(i % 2),
             600.0 + i, 1.0, "transfer") for i in range(10)]
    for batch in (rows[:6], rows, rows + rows[:3]):  # the second and third repeat rows
        with begin_immediate(grid_engine) as conn:
            store = MetricsDB(conn)
            assert store.stages()
            with store.large_batch():
                store.add_chunk(stage_chunk(batch, 600), 600)
            assert conn.exec_driver_sql("SELECT name FROM pragma_database_list"
                                        ).scalars().all() == ["main"]
    with grid_engine.connect() as conn:
        (bucket,) = conn.execute(sa.select(metric_buckets)).mappings().all()
    assert (bucket["count"], bucket["value_sum"]) == (10, 5.0)
    assert fold_into_buckets(rows, 600)[0][5:7] == (10, 5.0)
