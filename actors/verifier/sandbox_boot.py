"""Bootstrap run by the sandboxed /usr/bin/python3: set rlimits, install seccomp, then run the program.

Usage inside the sandbox:
    python3 -I -B boot.py script PROGRAM MEM CPU NPROC FSIZE NOFILE SECCOMP
    python3 -I -B boot.py serve  PROGRAM MEM CPU NPROC FSIZE NOFILE SECCOMP REQ_FD RESP_FD
`script` runs PROGRAM as __main__ (stdin/stdout problems). `serve` runs PROGRAM as module `solution`, then
answers call requests from the trusted harness (one JSON line each on REQ_FD, one reply on RESP_FD). Only
plain data crosses, in the tagged JSON of `encode`/`decode` below; anything else stays here behind a `$ref`.
This process never sees a test or an expected value: the harness compares. Standard library only (plus
Debian's python3-seccomp). The harness imports `encode`/`decode` from this same file.
"""

import errno
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the codec is mounted beside this file
from sandbox_codec import Decoder, Encoder, dumps, loads  # noqa: E402

# The filter is an allowlist of what CPython and its standard library use (files, pipes, threads, fork,
# multiprocessing, unix sockets, signals, timers, mmap, sqlite, ctypes); every other syscall fails with EPERM.
# Out on purpose: execve (no other program), setsid/setpgid, namespaces, mounts, ptrace, process_vm_*, SysV
# IPC, io_uring, bpf, keyrings, perf, userfaultfd, splice, mlock, seccomp itself. A name this libseccomp or
# arch lacks is skipped (aarch64 has no open/stat/fork).
ALLOWED = """read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek close close_range
dup dup2 dup3 pipe pipe2 fcntl flock fsync fdatasync ftruncate truncate fallocate fadvise64 sendfile readahead
copy_file_range open openat openat2 creat stat fstat lstat newfstatat statx statfs fstatfs access faccessat
faccessat2 readlink readlinkat getdents getdents64 getcwd chdir fchdir mkdir mkdirat rmdir unlink unlinkat
rename renameat renameat2 link linkat symlink symlinkat chmod fchmod fchmodat chown fchown fchownat lchown utime
utimes utimensat futimesat umask getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr brk mmap munmap
mprotect mremap madvise msync mincore memfd_create fork vfork wait4 waitid exit exit_group restart_syscall
getpid getppid gettid getuid geteuid getgid getegid getresuid getresgid getgroups getpgid getpgrp getsid
set_tid_address set_robust_list rseq futex futex_waitv kill tkill tgkill pidfd_open pidfd_send_signal
sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_getscheduler sched_get_priority_max
sched_get_priority_min getpriority setpriority getrusage times getcpu prlimit64 getrlimit setrlimit uname
sysinfo rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait rt_sigsuspend sigaltstack pause
alarm getitimer setitimer signalfd signalfd4 timer_create timer_settime timer_gettime timer_getoverrun
timer_delete timerfd_create timerfd_settime timerfd_gettime clock_gettime clock_getres clock_nanosleep
nanosleep gettimeofday time poll ppoll select pselect6 epoll_create epoll_create1 epoll_ctl epoll_wait
epoll_pwait epoll_pwait2 eventfd eventfd2 getrandom connect bind listen accept accept4 sendto recvfrom sendmsg
recvmsg sendmmsg recvmmsg shutdown getsockname getpeername setsockopt getsockopt""".split()
# ioctl: TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIONCLEX, FIOCLEX (isatty, terminal size, os.set_inheritable).
IOCTLS = [0x5401, 0x5413, 0x541B, 0x5421, 0x5450, 0x5451]
# prctl: PR_SET/GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET/GET_NAME, PR_GET_NO_NEW_PRIVS, PR_SET_VMA (glibc).
PRCTLS = [1, 2, 3, 15, 16, 39, 0x53564D41]
AF_UNIX = 1
NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
S_IFMT, S_IFIFO = 0o170000, 0o010000


def set_limits(mem: int, cpu: int, nproc: int, fsize: int, nofile: int) -> None:
    for res, val in [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_NPROC, nproc),
                     (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NOFILE, nofile),
                     (resource.RLIMIT_CORE, 0)]:
        resource.setrlimit(res, (val, val))


