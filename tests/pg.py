"""A throwaway PostgreSQL cluster on loopback, for tests of the shared (multi-machine) store.

`with postgres_url() as url:` runs initdb into a fresh temp dir, starts the server on
127.0.0.1 and a free port (its socket in that dir too), creates a database and a user with a
random password, yields `postgresql://USER:PASSWORD@127.0.0.1:PORT/DB`, then stops the
server and deletes everything. PostgreSQL refuses to run as root, so as root the cluster
belongs to the `postgres` user. Tests skip (with the reason) when the binaries are missing.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("DCGAN_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"  # who owns the cluster when the tests run as root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_reason() -> str | None:
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / b).exists()]
    if missing:
        return f"PostgreSQL binaries not found in {PG_BIN} ({', '.join(missing)}); set DCGAN_PG_BIN"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to own the cluster"
    return None


@contextmanager
def postgres_url(db: str = "dcgan", user: str = "dcgan") -> Iterator[str]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="dcgan-pg-"))  # short: the socket path has a length limit
    as_server = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_server = ["runuser", "-u", SERVER_USER, "--"]
    password = secrets.token_hex(12)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if as_server:
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    data, log = root / "data", root / "server.log"

    def run(*cmd: str) -> None:
        subprocess.run([*as_server, *cmd], check=True, capture_output=True, text=True)

    started = False
    try:
        run(str(PG_BIN / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")  # fmt: skip
        for _ in range(3):  # a port taken between probing and binding: try another
            port = _free_port()
            options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                run(
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-o",
                    options,
                    "start",
                )
                started = True
                break
            except subprocess.CalledProcessError:
                continue
        if not started:
            raise RuntimeError(
                f"PostgreSQL did not start: {log.read_text() if log.exists() else ''}"
            )
        env = {**os.environ, "PGPASSWORD": password}
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        yield f"postgresql://{user}:{password}@127.0.0.1:{port}/{db}"
    finally:
        if started:
            run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """One cluster per test module; import this fixture into the module that needs it."""
    with postgres_url() as url:
        yield url
