"""Run untrusted Python in a throwaway bubblewrap sandbox.

Layers: bwrap with every namespace unshared (no network, own pid and IPC space, only /usr read-only, a
read-only /dev, size-capped tmpfs at /scratch and /dev/shm); an unprivileged uid per concurrent slot,
reserved per host and never an account's; rlimits and a seccomp filter installed by `sandbox_boot.py`
inside the child before the program runs; one cgroup per run (memory with swap, pids, cpu: see cgroup.py)
filled before bwrap starts and killed after the run; output written to capped files. Whether bwrap set the
sandbox up comes from its --json-status-fd, never from the program's output.

Two modes: `run(code, stdin)` runs a program (stdin/stdout problems); `serve(code, interact)` loads a
solution and lets the trusted harness (`code_grader.py`) call into it over a pair of pipes (`Channel`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import grp
import json
import logging
import math
import os
import pwd
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.verifier.cgroup import Cgroups, RunCgroup

BOOT = Path(__file__).with_name("sandbox_boot.py")
CODEC = Path(__file__).with_name("sandbox_codec.py")  # imported by the boot from its own folder
SPAWNER = Path(__file__).with_name("spawner.py")
SPAWNER_MB = 16
SYSTEM_PYTHON = "/usr/bin/python3"
PR_SET_CHILD_SUBREAPER = 36
UID_BASE = 62000  # sandbox uids are searched from here upwards (VerifierConfig.uid_base)
UID_SPAN = 4096
UID_LOCKS = Path("/run/ssp-sandbox/uids")
_ENV = {"PATH": "/usr/bin", "HOME": "/scratch", "TMPDIR": "/scratch", "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
_live: set[int] = set()  # pids of sandboxes being waited on by some thread (never reaped by the sweeper)
_live_lock = threading.Lock()
_probe_cache: dict[tuple[str, str], list[str]] = {}
log = logging.getLogger(__name__)


class IsolationError(RuntimeError):
    """The host lacks an isolation property and weak isolation was not allowed."""


class SandboxTimeout(Exception):
    """The run's wall-clock limit passed while the harness waited on it."""


class SandboxClosed(Exception):
    """The program closed its end (exited, crashed or was killed) before answering."""


class OutputLimit(Exception):
    """A reply from the program was larger than max_output_bytes."""


@dataclass
class SandboxLimits:
    timeout_s: float = 5.0
    memory_mb: int = 512  # the whole run: every process, tmpfs page and pipe of it together (cgroup)
    max_output_bytes: int = 1 << 20
    nproc: int = 32
    nofile: int = 64
    scratch_mb: int = 64  # each of /scratch and /dev/shm
    cpus: float = 1.0  # CPU time per wall second for the whole run (cgroup cpu quota)


@dataclass
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    output_truncated: bool = False
    elapsed: float = 0.0
    weak: list[str] = field(default_factory=list)
    started: bool = True  # bwrap set the sandbox up and started the program (out of band, --json-status-fd)
    memory_exceeded: bool = False  # the run's cgroup OOM-killed one of its processes
    killed_by_us: bool = False  # we sent the run's SIGKILL (timeout, or the harness was done)
    value: Any = None  # what `interact` returned (serve mode)


