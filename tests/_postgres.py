"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp directory.

PostgreSQL refuses to run as root, and CI runs as root, so the server runs as
the ``postgres`` user (through ``runuser``) when the tests run as root. Each
pytest-xdist worker starts its own server on its own free port.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

INSTALL_HINT = (
    "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make test`, "
    "which installs it, or `apt-get update && apt-get install -y postgresql`"
)
SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what to do."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server; ``database()`` makes a fresh database on it."""

    host: str
    port: int
    user: str

    def admin_dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname=postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database, dropped afterwards; yields its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            # FILE_COPY (PostgreSQL 15+) copies a small template about twice as fast.
            fast = sql.SQL(" STRATEGY = FILE_COPY" if conn.info.server_version >= 150000 else "")
            conn.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), fast))
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl."""
    candidates = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(candidates):
        if (bindir / "pg_ctl").exists():
            return bindir
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise PostgresUnavailable(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root, but `runuser` is missing (util-linux)")
    return [runuser, "-u", SERVER_USER, "--", *argv]


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a server in a temp directory; stop it and delete everything afterwards."""
    bindir = find_bindir()
    base = Path(tempfile.mkdtemp(prefix="llmship-pg-"))
    if os.geteuid() == 0:
        try:
            import pwd

            entry = pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            shutil.rmtree(base, ignore_errors=True)
            raise PostgresUnavailable(
                f"running as root, but there is no {SERVER_USER!r} user to run PostgreSQL as; "
                "install the Debian package `postgresql` (make test does)"
            ) from exc
        os.chown(base, entry.pw_uid, entry.pw_gid)
    data, sockets, log = base / "data", base / "sock", base / "server.log"
    started = False
    try:
        _run(_as_server_user(["mkdir", "-p", str(sockets)]))
        _run(
            _as_server_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SERVER_USER,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        )
        last_error: PostgresUnavailable | None = None
        for _attempt in range(3):
            port = _free_port()
            options = (
                f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                _run(
                    _as_server_user(
                        [
                            str(bindir / "pg_ctl"),
                            "-D",
                            str(data),
                            "-l",
                            str(log),
                            "-w",
                            "-t",
                            "60",
                            "-o",
                            options,
                            "start",
                        ]
                    )
                )
            except PostgresUnavailable as exc:  # most likely the port was taken meanwhile
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                last_error = PostgresUnavailable(f"{exc}\nserver log:\n{tail}")
                continue
            started = True
            yield PostgresServer(host="127.0.0.1", port=port, user=SERVER_USER)
            return
        raise last_error or PostgresUnavailable("PostgreSQL did not start")
    finally:
        if started:
            subprocess.run(
                _as_server_user(
                    [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
                ),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)
