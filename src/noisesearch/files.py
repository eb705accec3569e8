"""Files users keep (DESIGN convention 14): written atomically and locked against a second writer. Below every
layer that writes such files (drivers, experiments), so that they share one implementation."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from noisesearch.errors import NoiseSearchError

try:  # the lock: fcntl.flock where there is one (POSIX), msvcrt.locking on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def write_atomically(path: Path, text: str | bytes, errors: str = "strict") -> None:
    """Write `path` (bytes as they are, text as UTF-8 encoded with `errors`: "backslashreplace" writes what cannot
    be encoded, such as a path that is no UTF-8, as escapes) through a uniquely named temporary file in its
    directory (.NAME.*.tmp) and an atomic replace (a reader sees the old file or the new one, never half of one; no
    other file is touched, and the temporary file is removed if the write fails). An existing file keeps its
    permissions."""
    path = Path(path)
    data = text if isinstance(text, bytes) else text.encode("utf-8", errors)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as f:
        temporary = Path(f.name)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            temporary.unlink(missing_ok=True)
            raise
    try:
        with contextlib.suppress(OSError):
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _try_lock(handle) -> None:  # type: ignore[no-untyped-def]
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)


@contextmanager
def exclusive_lock(lock: Path, busy: str, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created if missing) while the block runs, or raise the one-line
    NoiseSearchError `busy` if another process holds it. The lock goes with the process, even if it is killed.
    With `remove`, the lock file is deleted when the block ends (a locker that opened it meanwhile sees that it
    is gone and tries again, so two never hold it at once); else it stays."""
    while True:
        try:
            handle = lock.open("a")
        except OSError as err:
            raise NoiseSearchError(f"cannot create the lock file {lock} ({err.strerror})") from None
        try:
            _try_lock(handle)
        except BlockingIOError:
            handle.close()
            raise NoiseSearchError(busy) from None
        except OSError as err:
            handle.close()
            if fcntl is None:  # pragma: no cover  (msvcrt raises a PermissionError when the lock is taken)
                raise NoiseSearchError(busy) from None
            raise NoiseSearchError(f"cannot lock {lock} ({err.strerror})") from None
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        mine = os.fstat(handle.fileno())
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            break
        handle.close()  # removed by its last holder after we opened it: lock the new one
    try:
        yield
    finally:
        if remove and fcntl is not None:
            lock.unlink(missing_ok=True)
        handle.close()


def read_json_file(path: Path, what: str) -> Any:
    """The JSON data of a user's file, or a one-line NoiseSearchError naming it as `what` (unreadable, not UTF-8
    text, not JSON, or nested deeper than Python's recursion limit)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise NoiseSearchError(f"cannot read {what} {path} ({err.strerror})") from None
    except UnicodeDecodeError:
        raise NoiseSearchError(f"{what} {path} is not UTF-8 text (not JSON)") from None
    except json.JSONDecodeError as err:
        raise NoiseSearchError(f"{what} {path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except RecursionError:
        raise NoiseSearchError(f"{what} {path} is JSON nested too deeply to read") from None


def probe_writable(folder: Path) -> None:
    """Create and remove a uniquely named empty file in `folder`; an OSError says this process cannot write there."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".noisesearch-write-test-")
    os.close(fd)
    os.unlink(probe)


def check_writable(path: Path, what: str) -> None:
    """A one-line NoiseSearchError unless this process can write the file `path`, or create files in the
    directory `path`, tried by opening it (a file, unchanged) or creating and removing a file in it."""
    try:
        if path.is_dir():
            probe_writable(path)
        else:
            path.open("r+b").close()
    except OSError as err:
        raise NoiseSearchError(f"{what}: cannot write {'in ' if path.is_dir() else ''}{path} ({err.strerror})"
                               ) from None


def check_writable_folder(out: Path, what: str) -> None:
    """A one-line NoiseSearchError unless `out` is, or can be made, a directory this process can write in: not
    a file, not under one."""
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        under = "" if existing == out else f" is under {existing}, which"
        raise NoiseSearchError(f"{what}{under} is a file: give a directory")
    check_writable(existing, what)