def _set_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _bwrap_args(bwrap: str, box: list[str], scratch_bytes: int) -> list[str]:
    """bwrap's arguments; `box` are the mount arguments that put the program's files under /box.
    --as-pid-1: no bwrap init in the sandbox, so every process in it runs under the boot's seccomp filter; a
    read-only /proc: no process can open another's (or its own) /proc/<pid>/mem for writing."""
    args = [bwrap, "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--remount-ro", "/proc", "--dev", "/dev",
            "--size", str(scratch_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            args += ["--symlink", os.readlink(f"/{name}").lstrip("/"), f"/{name}"]
    args += [*box, "--size", str(scratch_bytes), "--tmpfs", "/scratch",
             "--remount-ro", "/", "--chdir", "/scratch"]
    for k, v in _ENV.items():
        args += ["--setenv", k, v]
    return args


def _user_kw(uid: int | None) -> dict:
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


# ---------------------------------------------------------------- uids

def _subid_ranges() -> list[range]:
    out = []
    for f in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError):
            for line in Path(f).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    out.append(range(int(parts[1]), int(parts[1]) + int(parts[2])))
    return out


def uid_problem(uid: int) -> str | None:
    """Why `uid` may not be a sandbox uid (None when it may): root, an account's uid/gid, or a subuid range."""
    if not 1000 <= uid < 2**31 - 1:
        return f"uid {uid} is outside 1000..2^31-2"
    for lookup, what in ((pwd.getpwuid, "user"), (grp.getgrgid, "group")):
        try:
            return f"uid {uid} belongs to the {what} {lookup(uid)[0]!r}"
        except KeyError:
            pass
    if any(uid in r for r in _subid_ranges()):
        return f"uid {uid} lies in a range of /etc/subuid or /etc/subgid"
    return None


class UidLease:
    """Host-wide reservation of sandbox uids: an exclusive flock per uid, held while this object lives."""

    def __init__(self, count: int = 1, base: int = UID_BASE, uids: list[int] | None = None):
        UID_LOCKS.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.uids: list[int] = []
        self._fds: list[int] = []
        candidates = uids if uids is not None else range(base, base + UID_SPAN)
        for uid in candidates:
            if len(self.uids) == count and uids is None:
                break
            why = uid_problem(uid)
            if why:
                if uids is not None:
                    raise ValueError(f"sandbox uid: {why}")
                continue
            fd = os.open(UID_LOCKS / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if uids is not None:
                    raise ValueError(f"sandbox uid {uid} is in use by another sandbox on this host") from None
                continue
            self.uids.append(uid)
            self._fds.append(fd)
        if len(self.uids) < (count if uids is None else len(uids)):
            self.release()
            raise ValueError(f"no {count} free sandbox uids in {base}..{base + UID_SPAN - 1}")

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds, self.uids = [], []


# ---------------------------------------------------------------- host checks

def probe_isolation(bwrap: str = "bwrap", python: str = SYSTEM_PYTHON, uid: int | None = None) -> list[str]:
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
            r = subprocess.run(_bwrap_args(path, ["--ro-bind", box, "/box"], 1 << 20) + ["/usr/bin/true"],
                               capture_output=True,
                               env=_ENV, **_user_kw(run_uid))
        _reap_zombies()
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            missing.append(f"namespaces: user/net/pid namespaces unavailable to bwrap ({err})")
    _probe_cache[key] = missing
    return missing


_warned_no_cgroup = False


def _cgroups_or_warn() -> Cgroups | None:
    global _warned_no_cgroup
    cg = Cgroups.detect() if os.geteuid() == 0 else None
    if cg is None and not _warned_no_cgroup:
        _warned_no_cgroup = True
        log.warning("sandbox: no usable cgroup (v2 with memory/pids/cpu delegated, or writable v1 memory, "
                    "pids and cpu hierarchies); falling back to per-process rlimits, so memory and CPU are "
                    "limited per process, not per run")
    return cg


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


def _compile_boot(python: str, where: str) -> str:
    """sandbox_boot.py and the codec beside it, compiled once by the sandbox's python (compiling them in every
    run cost ~5 ms); returns the boot's path (the codec's is the same folder, same suffix)."""
    src = "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)"
    outs = []
    for file in (BOOT, CODEC):
        out = Path(where, "boot.pyc" if file == BOOT else file.with_suffix(".pyc").name)
        if subprocess.run([python, "-I", "-c", src, str(file), str(out)], capture_output=True).returncode != 0:
            out = out.with_suffix(".py")  # a python that cannot compile it will not run it either
            shutil.copyfile(file, out)
        outs.append(str(out))
    return outs[0]


def _codec_beside(boot: str) -> str:
    """The compiled codec next to the compiled boot (see _compile_boot)."""
    return str(Path(boot).with_name(CODEC.stem + Path(boot).suffix))


def _sandbox_init(pid: int) -> bool:
    """Whether `pid` is pid 1 of a pid namespace below ours: a sandboxed program (bwrap --as-pid-1)."""
    with contextlib.suppress(OSError, IndexError):
        nspid = Path(f"/proc/{pid}/status").read_text().split("NSpid:")[1].split("\n")[0].split()
        return len(nspid) > 1 and nspid[-1] == "1"
    return False


def _reap_zombies() -> None:
    """Reap zombie bwrap processes, and sandboxed programs (pid 1 in their sandbox) whose bwrap died first,
    re-parented to us (subreaper) that no thread is waiting on."""
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
                if state == "Z" and (comm == "bwrap" or _sandbox_init(pid)):
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)


# ---------------------------------------------------------------- the harness's line to a serving program

class Channel:
    """JSON lines to and from a program started by `Sandbox.serve`, bounded by the run's deadline (or a shorter
    one the harness sets with `limit`, e.g. per test case); `check` holds the harness's own work to it too."""

    def __init__(self, w: int, r: int, deadline: float, cap: int):
        self.w, self.r, self.deadline, self.cap = w, r, deadline, cap
        self.end = deadline  # the run's own: no `limit` goes past it
        self._buf = b""
        os.set_blocking(w, False)

    def limit(self, seconds: float) -> None:
        """The deadline `seconds` from now (never past the run's)."""
        self.deadline = min(self.end, time.monotonic() + seconds)

    def check(self) -> None:
        """SandboxTimeout once the deadline has passed."""
        if time.monotonic() >= self.deadline:
            raise SandboxTimeout

    def _wait(self, fd: int, write: bool) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([] if write else [fd], [fd] if write else [], [], left)[0 if not write else 1]:
            raise SandboxTimeout

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            self._wait(self.w, write=True)
            try:
                data = data[os.write(self.w, data):]
            except BrokenPipeError:
                raise SandboxClosed from None

    def recv(self) -> dict:
        while b"\n" not in self._buf:
            if len(self._buf) > self.cap:
                raise OutputLimit
            self._wait(self.r, write=False)
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise SandboxClosed
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        if len(line) > self.cap:
            raise OutputLimit
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):  # garbage, or nested deep enough to blow the parser's stack
            raise SandboxClosed("the program's channel carried something that is not JSON") from None
        if not isinstance(msg, dict):
            raise SandboxClosed("the program's channel carried a non-object")
        return msg

    def request(self, msg: dict) -> dict:
        self.send(msg)
        return self.recv()


