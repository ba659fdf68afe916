"""Fixtures: real databases on both backends, a real server on 127.0.0.1.

``db_url`` is parametrised over SQLite and PostgreSQL, so every test that
takes it (or ``engine``, or ``grid_engine``) runs twice. PostgreSQL is a
throwaway cluster started once per test session (initdb/pg_ctl, as the
``postgres`` user when we are root); each test gets a fresh database cloned
from a template already migrated to head. With NETBROKER_REQUIRE_POSTGRES=1
a missing PostgreSQL fails the run instead of skipping its half.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from sqlalchemy.engine import Engine

from netbroker.api import create_app
from netbroker.common.config import Settings
from netbroker.db import create_db_engine, upgrade
from netbroker.db.pgcluster import PostgresCluster, find_postgres_bin
from netbroker.registry import registry

REQUIRE_POSTGRES = os.environ.get("NETBROKER_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        if REQUIRE_POSTGRES:
            pytest.fail("NETBROKER_REQUIRE_POSTGRES=1 but no PostgreSQL (initdb, pg_ctl) found")
        pytest.skip("PostgreSQL binaries not found; set NETBROKER_REQUIRE_POSTGRES=1 to fail")
    cluster = PostgresCluster(bin_dir).start()
    yield cluster
    cluster.stop()


def _admin(cluster: PostgresCluster) -> Engine:
    return sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    """A database at head to clone per test (CREATE DATABASE ... TEMPLATE)."""
    admin = _admin(pg_cluster)
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE nb_template")
    admin.dispose()
    engine = create_db_engine(pg_cluster.url("nb_template"))
    upgrade(engine)
    engine.dispose()
    return "nb_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:  # fold the WAL into the file so a copy is complete
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of an empty database (no schema) on the backend under test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    yield from _pg_database(cluster, template=None)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of a fresh database at head on the backend under test."""
    if backend == "sqlite":
        path = tmp_path / "netbroker.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    yield from _pg_database(cluster, template=request.getfixturevalue("pg_template"))


def _pg_database(cluster: PostgresCluster, template: str | None) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin(cluster)
    with admin.connect() as conn:
        clause = f" TEMPLATE {template}" if template else ""
        conn.exec_driver_sql(f"CREATE DATABASE {name}{clause}")
    try:
        yield cluster.url(name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def grid_engine(engine: Engine) -> Engine:
    """An engine on a database holding the shipped sample grid."""
    registry.import_grid_file(engine, registry.sample_grid_path())
    return engine


class LiveServer:
    """The netbroker app under uvicorn on 127.0.0.1, in a thread of this process.

    Tokens are not checked unless ``auth`` is true: the tests of auth say so,
    the others test their own feature.
    """

    def __init__(self, engine: Engine, settings: Settings | None = None,
                 auth: bool = False) -> None:
        settings = settings or Settings()
        if not auth:
            settings = settings.model_copy(update={"service": settings.service.model_copy(
                update={"auth": "off"})})
        app = create_app(settings, engine)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(grid_engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(grid_engine) as server:
        yield server


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        yield client
