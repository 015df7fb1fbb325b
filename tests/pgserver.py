"""A throwaway PostgreSQL cluster for the test suite.

Why: the design promises PostgreSQL is "tested for real", so the suite starts its own server
from the installed binaries instead of relying on a service someone must set up. The cluster
lives in a private temp dir, listens on a free port of 127.0.0.1 with trust auth, runs with
fsync off (nothing here must survive a crash) and is stopped and deleted on exit.

`initdb` and `postgres` refuse to run as root: when the tests run as root (CI does), every
server command runs as the `postgres` OS user through `runuser`, in a temp dir that user owns.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

PG_MAJOR = "15"
SUPERUSER = "postgres"  # name of the cluster's superuser role (not the OS user)
START_TIMEOUT = 30.0
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresServerError(RuntimeError):
    """The throwaway server could not be set up; the message says why (log tail included)."""


def find_pg_bin() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres: $EDI_PG_BIN, then PostgreSQL 15, then any."""
    candidates: list[Path] = []
    if os.environ.get("EDI_PG_BIN"):
        candidates.append(Path(os.environ["EDI_PG_BIN"]))
    candidates.append(Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
    others = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(sorted(others, key=lambda p: _version_key(p.parent.name), reverse=True))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now (start() retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """Context manager: `with PostgresServer() as pg: url = pg.new_database("t1")`."""

    def __init__(self, bindir: Path | None = None, os_user: str | None = None) -> None:
        found = bindir or find_pg_bin()
        if found is None:
            raise PostgresServerError(
                "binaires PostgreSQL introuvables (initdb, pg_ctl, postgres) : installez "
                f"postgresql-{PG_MAJOR} ou indiquez leur dossier dans EDI_PG_BIN"
            )
        self.bindir = Path(found)
        self.os_user = self._pick_os_user(os_user)
        self.port: int | None = None
        self.root: Path | None = None  # temp dir: data/, socket, log
        self._running = False

    # -- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """initdb, then start on a free port; on any failure, clean up and raise."""
        atexit.register(self.stop)
        try:
            self.root = self._make_root()
            self._initdb()
            last_error = ""
            for _attempt in range(3):  # the free port may be taken between pick and bind
                self.port = free_port()
                ok, last_error = self._pg_ctl_start()
                if ok:
                    break
            else:
                raise PostgresServerError(f"le serveur PostgreSQL ne démarre pas :\n{last_error}")
            self._running = True
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (immediate: its data is thrown away) and delete the temp dir."""
        atexit.unregister(self.stop)
        if self.root is None:
            return
        data = self.root / "data"
        if self._running or (data / "postmaster.pid").exists():
            self._running = False
            res = self._run([self.bindir / "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w",
                             "-t", "20"], check=False)
            if res.returncode != 0:
                self._kill_postmaster(data)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    # -- public helpers ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """URL of the maintenance database `postgres` (create test databases, not tables, there)."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        if self.port is None:
            raise PostgresServerError("serveur PostgreSQL non démarré")
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, name: str) -> str:
        """Create (or recreate, empty) database `name`; return its SQLAlchemy URL."""
        if not _DB_NAME.match(name):
            raise ValueError(f"nom de base invalide : {name!r} (minuscules, chiffres, _)")
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        """A raw autocommit psycopg connection (CREATE/DROP DATABASE need autocommit)."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=dbname,
                               autocommit=True, connect_timeout=5)

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _pick_os_user(os_user: str | None) -> str | None:
        """None = run the binaries as ourselves; as root, the (unprivileged) `postgres` user."""
        if os.geteuid() != 0:
            return None
        name = os_user or os.environ.get("EDI_PG_OS_USER", "postgres")
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise PostgresServerError(
                f"tests lancés en root mais l'utilisateur système {name!r} n'existe pas : "
                "initdb refuse root ; créez-le ou indiquez-en un autre dans EDI_PG_OS_USER"
            ) from None
        if shutil.which("runuser") is None:
            raise PostgresServerError("tests lancés en root mais la commande runuser est absente")
        return name

    def _make_root(self) -> Path:
        # Short path: the unix socket lives here and socket paths are limited to ~107 bytes.
        base = tempfile.gettempdir()
        if len(base) > 60 or self.os_user is not None and not _world_traversable(Path(base)):
            base = "/tmp"
        root = Path(tempfile.mkdtemp(prefix="edi-pg-", dir=base))
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        return root

    def _initdb(self) -> None:
        res = self._run([self.bindir / "initdb", "-D", self.root / "data", "-U", SUPERUSER,
                         "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                        check=False)
        if res.returncode != 0:
            raise PostgresServerError(f"initdb a échoué ({res.returncode}) :\n{res.stdout}{res.stderr}")

    def _pg_ctl_start(self) -> tuple[bool, str]:
        options = " ".join([
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={shlex.quote(str(self.root))}",  # pg_ctl uses a shell
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c max_connections=200",
            "-c shared_buffers=32MB",
        ])
        log = self.root / "server.log"
        res = self._run([self.bindir / "pg_ctl", "start", "-D", self.root / "data", "-l", log,
                         "-w", "-t", str(int(START_TIMEOUT)), "-o", options], check=False)
        if res.returncode == 0:
            return True, ""
        self._kill_postmaster(self.root / "data")
        return False, f"{res.stdout}{res.stderr}\n{_tail(log)}"

    def _wait_ready(self) -> None:
        """pg_ctl -w already waited; confirm over TCP, as the tests will connect."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with self.connect("postgres") as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresServerError(
                        f"PostgreSQL n'accepte pas de connexion sur 127.0.0.1:{self.port} : {exc}\n"
                        f"{_tail(self.root / 'server.log')}"
                    ) from exc
                time.sleep(0.1)

    def _kill_postmaster(self, data: Path) -> None:
        """Last resort when pg_ctl cannot stop it: SIGQUIT then SIGKILL the postmaster."""
        try:
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                return
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    def _run(self, argv: list, check: bool) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in argv]
        if self.os_user is not None:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=check, timeout=120)


def _world_traversable(path: Path) -> bool:
    """True when every ancestor lets others in (so the `postgres` user reaches our temp dir)."""
    for p in [path, *path.parents]:
        try:
            if not p.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(pas de journal {path})"
