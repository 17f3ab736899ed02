"""A sandbox slot's spawner: a small root process that lives in the slot's cgroup and starts each run there.

Why: a process forked inside a cgroup is born in it; moving one in (v1 `cgroup.procs`) waits ~11 ms on an RCU
grace period, which was more than the whole rest of the sandbox's overhead. So the launcher moves this
process in once, and every run is forked from it.

Protocol on the SOCK_SEQPACKET socket whose fd is argv[1], one request at a time:
  -> {"argv": [...], "env": {...}, "cwd": str|None, "uid": int|None} with fds [stdin, stdout, stderr, extra...]
     (in the child the fds become 0, 1, 2, 3, ...; the child is a new session, then drops to `uid`)
  <- {"pid": n}                    once forked
  <- {"status": waitstatus_to_exitcode}   once that child exits
Run by the launcher with the venv python: `python -I -B spawner.py FD LAUNCHER_PID`; it ends when the
launcher closes the socket or dies. Standard library only.
"""

import fcntl
import json
import os
import select
import signal
import socket
import sys


def _child(req: dict, fds: list[int]) -> None:
    os.setsid()
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for fd in fds]
    for i, fd in enumerate(high):
        os.dup2(fd, i)
    os.closerange(len(fds), 1 << 16)
    if req["uid"] is not None:
        os.setgroups([])
        os.setgid(req["uid"])
        os.setuid(req["uid"])
    if req["cwd"]:
        os.chdir(req["cwd"])
    os.execve(req["argv"][0], req["argv"], req["env"])


def _wait(pid: int, parent: int) -> int:
    """Wait for the run; if the launcher dies meanwhile, kill the run's session and go. (Not
    PR_SET_PDEATHSIG: that fires when the launcher *thread* that started us exits.)"""
    fd = os.pidfd_open(pid)
    while not select.select([fd], [], [], 0.5)[0]:
        if os.getppid() != parent:
            os.killpg(pid, signal.SIGKILL)
            os._exit(0)
    os.close(fd)
    return os.waitpid(pid, 0)[1]


def main() -> None:
    parent = int(sys.argv[2])
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:  # the OOM killer takes the run's processes, never this
            fh.write("-1000")
    except OSError:
        pass
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 16)
        if not msg:
            return
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            try:
                _child(req, fds)
            finally:
                os._exit(127)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())
        status = _wait(pid, parent)
        sock.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())


if __name__ == "__main__":
    main()
