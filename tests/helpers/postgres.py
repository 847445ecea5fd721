"""A real PostgreSQL server for tests: initdb in a temporary folder, `postgres` on a free loopback port.

The binaries come from the distribution's `postgresql` package (`make install-postgres` installs
it). PostgreSQL refuses to run as root, so as root the server runs as the package's `postgres`
user (through runuser) in a folder it owns. Durability is switched off (fsync, full page writes):
tests need a real server's behaviour, not its crash safety.
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
import uuid
from pathlib import Path

from scripts.stack import free_port

HOST = "127.0.0.1"
SUPERUSER = "itk"


def find_bindir() -> Path | None:
    """The folder holding initdb and postgres: on PATH, or Debian's /usr/lib/postgresql/<major>/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        # Not under pytest's tmp_path: as root that is private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="itk-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._command("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--no-instructions")

    def _command(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as_user, str(self.bindir / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> None:
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            self.process = subprocess.Popen(
                [*self._as_user, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.root}",
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
                 "-c", "max_connections=200"],
                stdout=log, stderr=log, cwd=self.root, start_new_session=True,
            )
        finally:
            os.close(log)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"postgres exited:\n{self.log_path.read_text(errors='replace')}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError("postgres did not accept connections") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown: clients are disconnected, the data stays for a later start()."""
        if self.process is None or self.process.poll() is not None:
            return
        # To the server itself (its pid heads postmaster.pid), not to runuser in front of it.
        pid_file = self.data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def create_database(self, prefix: str = "itk") -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
