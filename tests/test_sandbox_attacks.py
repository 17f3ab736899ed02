"""Attack suite: untrusted programs that must not harm the host. Each test checks the host afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from actors.sandbox import Sandbox, SandboxLimits

REPO = Path(__file__).resolve().parents[1]
UID = 63200
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=TIMEOUT, memory_mb=256, max_output_bytes=1 << 20), uids=[UID])


def _uid_procs(uid: int = UID) -> list[str]:
    procs = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and f"\t{uid}\t" in Path(f"/proc/{p}/status").read_text().split("Uid:")[1][:40]:
                procs.append(p)
        except (OSError, IndexError):
            pass
    return procs


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    assert _uid_procs() == [], "a sandboxed process outlived its check"


def test_infinite_loop(sb):
    t0 = time.perf_counter()
    r = sb.run("while True:\n    pass\n")
    assert r.timed_out and time.perf_counter() - t0 < TIMEOUT + 2


def test_fork_bomb(sb):
    r = sb.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    assert r.returncode != 0
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes


def test_8gb_allocation(sb):
    r = sb.run("x = bytearray(8 << 30)\nprint('allocated')")
    assert r.returncode != 0 and "MemoryError" in r.stderr and "allocated" not in r.stdout


@pytest.mark.parametrize("target", ["/etc", str(REPO), "/tmp"])
def test_write_outside_scratch(sb, target):
    path = Path(target) / f"ssp_pwned_{uuid.uuid4().hex}"
    r = sb.run(f"open({str(path)!r}, 'w').write('x')\n")
    assert r.returncode != 0 and not path.exists()
    ok = sb.run("open('/scratch/f', 'w').write('x'); print(open('f').read())")
    assert ok.stdout.strip() == "x"  # the scratch dir itself is writable


def test_read_root_and_project(sb):
    r = sb.run("import os\nfor p in ['/root', '/work', '/home', '/etc']:\n    print(p, os.path.exists(p))\n")
    assert r.stdout.split() == ["/root", "False", "/work", "False", "/home", "False", "/etc", "False"]


def test_env_secret_not_visible(sb, monkeypatch):
    monkeypatch.setenv("SSP_TEST_SECRET", "hunter2")
    r = sb.run("import os; print(dict(os.environ))")
    assert "hunter2" not in r.stdout and "SSP_TEST_SECRET" not in r.stdout and r.returncode == 0


def test_tcp_connect_to_host_listener(sb):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    try:
        code = ("import socket\n"
                f"for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):\n"
                "    try:\n"
                f"        s = socket.socket(fam); s.settimeout(1); s.connect((host, {port})); print('connected')\n"
                "    except OSError as e:\n"
                "        print('blocked', e)\n")
        r = sb.run(code)
        assert "connected" not in r.stdout and "blocked" in r.stdout
        time.sleep(0.2)
        with pytest.raises(BlockingIOError):
            srv.accept()
    finally:
        srv.close()


def test_os_system_shell(sb):
    r = sb.run("import os, subprocess\nprint(os.system('echo SHELL_RAN'))\n"
               "try:\n    subprocess.run(['/bin/sh', '-c', 'echo SHELL_RAN'])\nexcept OSError as e:\n    print(e)\n")
    assert "SHELL_RAN" not in r.stdout and "Operation not permitted" in r.stdout


def test_child_left_running(sb):
    r = sb.run("import os, time\nif os.fork() == 0:\n    time.sleep(60)\nelse:\n    print('parent done')\n")
    assert r.stdout.strip() == "parent done" and not r.timed_out
    # the no_leftovers fixture checks that the sleeping child is gone


def test_setsid_escape(sb):
    r = sb.run("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('done')\n")
    assert not r.timed_out and r.returncode == 0


def test_100mb_stdout(sb):
    t0 = time.perf_counter()
    r = sb.run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n")
    assert r.output_truncated and len(r.stdout) <= 1 << 20 and time.perf_counter() - t0 < TIMEOUT + 2


LEADER_EXITS = ("import ctypes, threading, time\n"
                "threading.Thread(target=lambda: time.sleep(60)).start()\n"
                "ctypes.CDLL(None).syscall(60, 0)  # SYS_exit: only the main thread ends; the process is 'Z'\n")


def test_leader_thread_exits_worker_thread_left_running(sb):
    r = sb.run(LEADER_EXITS)
    assert r.timed_out  # it still runs; the no_leftovers fixture checks that it is gone after the kill
