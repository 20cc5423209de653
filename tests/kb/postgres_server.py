"""A throwaway PostgreSQL server for the tests (Debian's `postgresql`), as tests/serving starts redis-server.

    server = PostgresServer.start()        # initdb into a temp dir, pg_ctl start on a free 127.0.0.1 port
    server.url("kb")                       # postgresql://lawtune@127.0.0.1:PORT/kb
    server.create_database("kb")           # or `template=` to copy another database (a writable KB copy)
    server.stop()                          # pg_ctl stop, temp dir removed

`python tests/kb/postgres_server.py` starts one and prints its URL until Ctrl-C or `kill` (for benchmarks/kb_retrieval.py).

PostgreSQL refuses to run as root, so as root initdb and the server run as the `postgres` system user the
Debian package creates (`runuser -u postgres --`), in a temp dir under /tmp that user owns (pytest's own temp
dirs are 0700 root, which that user cannot enter). Trust authentication for one superuser `lawtune`, listening
on 127.0.0.1 and a unix socket inside the temp dir only; fsync off: the data are rebuilt every session.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: tests/ is not on sys.path (tests/conftest.py puts it there for pytest)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from live_server import free_port  # noqa: E402

USER = "lawtune"  # the superuser initdb creates; trust auth, loopback only


def find_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<major>/bin (newest major)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    return candidates[-1] if candidates else None


class PostgresServer:
    def __init__(self, root: Path, port: int, as_user: list[str]):
        self.root, self.port, self.as_user = root, port, as_user
        self.data = root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, wait_s: float = 60.0) -> "PostgresServer":
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                                    "`apt-get install -y postgresql` (scripts/system-deps.sh does it)")
        as_user: list[str] = []
        root = Path(tempfile.mkdtemp(prefix="lawtune-pg-"))
        if os.geteuid() == 0:
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(root)
                raise FileNotFoundError("running as root and no `postgres` user to run PostgreSQL as: "
                                        "`apt-get install -y postgresql` creates it") from None
            os.chown(root, owner.pw_uid, owner.pw_gid)
            as_user = ["runuser", "-u", "postgres", "--"]
        server = cls(root, free_port(), as_user)
        try:
            server._run([initdb, "-D", str(server.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C",
                         "--no-sync"])
            # settings in the config file, not in pg_ctl's -o string (which it hands to a shell)
            with open(server.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(f"\nport = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                           f"unix_socket_directories = '{root}'\nfsync = off\nsynchronous_commit = off\n"
                           "full_page_writes = off\nmax_connections = 50\nshared_buffers = 64MB\n")
            server._run([pg_ctl, "-D", str(server.data), "-l", str(root / "server.log"), "-w", "-t", str(int(wait_s)),
                         "start"])
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, cmd: list[str]) -> None:
        result = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}{tail}")

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE (a file-level copy of `template` if given: it must have no open connections)."""
        import psycopg
        from psycopg import sql

        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        pg_ctl = find_bin("pg_ctl")
        if pg_ctl and (self.data / "postmaster.pid").exists():
            subprocess.run([*self.as_user, pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    import signal

    # `kill PID` stops it cleanly too (a background job ignores Ctrl-C's SIGINT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = PostgresServer.start()
    print(server.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
