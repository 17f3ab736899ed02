"""What the host gives the sandbox: the isolation probe, bubblewrap's arguments, the boot files compiled once
by the sandbox's python, the per-launcher box folder, and the reaping of sandboxes whose launcher died first
(this process is their subreaper)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from actors.verifier.cgroup import Cgroups

BOOT = Path(__file__).with_name("sandbox_boot.py")
CODEC = Path(__file__).with_name("sandbox_codec.py")  # imported by the boot from its own folder
SYSTEM_PYTHON = "/usr/bin/python3"
PR_SET_CHILD_SUBREAPER = 36
ENV = {"PATH": "/usr/bin", "HOME": "/scratch", "TMPDIR": "/scratch", "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
LIVE: set[int] = set()  # pids of sandboxes being waited on by some thread (never reaped by the sweeper)
LIVE_LOCK = threading.Lock()
_probe_cache: dict[tuple[str, str], list[str]] = {}
log = logging.getLogger(__name__)


def set_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def bwrap_args(bwrap: str, box: list[str], scratch_bytes: int) -> list[str]:
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
    for k, v in ENV.items():
        args += ["--setenv", k, v]
    return args


def user_kw(uid: int | None) -> dict:
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


def probe_isolation(bwrap: str = "bwrap", python: str = SYSTEM_PYTHON, uid: int | None = None) -> list[str]:
    """Names of the isolation properties this host cannot provide (empty when all are there)."""
    key = (bwrap, python)
    if key in _probe_cache:
        return _probe_cache[key]
    missing = []
    run_uid = uid if os.geteuid() == 0 else None
    if not set_subreaper():
        missing.append("child subreaper: prctl(PR_SET_CHILD_SUBREAPER) failed")
    if not os.access(python, os.X_OK):
        missing.append(f"system python: {python} not found")
    else:
        chk = "import sys; sys.path.append('/usr/lib/python3/dist-packages'); import seccomp"
        try:
            rc = subprocess.run([python, "-I", "-c", chk], capture_output=True, env=ENV,
                                **user_kw(run_uid)).returncode
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
            r = subprocess.run(bwrap_args(path, ["--ro-bind", box, "/box"], 1 << 20) + ["/usr/bin/true"],
                               capture_output=True,
                               env=ENV, **user_kw(run_uid))
        reap_zombies()
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            missing.append(f"namespaces: user/net/pid namespaces unavailable to bwrap ({err})")
    _probe_cache[key] = missing
    return missing


_warned_no_cgroup = False


def cgroups_or_warn() -> Cgroups | None:
    global _warned_no_cgroup
    cg = Cgroups.detect() if os.geteuid() == 0 else None
    if cg is None and not _warned_no_cgroup:
        _warned_no_cgroup = True
        log.warning("sandbox: no usable cgroup (v2 with memory/pids/cpu delegated, or writable v1 memory, "
                    "pids and cpu hierarchies); falling back to per-process rlimits, so memory and CPU are "
                    "limited per process, not per run")
    return cg


def box_root() -> str:
    """/tmp/ssp-sandbox/<pid>; leftovers of dead launchers (e.g. a killed actor) are removed."""
    base = Path(tempfile.gettempdir(), "ssp-sandbox")
    base.mkdir(mode=0o755, exist_ok=True)
    for d in base.iterdir():
        if d.name.isdigit() and not Path(f"/proc/{d.name}").exists():
            shutil.rmtree(d, ignore_errors=True)
    mine = base / str(os.getpid())
    mine.mkdir(mode=0o755, exist_ok=True)
    return str(mine)


def compile_boot(python: str, where: str) -> str:
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


def codec_beside(boot: str) -> str:
    """The compiled codec next to the compiled boot (see compile_boot)."""
    return str(Path(boot).with_name(CODEC.stem + Path(boot).suffix))


def sandbox_init(pid: int) -> bool:
    """Whether `pid` is pid 1 of a pid namespace below ours: a sandboxed program (bwrap --as-pid-1)."""
    with contextlib.suppress(OSError, IndexError):
        nspid = Path(f"/proc/{pid}/status").read_text().split("NSpid:")[1].split("\n")[0].split()
        return len(nspid) > 1 and nspid[-1] == "1"
    return False


def reap_zombies() -> None:
    """Reap zombie bwrap processes, and sandboxed programs (pid 1 in their sandbox) whose bwrap died first,
    re-parented to us (subreaper) that no thread is waiting on."""
    with LIVE_LOCK:
        for task in os.listdir("/proc/self/task"):
            try:
                children = Path(f"/proc/self/task/{task}/children").read_text().split()
            except OSError:
                continue
            for pid in map(int, children):
                if pid in LIVE:
                    continue
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                comm, state = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2]
                if state == "Z" and (comm == "bwrap" or sandbox_init(pid)):
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
