"""Reading a file a user named: a regular file only, and never more than a stated size.

``/dev/zero`` never ends, a FIFO blocks until someone writes to it, and a directory or a
device is not a document. :func:`read_user_file` opens without blocking (``O_NONBLOCK``), asks
the open descriptor (not the name, which could change in between) whether it is a regular file,
and reads at most ``max_bytes`` (one byte more tells a file that grew past the cap). Every
command that reads a file the user names (images, ``--info-file``, RAP databases, vectors,
configs) should read it through here.
"""

from __future__ import annotations

import os
import stat

from rap_edge.errors import InvalidInputError

__all__ = ["read_regular_file", "read_user_file"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_user_file(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refusing anything else or anything larger.

    Args:
        path: The file the user named (symbolic links are followed).
        max_bytes: The most bytes it may hold.
        what: What it is, for the messages (``image``, ``info file``, ...).

    Raises:
        InvalidInputError: starting with the path, if it does not exist, cannot be opened or
            read, is not a regular file (a directory, FIFO, device or socket), or holds more
            than ``max_bytes`` bytes.
    """
    try:
        return read_regular_file(path, max_bytes=max_bytes, what=what)
    except InvalidInputError as err:
        msg = f"{path}: {err}"
        raise InvalidInputError(msg) from err


def read_regular_file(
    path: str | os.PathLike[str], *, max_bytes: int, what: str = "file"
) -> bytes:
    """:func:`read_user_file` with messages that leave the path out (for callers that name it).

    Raises:
        InvalidInputError: as :func:`read_user_file`.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as err:
        msg = f"no such {what}"
        raise InvalidInputError(msg) from err
    except IsADirectoryError as err:
        msg = "is a directory, not a regular file"
        raise InvalidInputError(msg) from err
    except OSError as err:
        msg = f"cannot open the {what} ({err.strerror or err})"
        raise InvalidInputError(msg) from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            msg = f"is {_kind(info.st_mode)}, not a regular file"
            raise InvalidInputError(msg)
        if info.st_size > max_bytes:
            msg = f"{info.st_size} bytes is over the {max_bytes} byte limit for the {what}"
            raise InvalidInputError(msg)
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            msg = f"grew past the {max_bytes} byte limit for the {what} while being read"
            raise InvalidInputError(msg)
        return b"".join(chunks)
    except OSError as err:
        msg = f"cannot read the {what} ({err.strerror or err})"
        raise InvalidInputError(msg) from err
    finally:
        os.close(fd)
