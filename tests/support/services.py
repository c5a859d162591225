"""Private Redis and PostgreSQL instances for fault tests (never the shared ones on 6379/5432).

Redis: ``redis-server`` on a free port, data in a temp dir, AOF with ``appendfsync always`` so a
stop loses nothing that was acknowledged (as production Redis for this stream should run).

PostgreSQL: ``initdb`` refuses to run as root, so when the tests run as root the cluster is
created and started as the ``postgres`` system user through ``runuser -u postgres --`` in a temp
dir under /tmp that user owns (pytest's tmp_path is root-only). Binaries come from
/usr/lib/postgresql/<newest>/bin.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.processes import free_port


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout} s")


class PrivateRedis:
    """A throwaway redis-server; ``stop``/``start`` keep its port and data."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="perennial-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        cmd = ["redis-cli", "-p", str(self.port), "ping"]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() == "PONG"

    def start(self) -> PrivateRedis:
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._ping, 15, "private redis")
        return self

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits (what an operator's stop does)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(f"PostgreSQL binary {name} not found under /usr/lib/postgresql")
    return found[-1]


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (trust auth, user postgres, database postgres)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="perennial-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = (["runuser", "-u", "postgres", "--"] if self._as_postgres else []) + list(args)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> PrivatePostgres:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        )
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.dir / "postgres.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in a failover or a restart."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
