"""Who runs a call, and for how long that claim lasts without word from them.

A runner claims with a secret token of its own making (only its SHA-256 is stored) and
gets a lease it renews while the body runs. Only the token's holder may renew the lease or
record the outcome. A lease that runs out, wherever the runner was, leaves the call in
doubt: it may or may not have happened.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket

DEFAULT_LEASE_SECONDS = 30.0


@functools.lru_cache(maxsize=1024)
def token_hash(token: str) -> str:
    """What is stored of a claim token. Cached: one claim's token is hashed when it is
    claimed, renewed and finished."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- who runs it -----------------------------------------------------------------------------


def _machine() -> str:
    """This kernel boot and PID namespace: the scope in which a pid means one process.

    A hostname is not enough (two hosts, or two containers, may share one), and a pid seen
    from another namespace means nothing here.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"
    return hashlib.sha256(f"{boot}|{namespace}".encode()).hexdigest()[:12]


_MACHINE = _machine()


_process: tuple[int, str] = (-1, "")  # pid, and its "host:pid:start-time:machine"


def owner_id() -> str:
    """host:pid:start-time:machine:nonce of one claim attempt, for people and for the one
    shortcut a lease allows: a runner on this machine whose process is gone is dead. The
    process part is read once per process (it costs a file read)."""
    global _process
    pid = os.getpid()
    if _process[0] != pid:
        _process = (pid, f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}:{_MACHINE}")
    return f"{_process[1]}:{os.urandom(4).hex()}"


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def certainly_dead(owner: str | None) -> bool:
    """True only when the owner ran in this boot and PID namespace and its process is gone
    (or its pid now belongs to another process). Anywhere else only the lease can tell."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 5 or parts[3] != _MACHINE or _MACHINE == "unknown":
        return False
    pid_text, ticks = parts[1], parts[2]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return ticks != "?" and _start_ticks(pid) != ticks