def install_seccomp() -> None:
    import seccomp  # Debian python3-seccomp (/usr/lib/python3/dist-packages, on sys.path since main())

    allow, eq = seccomp.ALLOW, seccomp.EQ
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in ALLOWED:
        try:
            f.add_rule(allow, name)
        except (RuntimeError, ValueError, OSError):  # a name this libseccomp/arch does not know
            pass
    for name in ("socket", "socketpair"):  # AF_UNIX only (no IP, netlink, packet, vsock, ...)
        f.add_rule(allow, name, seccomp.Arg(0, eq, AF_UNIX))
        f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), name, seccomp.Arg(0, seccomp.NE, AF_UNIX))
    f.add_rule(allow, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, NS_FLAGS, 0))  # no new namespace of any kind
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # flags not filterable; glibc falls back to clone
    for cmd in IOCTLS:
        f.add_rule(allow, "ioctl", seccomp.Arg(1, eq, cmd))
    for opt in PRCTLS:
        f.add_rule(allow, "prctl", seccomp.Arg(0, eq, opt))
    for name, arg in (("mknodat", 2), ("mknod", 1)):  # os.mkfifo, never a device
        try:
            f.add_rule(allow, name, seccomp.Arg(arg, seccomp.MASKED_EQ, S_IFMT, S_IFIFO))
        except (RuntimeError, ValueError, OSError):  # no mknod on aarch64
            pass
    f.load()


# ---------------------------------------------------------------- serving the harness (the codec: sandbox_codec.py)

def _raised(e):
    """[type name, message, [[module, qualname] of its classes]]: the harness raises the first one it has."""
    try:
        text = str(e)[:500]
    except Exception:  # noqa: BLE001 (the solution's __str__)
        text = ""
    return [type(e).__name__, text, [[c.__module__, c.__qualname__] for c in type(e).__mro__[:12]]]


def _snapshot(x):
    """What a call may change in container `x`, by identity (an argument's state is sent back only if changed)."""
    if type(x) is set:
        return set(x)
    return list(x) if type(x) is list else [y for kv in dict.items(x) for y in kv]


def _changed(x, before):
    if type(x) is set:
        return x != before
    now = _snapshot(x)
    return len(now) != len(before) or any(p is not q for p, q in zip(now, before))


class _Pull:
    """An iterator the harness passed: each item is asked of the harness when the solution wants it."""

    def __init__(self, link, n):
        self.link, self.n, self.done = link, n, False

    def __iter__(self):
        return self

    def __next__(self):
        if self.done:
            raise StopIteration
        msg = self.link.ask({"pull": self.n})
        if "item" in msg:
            return self.link.decoder()(msg["item"])
        self.done = True
        if "raise" in msg:
            import builtins

            name, text = (list(msg["raise"]) + ["", ""])[:2]
            cls = getattr(builtins, str(name), None)
            ok = isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, StopIteration)
            raise (cls if ok else RuntimeError)(f"{text}" if ok else f"{name}: {text}")
        raise StopIteration