Interact = Callable[[Channel], Any]


class _Slot:
    """One uid, its cgroup, and a spawner process inside that cgroup (spawner.py); one run at a time."""

    def __init__(self, uid: int | None, cgroups: Cgroups | None, limits: SandboxLimits):
        self.uid = uid
        self.cg: RunCgroup | None = None
        if cgroups is not None:  # the spawner's own ~10 MB and one pid are charged to the group too
            self.cg = cgroups.create(f"slot-{uid if uid is not None else os.getpid()}",
                                     limits.memory_mb + SPAWNER_MB, limits.nproc + 1, limits.cpus)
        self.proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-I", "-B", str(SPAWNER), str(theirs.fileno()), str(os.getpid())],
                                     pass_fds=[theirs.fileno()], env={}, start_new_session=True)
        theirs.close()
        self.sock = ours
        if self.cg is not None:
            self.cg.add(self.proc.pid)

    def spawn(self, argv: list[str], cwd: str | None, fds: list[int]) -> int:
        """Fork a run from the spawner (restarted once if it died); the pid of the run's first process."""
        req = json.dumps({"argv": argv, "env": _ENV, "cwd": cwd, "uid": self.uid}).encode()
        for attempt in (0, 1):
            try:
                socket.send_fds(self.sock, [req], fds)
                return self._recv()["pid"]
            except (OSError, SandboxClosed):
                if attempt:
                    raise
                self.close(keep_cgroup=True)
                self._start()
        raise AssertionError("unreachable")

    def _recv(self) -> dict:
        msg = self.sock.recv(1 << 16)
        if not msg:
            raise SandboxClosed("the sandbox spawner died")
        return json.loads(msg)

    def wait_status(self, timeout_s: float | None = None) -> tuple[bool, int | None]:
        """(exited, exit code) of the run, waiting at most `timeout_s` (None: until it exits). The code is
        negative when a signal killed it, None if the spawner died meanwhile."""
        if timeout_s is not None and not select.select([self.sock], [], [], timeout_s)[0]:
            return False, None
        try:
            return True, self._recv()["status"]
        except (OSError, SandboxClosed):
            return True, None

    def kill_run(self) -> None:
        """SIGKILL everything of the run (the cgroup less the spawner)."""
        if self.cg is not None:
            self.cg.kill(_reap_zombies, keep={self.proc.pid})

    def close(self, keep_cgroup: bool = False) -> None:
        self.sock.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.cg is not None:
            self.cg.kill(_reap_zombies)
            if not keep_cgroup:
                self.cg.remove()


