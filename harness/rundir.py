"""Run-directory safety: one writer at a time, never adopt a foreign directory, never follow a link.

    RunLock             an OS file lock (fcntl.flock) on DIR/.opdiff-lock, held by the one process
                        writing DIR (run, run --resume, merge, report into DIR, pytest --opdiff-out);
                        a second writer is refused with the holder's pid, host and command
    claim_new(dir)      create DIR atomically (or take an empty one), lock it, refuse one that holds
                        a run or anything else; returns the held RunLock
    lock_existing(dir)  lock a run directory (one with run.json) for rewriting, e.g. resume
    atomic_write(path)  temp file in the same directory, fsync, rename: a reader (or a kill) sees
                        the old file or the new one, never half of one; a link at `path` is replaced,
                        never followed
    open_append(path)   append-only handle that refuses a symlink (O_NOFOLLOW)
    refuse_symlinks(d)  any symlink inside d is an error naming it

The lock is advisory and per open file (flock), so it also holds between two writers in one
process. It is released when its holder closes it or dies (the kernel drops it, SIGKILL included):
a stale lock file is harmless. On NFS, flock may only exclude processes of one host.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path

from .errors import UsageError

LOCK_NAME = ".opdiff-lock"
#: seconds a refused writer waits for the holder to finish writing its pid into the lock file
#: (it is written right after the lock is taken).
HOLDER_READ_WAIT_S = 0.5

try:  # fcntl is POSIX-only; without it there is no lock, and we say so rather than pretend
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _holder_text(path: Path) -> str:
    deadline = time.monotonic() + HOLDER_READ_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as f:
                raw = f.read(4096)
            info = json.loads(raw.decode("utf-8"))
            cmd = " ".join(str(a) for a in info.get("command") or [])
            return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: {cmd}"
        except (OSError, ValueError, AttributeError):
            if time.monotonic() >= deadline:
                return "a process that has not yet written its pid"
            time.sleep(0.02)


class RunLock:
    """The exclusive writer lock of one run directory. Use as a context manager or call release()."""

    def __init__(self, run_dir: str | os.PathLike, created: bool = False):
        self.dir = Path(run_dir)
        self.path = self.dir / LOCK_NAME
        self.created = created  # we made the directory: remove it again if nothing was written
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if fcntl is None:  # pragma: no cover
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UsageError(f"{self.path}: is a symlink; refusing to use it as the run lock") from None
                raise UsageError(f"{self.dir}: cannot create the run lock ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise UsageError(f"{self.path}: cannot lock ({exc.strerror})") from None
                raise UsageError(f"{self.dir}: locked by another writer ({_holder_text(self.path)}); "
                                 f"wait for it to finish, or choose another directory") from None
            # The holder may have unlinked the file between our open and our flock (release() of an
            # unused directory): then we locked a dead inode. Retry on the current one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            if not self.dir.is_dir():
                raise UsageError(f"{self.dir}: removed while waiting for its lock")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        if self.created and _only_lock(self.dir):  # a run refused before it wrote anything
            with contextlib.suppress(OSError):
                self.path.unlink()
                self.dir.rmdir()
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _only_lock(d: Path) -> bool:
    try:
        return [e.name for e in os.scandir(d)] == [LOCK_NAME]
    except OSError:
        return False


def foreign_entries(d: Path) -> list[str]:
    """Names in d other than the lock file, sorted."""
    return sorted(e.name for e in os.scandir(d) if e.name != LOCK_NAME)


def claim_new(run_dir: str | os.PathLike, what: str = "--out", allow: tuple = ()) -> RunLock:
    """Create (or take an empty) run directory and lock it. A directory holding a run, or anything
    else but the names in `allow`, is refused: a stray results.jsonl must never join a new run."""
    d = Path(run_dir)
    if d.exists() and not d.is_dir():
        raise UsageError(f"{what} {d}: exists and is not a directory")
    d.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(d)  # atomic: of two writers racing here, exactly one creates it
        created = True
    except FileExistsError:
        created = False
    lock = RunLock(d, created=created).acquire()
    try:  # checked under the lock, so no other writer can add a file in between
        names = [n for n in foreign_entries(d) if n not in allow]
        if "run.json" in names:
            raise UsageError(f"{what} {d}: already holds a run (run.json); use --resume {d} to finish it, "
                             f"--replace to move it aside, or choose a new directory")
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise UsageError(f"{what} {d}: not an empty directory, and not an opdiff run directory (no run.json, "
                             f"holds {shown}); refusing to adopt it: choose a new or empty directory")
    except BaseException:
        lock.release()
        raise
    return lock


def lock_existing(run_dir: str | os.PathLike, what: str = "--resume") -> RunLock:
    """Lock an existing run directory (it must hold run.json and no symlink) for rewriting."""
    d = Path(run_dir)
    if not d.exists():
        raise UsageError(f"{what} {d}: no such directory")
    if not d.is_dir():
        raise UsageError(f"{what} {d}: not a directory")
    lock = RunLock(d).acquire()
    try:
        if not (d / "run.json").is_file() or (d / "run.json").is_symlink():
            raise UsageError(f"{what} {d}: not a run directory (no run.json)")
        refuse_symlinks(d)
    except BaseException:
        lock.release()
        raise
    return lock


def refuse_symlinks(d: str | os.PathLike) -> None:
    """A symlink anywhere inside a run directory could redirect a write outside it: refuse."""
    for root, dirs, files in os.walk(d):  # os.walk does not descend into linked directories
        for name in dirs + files:
            p = Path(root) / name
            if p.is_symlink():
                raise UsageError(f"{p}: is a symlink (to {os.readlink(p)}); a run directory must hold only "
                                 f"regular files; remove the link")


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file in the same directory, fsynced, then renamed."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")  # encoding errors surface before anything is touched
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """A binary file object that replaces `path` on a clean exit and vanishes on an error."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"{path}: directory {path.parent} does not exist")
    # mkstemp: O_EXCL with a random name, so a planted link at a fixed temp name cannot be followed
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp makes 0600; a run directory is meant to be shared
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # rename replaces a link at `path` itself, never its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _mode_for(path: Path) -> int:
    """The mode a plain open() would give: the existing file's, else 0666 less the umask."""
    try:
        st = os.stat(path, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o777
    except OSError:
        pass
    umask = os.umask(0o022)  # the only way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_append(path: str | os.PathLike):
    """Text handle appending to `path` (created if missing); a symlink there is an error."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path}: is a symlink; refusing to append through it") from None
        raise
    return os.fdopen(fd, "a", encoding="utf-8")
