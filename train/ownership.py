"""One owner per run or study directory: an exclusive lock held for a command's life.

Every command that writes a run directory (``train``, ``resume``, ``eval``, rank 0 of a run under torchrun,
every run of a study in whichever worker trains it) or a study directory (``reproduce``, ``compare-priors``)
first :func:`claim`\\ s it, before it writes anything there and before it reads any data; a second command
that asks for a directory in use is refused at once, naming the process that holds it.

The lock is an advisory ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``DIR/.infodropout.lock`` (created if
absent, never deleted: deleting a lock file races with a process about to lock it). The kernel drops a
flock when the last descriptor of its open file is closed, which happens when the process ends, however
it ends (an exception, Ctrl-C, ``kill -9``, the machine's OOM killer): on a local file system a lock is
never stale, and nothing has to be cleaned up after a crash. The file also holds the owner's pid and
command line, for the message of a refused command (what it says may be a dead process's; the lock
itself is what counts).

Within one process a claim is re-entrant (counted): a study's in-process run, ``eval`` locking the run
directory before :meth:`~infodropout.train.run.Trainer.from_run_dir` locks it again, a test that resumes
a run it still holds. It guards against other processes, not against threads of one process.

On NFS (Linux 2.6.12 and later) ``flock`` is emulated with whole-file POSIX locks through the NFS lock
manager (NLM for NFSv3, the protocol's own locks for NFSv4): two clients then exclude each other as
here, provided the server supports locking. A client that crashes or loses the server keeps its lock
until the server reclaims it (NFSv4: when the client's lease expires, 90 s by default; NFSv3: when
the client reboots, or by hand), so a directory can look "in use" for that long after its owner died.
With the ``nolock`` or ``local_lock=flock`` mount options the lock is local to each machine, and two
machines can then own the same directory: keep a study's ``--out`` on storage with working locks
(Lustre: mount with ``flock``), or give each machine its own ``--out``.
"""

import contextlib
import errno
import fcntl
import os
import shlex
import sys
import threading
from pathlib import Path

from .errors import DirectoryInUse, NotWritable, os_reason
from .files import LOCK_NAME  # the lock file inside every owned directory

_HELD: dict[str, "_Lock"] = {}  # this process's locks by directory (real path)
_GUARD = threading.Lock()


class _Lock:
    def __init__(self, fd: int):
        self.fd, self.count = fd, 0


class Ownership:
    """This process's claim on a directory (see :func:`claim`); ``release`` gives it back (idempotent),
    and so does leaving a ``with`` block.

    :ivar path: the directory.
    :ivar created: whether this claim created the directory (see :meth:`abandon`).
    """

    def __init__(self, path: Path, key: str, created: bool):
        self.path, self._key, self.created, self._released = path, key, created, False

    def release(self) -> None:
        with _GUARD:
            if self._released:
                return
            self._released = True
            lock = _HELD[self._key]
            lock.count -= 1
            if lock.count == 0:
                del _HELD[self._key]
                os.close(lock.fd)  # drops the flock

    def abandon(self) -> None:
        """Release, and remove the directory where this claim created it and it still holds nothing but
        the lock file (a command that failed before writing anything leaves nothing behind)."""
        if self.created and self._only_holder() and _entries(self.path) == {LOCK_NAME}:
            (self.path / LOCK_NAME).unlink(missing_ok=True)  # while holding it: a newcomer is refused, not misled
            self.release()
            with contextlib.suppress(OSError):
                self.path.rmdir()
        self.release()

    def _only_holder(self) -> bool:
        with _GUARD:
            lock = _HELD.get(self._key)
            return not self._released and lock is not None and lock.count == 1

    def __enter__(self) -> "Ownership":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _entries(path: Path) -> set[str]:
    try:
        return {p.name for p in path.iterdir()}
    except OSError:
        return set()


def claim(directory, what: str = "run directory", create: bool = True) -> Ownership:
    """Own ``directory`` for this process until :meth:`Ownership.release` (or the process's end).

    :param what: how messages name the directory (``"run directory"``, ``"study directory"``).
    :param create: make the directory (and its parents) if it does not exist; else it must exist.
    :raises NotWritable: the directory cannot be created, or its lock file cannot be written.
    :raises DirectoryInUse: another process holds it.
    """
    path = Path(directory)
    created = False
    if create and not path.is_dir():
        try:
            path.mkdir(parents=True)
            created = True
        except FileExistsError:
            if not path.is_dir():
                raise NotWritable(f"{what} {path}: is a file, not a directory") from None
        except OSError as err:
            raise NotWritable(f"{what} {path}: cannot be created ({os_reason(err)})") from None
    key = os.path.realpath(path)
    with _GUARD:
        held = _HELD.get(key)
        if held is None:
            held = _HELD[key] = _Lock(_lock(path, what))
        held.count += 1
    return Ownership(path, key, created)


def _lock(path: Path, what: str) -> int:
    """A descriptor of ``path``'s lock file holding an exclusive flock, with this process's name written in."""
    lock_path = path / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise NotWritable(f"{what} {path}: no such directory") from None
        raise NotWritable(f"{what} {path}: cannot be written ({os_reason(err)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        raise DirectoryInUse(
            f"{what} {path} is in use by another command{owner}: wait for it to end, or choose another directory"
        ) from None
    except OSError as err:  # e.g. ENOLCK: a network file system without locking
        os.close(fd)
        raise NotWritable(f"{what} {path}: cannot be locked ({os_reason(err)})") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {shlex.join(sys.argv)}\n".encode(), 0)
    except OSError:
        pass  # the owner's name is a courtesy; the lock is what counts (a full disk still locks)
    return fd


def _read_owner(fd: int) -> str:
    """`` (process PID: COMMAND)`` from a lock file, or nothing where it says nothing."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return ""
    command = command.splitlines()[0] if command else ""
    return f" (process {pid}: {command[:120]})" if command else f" (process {pid})"
