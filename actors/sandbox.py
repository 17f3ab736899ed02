"""Run untrusted Python in a throwaway bubblewrap sandbox.

Layers (each one needed on a root host, see issue 4): bwrap with every namespace unshared (no network, own
pid space, only /usr read-only plus a fresh size-capped tmpfs scratch), an unprivileged uid per concurrent
slot (RLIMIT_NPROC is per uid and ignored for root), rlimits + a seccomp filter installed by
`sandbox_boot.py` inside the child before the program runs, output written to capped files, and on timeout
the whole tree is killed (outer bwrap, --die-with-parent, then a sweep of the slot's uid). The launcher is a
child subreaper and reaps the zombie bwrap leaves per run.
"""

from __future__ import annotations

import ctypes
import math
import os
import queue
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BOOT = Path(__file__).with_name("sandbox_boot.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PR_SET_CHILD_SUBREAPER = 36
_ENV = {"PATH": "/usr/bin", "HOME": "/scratch", "TMPDIR": "/scratch", "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
_live: set[int] = set()  # pids of sandboxes being waited on by some thread (never reaped by the sweeper)
_live_lock = threading.Lock()
_probe_cache: dict[tuple[str, str], list[str]] = {}


class IsolationError(RuntimeError):
    """The host lacks an isolation property and weak isolation was not allowed."""


@dataclass
class SandboxLimits:
    timeout_s: float = 5.0
    memory_mb: int = 512
    max_output_bytes: int = 1 << 20
    nproc: int = 32
    nofile: int = 64
    scratch_mb: int = 64


@dataclass
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    output_truncated: bool = False
    elapsed: float = 0.0
    weak: list[str] = field(default_factory=list)


def _set_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _bwrap_args(bwrap: str, box: str, scratch_bytes: int) -> list[str]:
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev"]
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            args += ["--symlink", os.readlink(f"/{name}").lstrip("/"), f"/{name}"]
    args += ["--ro-bind", box, "/box", "--size", str(scratch_bytes), "--tmpfs", "/scratch",
             "--remount-ro", "/", "--chdir", "/scratch"]
    for k, v in _ENV.items():
        args += ["--setenv", k, v]
    return args


def _user_kw(uid: int | None) -> dict:
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


def probe_isolation(bwrap: str = "bwrap", python: str = SYSTEM_PYTHON, uid: int = 65534) -> list[str]:
    """Names of the isolation properties this host cannot provide (empty when all are there)."""
    key = (bwrap, python)
    if key in _probe_cache:
        return _probe_cache[key]
    missing = []
    run_uid = uid if os.geteuid() == 0 else None
    if not _set_subreaper():
        missing.append("child subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed")
    if not os.access(python, os.X_OK):
        missing.append(f"system python: {python} not found")
    else:
        chk = "import sys; sys.path.append('/usr/lib/python3/dist-packages'); import seccomp"
        try:
            rc = subprocess.run([python, "-I", "-c", chk], capture_output=True, env=_ENV,
                                **_user_kw(run_uid)).returncode
        except OSError as e:
            rc = f"{python} cannot run as the sandbox uid ({e})"
        if rc != 0:
            missing.append(f"seccomp: {python} cannot import seccomp (apt-get install python3-seccomp): {rc}")
    path = shutil.which(bwrap)
    if path is None:
        missing.append(f"namespaces: bubblewrap '{bwrap}' not installed (apt-get install bubblewrap)")
    else:
        with tempfile.TemporaryDirectory() as box:
            os.chmod(box, 0o755)
            r = subprocess.run(_bwrap_args(path, box, 1 << 20) + ["/usr/bin/true"], capture_output=True,
                               env=_ENV, **_user_kw(run_uid))
        _reap_zombies()
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            missing.append(f"namespaces: user/net/pid namespaces unavailable to bwrap ({err})")
    _probe_cache[key] = missing
    return missing


def _box_root() -> str:
    """/tmp/ssp-sandbox/<pid>; leftovers of dead launchers (e.g. a killed actor) are removed."""
    base = Path(tempfile.gettempdir(), "ssp-sandbox")
    base.mkdir(mode=0o755, exist_ok=True)
    for d in base.iterdir():
        if d.name.isdigit() and not Path(f"/proc/{d.name}").exists():
            shutil.rmtree(d, ignore_errors=True)
    mine = base / str(os.getpid())
    mine.mkdir(mode=0o755, exist_ok=True)
    return str(mine)


def _proc_uid(pid: str) -> int | None:
    """Owner uid of a process that can still run; None for a dead zombie (waiting to be reaped, it holds
    nothing and ignores SIGKILL). A zombie leader whose other threads still run is not dead."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("State:") and line.split()[1] == "Z" and len(os.listdir(f"/proc/{pid}/task")) <= 1:
                    return None
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def kill_uid(uid: int) -> int:
    """SIGKILL every process owned by `uid` (root only; a slot uid belongs to one sandbox). Returns count."""
    killed = 0
    for _ in range(100):
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _proc_uid(p) == uid]
        if not pids:
            break
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.001)  # a pid namespace's last processes exit within a few ms of its init
    return killed


def _reap_zombies() -> None:
    """Reap zombie bwrap processes re-parented to us (subreaper) that no thread is waiting on."""
    with _live_lock:
        for task in os.listdir("/proc/self/task"):
            try:
                children = Path(f"/proc/self/task/{task}/children").read_text().split()
            except OSError:
                continue
            for pid in map(int, children):
                if pid in _live:
                    continue
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                comm, state = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2]
                if state == "Z" and comm == "bwrap":
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass


class Sandbox:
    """Runs one program at a time per uid slot; thread-safe up to len(uids) concurrent runs."""

    def __init__(self, limits: SandboxLimits | None = None, uids: list[int] | None = None,
                 allow_weak_isolation: bool = False, bwrap: str = "bwrap", python: str = SYSTEM_PYTHON):
        self.limits = limits or SandboxLimits()
        self.python = python
        self.root = os.geteuid() == 0
        self.missing = probe_isolation(bwrap, python, (uids or [65534])[0])
        if self.missing and not allow_weak_isolation:
            raise IsolationError("sandbox refuses to start, missing isolation: " + "; ".join(self.missing)
                                 + " (set allow_weak_isolation=true to run anyway)")
        self.bwrap = None if any(m.startswith("namespaces") for m in self.missing) else shutil.which(bwrap)
        self.seccomp = not any(m.startswith("seccomp") for m in self.missing)
        self.box_root = _box_root()
        self._slots: queue.Queue[int | None] = queue.Queue()
        for uid in (uids or [65534]) if self.root else [None]:
            self._slots.put(uid)

    def run(self, code: str, stdin: str = "", timeout_s: float | None = None) -> RunResult:
        uid = self._slots.get()
        try:
            return self._run(uid, code, stdin, timeout_s or self.limits.timeout_s)
        finally:
            self._slots.put(uid)

    def _argv(self, box: str, timeout_s: float) -> list[str]:
        lim = self.limits
        return [self.python, "-I", "-B", f"{box}/boot.py", f"{box}/main.py", str(lim.memory_mb << 20),
                str(math.ceil(timeout_s) + 1), str(lim.nproc), str(lim.max_output_bytes + 1), str(lim.nofile),
                "1" if self.seccomp else "0"]

    def _run(self, uid: int | None, code: str, stdin: str, timeout_s: float) -> RunResult:
        box = tempfile.mkdtemp(prefix="box-", dir=self.box_root)
        scratch = None
        try:
            os.chmod(box, 0o755)
            Path(box, "main.py").write_text(code)
            shutil.copyfile(BOOT, Path(box, "boot.py"))
            if self.bwrap:
                cmd = _bwrap_args(self.bwrap, box, self.limits.scratch_mb << 20) + self._argv("/box", timeout_s)
                cwd = None
            else:  # weak isolation: no namespaces, a host scratch dir owned by the slot uid
                scratch = tempfile.mkdtemp(prefix="ssp-scratch-")
                if uid is not None:
                    os.chown(scratch, uid, uid)
                cmd, cwd = self._argv(box, timeout_s), scratch
            with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
                    tempfile.TemporaryFile() as ferr:
                fin.write(stdin.encode())
                fin.seek(0)
                t0 = time.perf_counter()
                rc, timed_out = self._spawn(cmd, cwd, uid, fin, fout, ferr, timeout_s)
                elapsed = time.perf_counter() - t0
                out, truncated = _read_capped(fout, self.limits.max_output_bytes)
                err, _ = _read_capped(ferr, 64 << 10)
            truncated = truncated or rc == -signal.SIGXFSZ
            return RunResult(rc, out, err, timed_out, truncated, elapsed, list(self.missing))
        finally:
            shutil.rmtree(box, ignore_errors=True)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def _spawn(self, cmd: list[str], cwd: str | None, uid: int | None, fin, fout, ferr,
               timeout_s: float) -> tuple[int, bool]:
        with _live_lock:
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd, env=_ENV,
                                    close_fds=True, start_new_session=True, **_user_kw(uid))
            _live.add(proc.pid)
        try:
            timed_out = not _exits_within(proc.pid, timeout_s)
            if timed_out:
                proc.kill()
            rc = proc.wait()
        finally:
            with _live_lock:
                _live.discard(proc.pid)
            if uid is not None:  # nothing of this slot's uid outlives the check (pid-ns teardown is async)
                kill_uid(uid)
            _reap_zombies()
        return rc, timed_out


def _exits_within(pid: int, timeout_s: float) -> bool:
    """Block until the process exits or the timeout passes; a pidfd wakes at once (Popen.wait(timeout) polls
    with doubling sleeps, which added ~3 ms to every run)."""
    fd = os.pidfd_open(pid)
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def _read_capped(fh, cap: int) -> tuple[str, bool]:
    fh.seek(0)
    data = fh.read(cap + 1)
    return data[:cap].decode(errors="replace"), len(data) > cap
