"""One cgroup per sandbox run: memory (with swap), processes and CPU limited for the run as a whole.

cgroup v2 where the host delegates memory, pids and cpu to us; else cgroup v1 with writable `memory`, `pids`
and `cpu` hierarchies; else None (the sandbox falls back to per-process rlimits and warns once). A run's
group is created under this process's own group in each hierarchy (so the host's limits still apply above
it), filled by the launcher before the sandbox starts, and killed and removed after the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _own_paths() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path in that hierarchy."""
    out = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


class RunCgroup:
    """A fresh group (one per run): `add(pid)` before the program starts, `kill()` and `remove()` after."""

    def __init__(self, dirs: list[Path], version: int):
        self.dirs, self.version = dirs, version

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (self.dirs[0] / name).read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def peak_bytes(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        with contextlib.suppress(OSError, ValueError):
            return int((self.dirs[0] / name).read_text())
        return 0

    def kill(self, reap=None, keep: set[int] = frozenset(), timeout_s: float = 5.0) -> None:
        """SIGKILL everything in the group but `keep` until nothing else is left (`reap` collects zombies
        re-parented to us)."""
        deadline = time.monotonic() + timeout_s
        if self.version == 2 and not keep:
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
        while True:
            pids = set()
            for d in self.dirs:
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            pids -= keep
            if not pids or time.monotonic() > deadline:
                return
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            if reap:
                reap()
            time.sleep(0.001)

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(200):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # the last exiting tasks leave the group within a few ms
                    time.sleep(0.005)


class Cgroups:
    """Makes RunCgroups for one sandbox. `Cgroups.detect()` returns None when the host gives us none."""

    def __init__(self, parents: list[Path], version: int):
        self.parents, self.version = parents, version

    @classmethod
    def detect(cls) -> Cgroups | None:
        own = _own_paths()
        v2 = ROOT / "cgroup.controllers"
        if v2.exists() and {"memory", "pids", "cpu"} <= set(v2.read_text().split()):
            parent = ROOT / "ssp-sandbox"
            try:
                parent.mkdir(exist_ok=True)
                (ROOT / "cgroup.subtree_control").write_text("+memory +pids +cpu")
                (parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
                return cls._checked([parent], 2)
            except OSError:
                return None
        parents = []
        for c in ("memory", "pids", "cpu"):
            base = ROOT / c
            if c not in own or not (base / "cgroup.procs").exists():
                return None
            parents.append(base / own[c].lstrip("/") / "ssp-sandbox")
        try:
            for p in parents:
                p.mkdir(exist_ok=True)
            return cls._checked(parents, 1)
        except OSError:
            return None

    @classmethod
    def _checked(cls, parents: list[Path], version: int) -> Cgroups | None:
        cg = cls(parents, version)
        try:  # a real create/limit/remove, so a read-only or half-mounted hierarchy is caught here
            run = cg.create(f"probe-{os.getpid()}", 64, 16, 1.0)
            run.remove()
        except OSError:
            return None
        return cg

    def create(self, name: str, memory_mb: int, nproc: int, cpus: float) -> RunCgroup:
        dirs = [p / name for p in self.parents]
        for d in dirs:
            if d.exists():  # left by a launcher that died mid-run: empty it first
                RunCgroup([d], self.version).kill()
                RunCgroup([d], self.version).remove()
            d.mkdir()
        run = RunCgroup(dirs, self.version)
        mem, quota = str(memory_mb << 20), str(max(1000, int(cpus * PERIOD_US)))
        try:
            if self.version == 2:
                d = dirs[0]
                for f, v in (("memory.max", mem), ("memory.swap.max", "0"), ("pids.max", str(nproc)),
                             ("cpu.max", f"{quota} {PERIOD_US}"), ("memory.oom.group", "1")):
                    (d / f).write_text(v)
            else:
                mem_d, pids_d, cpu_d = dirs
                (mem_d / "memory.limit_in_bytes").write_text(mem)
                if (mem_d / "memory.memsw.limit_in_bytes").exists():  # swap accounting on: no swapping out
                    (mem_d / "memory.memsw.limit_in_bytes").write_text(mem)
                (pids_d / "pids.max").write_text(str(nproc))
                (cpu_d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (cpu_d / "cpu.cfs_quota_us").write_text(quota)
        except OSError:
            run.remove()
            raise
        return run
