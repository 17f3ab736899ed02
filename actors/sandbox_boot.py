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

import _json  # the C half of json: no `re` import (json itself costs ~9 ms of startup in here)
import binascii
import errno
import resource
import sys

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


# ---------------------------------------------------------------- plain data across the boundary

_ITERS = ("generator", "map", "filter", "zip", "enumerate", "reversed", "list_iterator", "tuple_iterator",
          "range_iterator", "str_ascii_iterator", "set_iterator", "dict_keyiterator", "itertools.chain")


def _exact(t, module, name):
    m = sys.modules.get(module)
    return m is not None and t is getattr(m, name, None)


def encode(x, refs=None):
    """A JSON-able tagged form of `x`. Exact types only: a subclass of int/list/... is not plain data and,
    like any other object, stays on this side as {"$ref": n} (refs is None: a TypeError)."""
    t = type(x)
    if x is None or t is bool or t is int or t is str:
        return x
    if t is float:
        return x if x == x and x not in (float("inf"), float("-inf")) else {"$float": repr(x)}
    if t is list:
        return [encode(v, refs) for v in x]
    if t is tuple:
        return {"$tuple": [encode(v, refs) for v in x]}
    if t is set or t is frozenset:
        return {"$" + t.__name__: [encode(v, refs) for v in x]}
    if t is dict or any(_exact(t, "collections", n) for n in ("Counter", "OrderedDict", "defaultdict")):
        return {"$dict": [[encode(k, refs), encode(v, refs)] for k, v in dict.items(x)]}
    if t is bytes:
        return {"$bytes": binascii.b2a_base64(x, newline=False).decode()}
    if t is complex:
        return {"$complex": [encode(x.real), encode(x.imag)]}
    if t is range:
        return {"$range": [x.start, x.stop, x.step]}
    if _exact(t, "fractions", "Fraction"):
        return {"$fraction": [x.numerator, x.denominator]}
    if _exact(t, "decimal", "Decimal"):
        return {"$decimal": str(x)}
    if t.__name__ in ("dict_keys", "dict_values", "dict_items"):
        return {"$" + t.__name__: [encode(v, refs) for v in x]}
    if refs is not None and t.__name__ in _ITERS:
        return {"$iter": [encode(v, refs) for v in x]}
    if refs is None:
        raise TypeError(f"{t.__name__} is not plain data")
    refs.append(x)
    return {"$ref": len(refs) - 1}


def decode(o, ref):
    """The value of a tagged form; `ref(n)` gives what {"$ref": n} stands for. Builds plain types only."""
    t = type(o)
    if o is None or t in (bool, int, float, str):
        return o
    if t is list:
        return [decode(v, ref) for v in o]
    if t is not dict or len(o) != 1:
        raise ValueError("malformed value")
    (tag, v), = o.items()
    if tag == "$float":
        return float(v) if v in ("nan", "inf", "-inf") else _bad(tag)
    if tag == "$ref":
        return ref(v) if type(v) is int else _bad(tag)
    if type(v) is not list and tag not in ("$bytes", "$decimal"):
        return _bad(tag)
    items = [decode(x, ref) for x in v] if type(v) is list else v
    if tag == "$tuple":
        return tuple(items)
    if tag in ("$set", "$frozenset"):
        return (set if tag == "$set" else frozenset)(items)
    if tag in ("$dict", "$dict_items"):
        d = dict(_pair(p) for p in items)
        return d if tag == "$dict" else d.items()
    if tag == "$dict_keys":
        return dict.fromkeys(items).keys()
    if tag == "$dict_values":
        return dict(enumerate(items)).values()
    if tag == "$iter":
        return iter(items)
    if tag == "$bytes" and type(v) is str:
        return binascii.a2b_base64(v.encode())
    if tag == "$decimal" and type(v) is str:
        from decimal import Decimal

        return Decimal(v)
    if tag == "$complex" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(*items)
    if tag == "$range" and len(items) == 3 and all(type(x) is int for x in items):
        return range(*items)
    if tag == "$fraction" and len(items) == 2 and all(type(x) is int for x in items) and items[1]:
        from fractions import Fraction

        return Fraction(*items)
    return _bad(tag)


def _pair(p):
    if type(p) is not list or len(p) != 2:
        raise ValueError("malformed dict item")
    return p


def _bad(tag):
    raise ValueError(f"malformed value for tag {tag!r}")


# ---------------------------------------------------------------- the two modes

class _ScanContext:  # what _json.make_scanner reads from a json.JSONDecoder
    strict, object_hook, object_pairs_hook = True, None, None
    parse_float, parse_int, parse_constant = float, int, float


def loads(text: str):
    obj, end = _json.make_scanner(_ScanContext())(text, 0)
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return obj


def dumps(obj) -> str:
    return "".join(_json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",", False, False,
                                      False)(obj, 0))


def serve(g: dict, req_fd: int, resp_fd: int) -> None:
    """Answer the harness: {"op": "call"|"getattr"|"bool", "target": name or ref id, ...} -> {"ok": v} | {"raise": [t, m]}.
    Never a comparison: that would hand this process the expected value."""
    import os

    refs = []
    inp = os.fdopen(req_fd, "r", encoding="utf-8")
    out = os.fdopen(resp_fd, "w", encoding="utf-8")

    def target(t):
        if type(t) is int:
            return refs[t]
        if t not in g:
            raise NameError(f"name {t!r} is not defined by the solution")
        return g[t]

    names = [k for k in g if not k.startswith("__")]
    sys.stdout.flush()
    out.write(dumps({"ready": True, "names": names}) + "\n")
    out.flush()
    for line in inp:
        try:
            req = loads(line)
            obj = target(req["target"])
            if req["op"] == "getattr":
                val = getattr(obj, req["attr"])
            elif req["op"] == "bool":  # unary, plain result: no more than returning that bool would give
                val = bool(obj)
            else:
                args = decode(req["args"], refs.__getitem__)
                kwargs = dict(decode(req["kwargs"], refs.__getitem__))
                val = obj(*args, **kwargs)
            reply = {"ok": encode(val, refs)}
        except Exception as e:  # the solution's own error: reported by type name and message
            reply = {"raise": [type(e).__name__, str(e)[:500]]}
        try:
            text = dumps(reply)
        except (ValueError, TypeError, RecursionError) as e:
            text = dumps({"raise": [type(e).__name__, str(e)[:500]]})
        for stream in (sys.stdout, sys.stderr):  # the run is killed once the harness is done: keep its prints
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 (the solution may have replaced or closed them)
                pass
        out.write(text + "\n")
        out.flush()


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
