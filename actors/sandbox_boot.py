"""Bootstrap run by the sandboxed /usr/bin/python3: set rlimits, install seccomp, then exec the program.

Usage inside the sandbox: python3 -I -B sandbox_boot.py PROGRAM.py MEM_BYTES CPU_S NPROC FSIZE NOFILE SECCOMP(0|1)
Standard library only (plus Debian's python3-seccomp); it never returns to the caller's code.
"""

import errno
import resource
import sys

BLOCKED = ["execve", "execveat", "setsid", "setpgid", "ptrace", "unshare", "setns", "mount", "umount2",
           "bpf", "pivot_root", "chroot", "keyctl", "add_key", "request_key", "perf_event_open",
           "process_vm_writev", "kexec_load", "init_module", "finit_module"]
BLOCKED_FAMILIES = [2, 10, 16, 17]  # AF_INET, AF_INET6, AF_NETLINK, AF_PACKET (no `import socket`: startup cost)


def set_limits(mem: int, cpu: int, nproc: int, fsize: int, nofile: int) -> None:
    for res, val in [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_NPROC, nproc),
                     (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NOFILE, nofile),
                     (resource.RLIMIT_CORE, 0)]:
        resource.setrlimit(res, (val, val))


def install_seccomp() -> None:
    sys.path.append("/usr/lib/python3/dist-packages")
    import seccomp  # Debian python3-seccomp

    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in BLOCKED:
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    for fam in BLOCKED_FAMILIES:
        f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, fam))
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # flags not filterable; glibc falls back to clone
    f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, 0x10000000, 0x10000000))
    f.load()


def main() -> None:
    prog, mem, cpu, nproc, fsize, nofile, use_seccomp = sys.argv[1:8]
    with open(prog) as fh:
        source = fh.read()
    set_limits(int(mem), int(cpu), int(nproc), int(fsize), int(nofile))
    if use_seccomp == "1":
        install_seccomp()
    sys.argv = [prog]
    code = compile(source, "main.py", "exec")
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(code, g)


if __name__ == "__main__":
    main()
