"""One throwaway PostgreSQL cluster per test session (127.0.0.1, a free port, password auth), stopped by its own
postmaster pid; each test module takes a database of its own in it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from aqi_assets.lib.deploy.postgres import PostgresCluster, throwaway_cluster
from aqi_assets.lib.deploy.service import free_port, pg_env_from_cluster

ROLE = "dagster"


@dataclass
class Postgres:
    cluster: PostgresCluster
    password: str

    def new_database(self, name: str) -> dict[str, str]:
        """A fresh database owned by the application role; returns the DAGSTER_PG_* variables for it."""
        self.cluster.psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return pg_env_from_cluster(self.cluster.port, ROLE, self.password, name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    password = secrets.token_urlsafe(16)
    with throwaway_cluster(free_port(), ROLE, password, "dagster") as cluster:
        yield Postgres(cluster=cluster, password=password)