class _Link:
    """serve()'s end of the channel. Re-entrant: while a pull waits for its item, the harness's requests made
    meanwhile (its iterator may call the solution) are answered."""

    def __init__(self, g, inp, out):
        self.g, self.inp, self.out, self.refs = g, inp, out, []

    def other(self, x):  # not plain data: stays here behind a handle (an iterator is read lazily through it)
        self.refs.append(x)
        return {"$iter" if hasattr(type(x), "__next__") else "$ref": len(self.refs) - 1}

    def decoder(self, seed=()):
        return Decoder(self.refs.__getitem__, lambda n: _Pull(self, n), seed)

    def write(self, msg):
        try:
            text = dumps(msg)
        except (ValueError, TypeError, RecursionError) as e:
            text = dumps({"raise": _raised(e)})
        for stream in (sys.stdout, sys.stderr):  # the run is killed once the harness is done: keep its prints
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 (the solution may have replaced or closed them)
                pass
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, msg):
        self.write(msg)
        while True:
            line = self.inp.readline()
            if not line:
                raise EOFError("the harness is gone")
            req = loads(line)
            if "op" not in req:
                return req
            self.write(self.answer(req))

    def run(self):
        for line in iter(self.inp.readline, ""):
            try:
                reply = self.answer(loads(line))
            except (ValueError, RecursionError) as e:
                reply = {"raise": _raised(e)}
            self.write(reply)

    def answer(self, req):
        try:
            t = req["target"]
            if type(t) is not int and t not in self.g:
                raise NameError(f"name {t!r} is not defined by the solution")
            obj = self.refs[t] if type(t) is int else self.g[t]
            if req["op"] == "getattr":
                return {"ok": Encoder(self.other)(getattr(obj, req["attr"]))}
            if req["op"] == "bool":  # unary, plain result: no more than returning that bool would give
                return {"ok": bool(obj)}
            if req["op"] == "next":
                return self.next(obj, req["n"])
            return self.call(obj, req)
        except Exception as e:  # the solution's own error: its class names and message
            return {"raise": _raised(e)}

    def call(self, fn, req):
        dec = self.decoder()
        args, kwargs = dec(req["args"]), dict(dec(req["kwargs"]))
        before = [_snapshot(x) for x in dec.objs] if req.get("back", True) else []  # back: the harness looks
        val = fn(*args, **kwargs)
        enc = Encoder(self.other, dec.objs)  # an argument met again is {"$same": its number}
        changed = [i for i, (x, b) in enumerate(zip(dec.objs, before)) if _changed(x, b)]
        reply = {"args": [[i, enc.state(dec.objs[i])] for i in changed]}  # arguments' state after the call
        reply["ok"] = enc(val)
        return reply

    def next(self, it, n):
        """Up to n items (fewer once 2 ms have gone: a lazy iterator is not run far ahead of its reader)."""
        import time

        enc, items, t0 = Encoder(self.other), [], time.perf_counter()
        try:
            while len(items) < min(max(int(n), 1), 1024):
                items.append(enc(next(it)))
                if time.perf_counter() - t0 > 0.002:
                    break
        except StopIteration:
            return {"items": items, "stop": True}
        except Exception as e:  # noqa: BLE001 (raised by the iterator: after the items before it)
            return {"items": items, "raise": _raised(e)}
        return {"items": items}


def serve(g: dict, req_fd: int, resp_fd: int) -> None:
    """Answer the harness: {"op": "call"|"getattr"|"bool"|"next", "target": name or ref id, ...} -> {"ok": v,
    "args": [[i, state]...]} | {"items": [...]} | {"raise": [type, message, classes]}; {"pull": n} asks the
    harness for the next item of an iterator it passed. Never a comparison: that would hand this process the
    expected value."""
    import os

    link = _Link(g, os.fdopen(req_fd, "r", encoding="utf-8"), os.fdopen(resp_fd, "w", encoding="utf-8"))
    link.write({"ready": True, "names": [k for k in g if not k.startswith("__")]})
    link.run()


def main() -> None:
    v = sys.version_info  # what `site` would add (started with -S: importing site costs ~4 ms a run)
    sys.path += [f"/usr/local/lib/python{v.major}.{v.minor}/dist-packages", "/usr/lib/python3/dist-packages"]
    mode, prog, mem, cpu, nproc, fsize, nofile, use_seccomp = sys.argv[1:9]
    fds = [int(x) for x in sys.argv[9:11]]
    with open(prog) as fh:
        source = fh.read()
    set_limits(int(mem), int(cpu), int(nproc), int(fsize), int(nofile))
    if use_seccomp == "1":
        install_seccomp()
    sys.argv = [prog]
    g = {"__name__": "__main__" if mode == "script" else "solution", "__builtins__": __builtins__}
    if mode == "script":
        exec(compile(source, "main.py", "exec"), g)
        return
    import os

    req_fd, resp_fd = fds
    try:
        exec(compile(source, "main.py", "exec"), g)
    except BaseException as e:  # noqa: BLE001 (SystemExit too: the solution never got to answer)
        os.write(resp_fd, (dumps({"load_error": [type(e).__name__, str(e)[:500]]}) + "\n").encode())
        raise
    serve(g, req_fd, resp_fd)


if __name__ == "__main__":
    main()