class Sandbox:
    """Runs one program at a time per uid slot; thread-safe up to `slots` concurrent runs."""

    def __init__(self, limits: SandboxLimits | None = None, uids: list[int] | None = None,
                 allow_weak_isolation: bool = False, bwrap: str = "bwrap", python: str = SYSTEM_PYTHON,
                 slots: int = 1, uid_base: int = UID_BASE):
        self.limits = limits or SandboxLimits()
        self.python = python
        self.root = os.geteuid() == 0
        self.lease = UidLease(slots, uid_base, uids) if self.root else None
        self.missing = probe_isolation(bwrap, python, self.lease.uids[0] if self.lease else None)
        if self.missing and not allow_weak_isolation:
            if self.lease:
                self.lease.release()
            raise IsolationError("sandbox refuses to start, missing isolation: " + "; ".join(self.missing)
                                 + " (set allow_weak_isolation=true to run anyway)")
        self.bwrap = None if any(m.startswith("namespaces") for m in self.missing) else shutil.which(bwrap)
        self.seccomp = not any(m.startswith("seccomp") for m in self.missing)
        self.cgroups = _cgroups_or_warn()
        self.box_root = _box_root()
        self.boot = _compile_boot(self.python, self.box_root)
        self._all = [_Slot(uid, self.cgroups, self.limits)
                     for uid in (self.lease.uids if self.lease else [None] * slots)]
        self._slots: queue.Queue[_Slot] = queue.Queue()
        for slot in self._all:
            self._slots.put(slot)

    @property
    def uids(self) -> list[int]:
        return list(self.lease.uids) if self.lease else []

    def close(self) -> None:
        """Stop the spawners, remove the cgroups and release the uids."""
        for slot in self._all:
            slot.close()
        if self.lease:
            self.lease.release()

    def run(self, code: str, stdin: str = "", timeout_s: float | None = None) -> RunResult:
        """Run `code` as __main__ with `stdin`; stdout/stderr come back capped."""
        return self._with_slot(code, stdin, timeout_s, None)

    def serve(self, code: str, interact: Interact, timeout_s: float | None = None) -> RunResult:
        """Load `code` as module `solution` and call `interact(channel)` while it serves; its return value
        lands in RunResult.value (the exception instead when the channel broke or overflowed)."""
        return self._with_slot(code, "", timeout_s, interact)

    def _with_slot(self, code: str, stdin: str, timeout_s: float | None, interact: Interact | None) -> RunResult:
        slot = self._slots.get()
        try:
            return self._run(slot, code, stdin, timeout_s or self.limits.timeout_s, interact)
        finally:
            self._slots.put(slot)

    def _argv(self, mode: str, box: str, timeout_s: float, fds: list[int]) -> list[str]:
        lim = self.limits
        # -S: no `site` import (~4 ms of every run); the boot puts the system's dist-packages on sys.path
        return [self.python, "-I", "-S", "-B", f"{box}/{Path(self.boot).name}", mode, f"{box}/main.py",
                str(lim.memory_mb << 20), str(math.ceil(timeout_s) + 1), str(lim.nproc),
                str(lim.max_output_bytes + 1), str(lim.nofile), "1" if self.seccomp else "0", *map(str, fds)]

    def _run(self, slot: _Slot, code: str, stdin: str, timeout_s: float, interact: Interact | None) -> RunResult:
        box = scratch = None
        pipes: list[int] = []
        try:
            # In the run the fds are renumbered: 0-2 stdio, then [status, program,] [request, response].
            extra: list[int] = []
            if self.bwrap:  # no files on the host: bwrap copies the program from a memfd, binds the boot
                status_r, status_w = os.pipe()
                prog = os.memfd_create("main.py")
                pipes += [status_r, status_w, prog]
                data = code.encode()
                while data:
                    data = data[os.write(prog, data):]
                os.lseek(prog, 0, os.SEEK_SET)
                extra += [status_w, prog]
            if interact is not None:
                req_r, req_w = os.pipe()
                resp_r, resp_w = os.pipe()
                pipes += [req_r, req_w, resp_r, resp_w]
                extra += [req_r, resp_w]
            chan = list(range(3 + len(extra) - 2, 3 + len(extra))) if interact else []
            mode = "serve" if interact else "script"
            if self.bwrap:
                codec = _codec_beside(self.boot)
                mounts = ["--ro-bind", self.boot, f"/box/{Path(self.boot).name}", "--ro-bind", codec,
                          f"/box/{Path(codec).name}", "--ro-bind-data", "4", "/box/main.py"]
                cmd = (_bwrap_args(self.bwrap, mounts, self.limits.scratch_mb << 20) + ["--json-status-fd", "3"]
                       + self._argv(mode, "/box", timeout_s, chan))
                cwd = None
            else:  # weak isolation: no namespaces, files in a host box dir, a scratch dir owned by the slot uid
                box = tempfile.mkdtemp(prefix="box-", dir=self.box_root)
                os.chmod(box, 0o755)
                Path(box, "main.py").write_text(code)
                for f in (self.boot, _codec_beside(self.boot)):
                    shutil.copyfile(f, Path(box, Path(f).name))
                scratch = tempfile.mkdtemp(prefix="ssp-scratch-")
                if slot.uid is not None:
                    os.chown(scratch, slot.uid, slot.uid)
                cmd, cwd = self._argv(mode, box, timeout_s, chan), scratch
            with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
                    tempfile.TemporaryFile() as ferr:
                fin.write(stdin.encode())
                fin.seek(0)
                res = self._launch(slot, cmd, cwd, [fin.fileno(), fout.fileno(), ferr.fileno(), *extra], pipes,
                                   timeout_s, interact)
                res.stdout, res.output_truncated = _read_capped(fout, self.limits.max_output_bytes)
                res.stderr, _ = _read_capped(ferr, 64 << 10)
            if self.bwrap:
                res.started = '"child-pid"' in _read_all(pipes[0])
            res.output_truncated = res.output_truncated or res.returncode == -signal.SIGXFSZ
            res.weak = list(self.missing)
            return res
        finally:
            for fd in pipes:
                with contextlib.suppress(OSError):
                    os.close(fd)
            for d in (box, scratch):
                if d:
                    shutil.rmtree(d, ignore_errors=True)

    def _launch(self, slot: _Slot, cmd: list[str], cwd: str | None, fds: list[int], pipes: list[int],
                timeout_s: float, interact: Interact | None) -> RunResult:
        oom0 = slot.cg.oom_kills() if slot.cg else 0
        t0 = time.monotonic()
        pid = slot.spawn(cmd, cwd, fds)
        for fd in fds[3:]:  # the run holds the child ends now; closing ours lets EOF reach both sides
            os.close(fd)
            pipes.remove(fd)
        res = RunResult(None, "", "")
        deadline = t0 + timeout_s
        try:
            if interact is not None:
                req_w, resp_r = pipes[-2], pipes[-1]  # [status_r,] req_w, resp_r
                try:
                    res.value = interact(Channel(req_w, resp_r, deadline, self.limits.max_output_bytes))
                    res.killed_by_us = True  # the harness has its verdict: nothing more to wait for
                except SandboxTimeout:
                    res.timed_out = True
                except (SandboxClosed, OutputLimit) as e:
                    # The channel is done with. A program that closed it by exiting gets a moment to report
                    # its own status; one that is still there (garbage on the channel, a reply too large) is
                    # killed now rather than waited out.
                    res.value = e
                    grace = 0.5 if isinstance(e, SandboxClosed) else 0.0
                    exited, res.returncode = slot.wait_status(min(grace, max(0.0, deadline - time.monotonic())))
                    res.killed_by_us = not exited
            if not res.killed_by_us and not res.timed_out and res.returncode is None:
                exited, res.returncode = slot.wait_status(max(0.0, deadline - time.monotonic()))
                res.timed_out = not exited
            if res.timed_out or res.killed_by_us:
                res.killed_by_us = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # the run's session; its pid namespace dies with bwrap
                slot.kill_run()
        finally:
            if res.returncode is None:  # also when `interact` raised something unexpected: never wait on a
                exited, res.returncode = slot.wait_status(0)  # program that is still serving
                if not exited:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    slot.kill_run()
                    res.returncode = slot.wait_status()[1]
            slot.kill_run()  # nothing of this run outlives it
            res.memory_exceeded = bool(slot.cg) and slot.cg.oom_kills() > oom0
            _reap_zombies()
        res.elapsed = time.monotonic() - t0
        return res


def _read_all(fd: int) -> str:
    chunks = []
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _read_capped(fh, cap: int) -> tuple[str, bool]:
    fh.seek(0)
    data = fh.read(cap + 1)
    return data[:cap].decode(errors="replace"), len(data) > cap
