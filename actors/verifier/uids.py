"""Sandbox uids: one unprivileged uid per concurrent slot, reserved host-wide by a lock file (never 0, never an
account's uid or gid, never in /etc/subuid or /etc/subgid), so two verifier pools on one host never share one."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
from pathlib import Path

UID_BASE = 62000  # sandbox uids are searched from here upwards (VerifierConfig.uid_base)
UID_SPAN = 4096
UID_LOCKS = Path("/run/ssp-sandbox/uids")


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
