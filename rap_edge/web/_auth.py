"""The web app's password, login sessions, CSRF tokens, login rate limit and instance lock.

* The password is stored hashed (scrypt, a random 16-byte salt, n=2**14, r=8, p=1) in
  ``<memory>/web-password.json`` (mode 0600); the clear text is never written.
* A login makes a random session id (a cookie, HttpOnly, SameSite=Strict) with its own CSRF
  token; every form carries the token and every state-changing request must bring it back.
* Failed logins are limited per client address (:class:`LoginLimiter`).
* :class:`InstanceLock` keeps a second ``rap-edge serve`` off the same memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rap_edge.errors import InvalidInputError, MemoryLockedError, StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "LOCK_FILE",
    "PASSWORD_FILE",
    "InstanceLock",
    "LoginLimiter",
    "Sessions",
    "has_password",
    "set_password",
    "verify_password",
]

PASSWORD_FILE = "web-password.json"  # noqa: S105 - a file name
LOCK_FILE = "web.lock"
MIN_PASSWORD = 8
_N, _R, _P = 2**14, 8, 1


def _hash(password: str, salt: bytes, n: int = _N, r: int = _R, p: int = _P) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)


def set_password(memory: Path, password: str) -> Path:
    """Store ``password`` hashed in the memory folder; returns the file.

    Raises:
        InvalidInputError: shorter than 8 characters.
    """
    if len(password) < MIN_PASSWORD:
        msg = f"the password must have at least {MIN_PASSWORD} characters"
        raise InvalidInputError(msg)
    salt = secrets.token_bytes(16)
    record = {
        "algorithm": "scrypt",
        "n": _N,
        "r": _R,
        "p": _P,
        "salt": salt.hex(),
        "hash": _hash(password, salt).hex(),
    }
    path = memory / PASSWORD_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    return path


def has_password(memory: Path) -> bool:
    """Whether a password was set for this memory's web app."""
    return (memory / PASSWORD_FILE).is_file()


def verify_password(memory: Path, password: str) -> bool:
    """Whether ``password`` is the stored one (constant-time compare).

    Raises:
        StoreError: the password file is damaged.
    """
    path = memory / PASSWORD_FILE
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        salt, want = bytes.fromhex(rec["salt"]), bytes.fromhex(rec["hash"])
        n, r, p = int(rec["n"]), int(rec["r"]), int(rec["p"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError) as err:
        msg = f"{path}: unreadable password file ({err}); set it again with --set-password"
        raise StoreError(msg) from err
    return hmac.compare_digest(_hash(password, salt, n, r, p), want)


@dataclass(slots=True)
class _Login:
    csrf: str
    last: float


class Sessions:
    """Logged-in browser sessions (in memory: a restart logs everyone out)."""

    def __init__(self, idle_s: float = 7 * 24 * 3600) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._logins: dict[str, _Login] = {}

    def create(self) -> tuple[str, str]:
        """A new session: its id (the cookie) and CSRF token."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._logins[sid] = _Login(csrf, time.time())
        return sid, csrf

    def csrf(self, sid: str | None) -> str | None:
        """The CSRF token of a live session (None: no such session or expired)."""
        if not sid:
            return None
        now = time.time()
        with self._lock:
            login = self._logins.get(sid)
            if login is None:
                return None
            if now - login.last > self.idle_s:
                del self._logins[sid]
                return None
            login.last = now
            return login.csrf

    def drop(self, sid: str | None) -> None:
        """Log a session out."""
        with self._lock:
            self._logins.pop(sid or "", None)


class LoginLimiter:
    """At most ``attempts`` failed logins per client address within ``window_s`` seconds."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(client)
            if q is None:
                return 0.0
            while q and now - q[0] > self.window_s:
                q.popleft()
            if len(q) < self.attempts:
                return 0.0
            return max(0.0, self.window_s - (now - q[0]))

    def failed(self, client: str) -> None:
        """Count a failed attempt."""
        with self._lock:
            if len(self._failures) > 10_000:  # noqa: PLR2004 - bound the table
                self._failures.clear()
            self._failures.setdefault(client, deque()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        """Forget a client's failures."""
        with self._lock:
            self._failures.pop(client, None)


class InstanceLock:
    """An exclusive lock on ``<memory>/web.lock`` for the life of one ``rap-edge serve``."""

    def __init__(self, memory: Path) -> None:
        self.path = memory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            MemoryLockedError: another ``rap-edge serve`` holds it (its pid is named).
        """
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            msg = (
                f"another `rap-edge serve` (pid {pid}) is already serving the memory "
                f"{self.path.parent}; stop it first, or give another --memory"
            )
            raise MemoryLockedError(msg) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (safe to call twice)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
