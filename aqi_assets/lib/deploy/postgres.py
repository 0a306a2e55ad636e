"""A throwaway PostgreSQL cluster on 127.0.0.1 for local service runs, tests and benchmarks.

`initdb` refuses to run as root, so as root every server command runs as the `postgres` user (created by the
Debian package) through `runuser`, in a directory under /tmp that user owns. Host connections need a password
(scram-sha-256); only the Unix socket in the cluster's own directory trusts the local superuser, which is how the
cluster creates the application role. The server is stopped through `pg_ctl` (which signals the postmaster pid
it wrote), then, if it lingers, by that pid.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"

# What Dagster needs and no more: log in, own its one database (it creates its tables and indexes there).
ROLE_SQL = """
CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE {database} OWNER {role};
REVOKE ALL ON DATABASE {database} FROM PUBLIC;
"""


class PostgresError(RuntimeError):
    """The cluster could not be created or started; the message carries the server's log tail."""


def postgres_bin_dir() -> Path:
    """The directory of `initdb`/`pg_ctl`: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise PostgresError("PostgreSQL server binaries not found: install the Debian package `postgresql`")
    return Path(candidates[-1]).parent


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", SUPERUSER, "--", *argv]


@dataclass
class PostgresCluster:
    directory: Path  # holds data/, the socket and the server log
    port: int
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def _run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            _as_server_user([str(postgres_bin_dir() / argv[0]), *argv[1:]]),
            check=True,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def _fail(self, message: str, error: subprocess.CalledProcessError | None = None) -> PostgresError:
        details = f"\n{error.stdout}\n{error.stderr}" if error is not None else ""
        with contextlib.suppress(OSError):
            details += "\n--- server log ---\n" + "\n".join(self.log_path.read_text().splitlines()[-20:])
        return PostgresError(message + details)

    def init(self) -> None:
        try:
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            )
        except subprocess.CalledProcessError as error:
            raise self._fail("initdb failed", error) from error

    def start(self, *, durable: bool = True) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses={self.host}"
        if not durable:  # tests and benchmarks: nothing to keep across a machine crash
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._run(["pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-o", options, "start"])
        except subprocess.CalledProcessError as error:
            raise self._fail("pg_ctl start failed", error) from error

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the cluster's own Unix socket."""
        try:
            return self._run(
                [
                    "psql",
                    "-h",
                    str(self.directory),
                    "-p",
                    str(self.port),
                    "-U",
                    SUPERUSER,
                    "-d",
                    database,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qAt",
                    "-c",
                    sql,
                ]
            ).stdout
        except subprocess.CalledProcessError as error:
            raise self._fail("psql failed", error) from error

    def create_application_database(self, role: str, password: str, database: str) -> None:
        for statement in ROLE_SQL.format(role=role, password=password.replace("'", "''"), database=database).split(";"):
            if statement.strip():
                self.psql(statement)

    def stop(self, timeout_s: float = 20.0) -> None:
        pid = self.postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout_s)), "stop"])
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):  # the postmaster's own pid, read from its pid file
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_cluster_directory(prefix: str = "aqi-pg-") -> Path:
    """A fresh directory the server user owns (pytest's tmp dirs are private to root)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SUPERUSER)
        os.chown(directory, user.pw_uid, user.pw_gid)
    directory.chmod(0o700)
    return directory


@contextlib.contextmanager
def throwaway_cluster(
    port: int, role: str, password: str, database: str, *, durable: bool = False
) -> Iterator[PostgresCluster]:
    """Create, start and yield a cluster with one application database; stop and delete it afterwards."""
    cluster = PostgresCluster(directory=make_cluster_directory(), port=port)
    try:
        cluster.init()
        cluster.start(durable=durable)
        cluster.create_application_database(role, password, database)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
