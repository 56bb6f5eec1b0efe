"""Everything about the mount point itself: checks before mounting, the daemon's pid
record and control socket paths, the blobfs mounts in the mount table, unmounting (a busy
mount is refused naming the processes that hold it: :mod:`blobfs.mount.holders`), and the
kernel's read-ahead for the mount.

The checks run before anything is started so that common mistakes get a one-line reason
instead of a libfuse error: the path is missing or not a directory, something is already
mounted there (including a dead FUSE mount, whose ``stat`` fails with ENOTCONN), or FUSE
itself is unavailable.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from blobfs.mount.holders import holders

log = logging.getLogger(__name__)


class MountError(Exception):
    """A mount that cannot happen, with a one-line reason for the user."""

    def __init__(self, reason: str, exit_code: int = 1) -> None:
        super().__init__(reason)
        self.exit_code = exit_code


def _dead_mount(path: Path) -> MountError:
    return MountError(f"mount point {path} is a dead FUSE mount; run 'blobfs umount {path}' first")


def check_mountpoint(path: Path) -> None:
    """Raise :class:`MountError` unless ``path`` is an empty place to mount on."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MountError(f"mount point {path} does not exist", 66) from None
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise _dead_mount(path) from None
        raise MountError(f"mount point {path}: {e.strerror}") from None
    if not path.is_dir():
        raise MountError(f"mount point {path} is not a directory")
    if is_mounted(path, st.st_dev):
        # stat() of a dead FUSE mount can still succeed from the kernel's attribute cache;
        # statfs is never cached, so it tells a dead daemon from a live one.
        try:
            os.statvfs(path)
        except OSError as e:
            if e.errno == errno.ENOTCONN:
                raise _dead_mount(path) from None
        raise MountError(f"mount point {path} is already mounted")


def is_mounted(path: Path, dev: int | None = None) -> bool:
    """Whether something is mounted on ``path`` (by the mount table, then by device)."""
    real = os.path.realpath(path)
    if any(entry.path == real for entry in mount_table()):
        return True
    if dev is None:
        return False
    try:
        return os.stat(os.path.dirname(real) or "/").st_dev != dev
    except OSError:
        return False


@dataclass(frozen=True)
class MountEntry:
    """One line of the mount table: where, what file system, from what source, and (FUSE)
    the user who mounted it."""

    path: str
    fstype: str
    source: str
    uid: int | None

    @property
    def is_blobfs(self) -> bool:
        return self.fstype == "fuse.blobfs"


def mount_table() -> list[MountEntry]:
    """The mounts this process sees (``/proc/self/mountinfo``; empty if unreadable)."""
    out: list[MountEntry] = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            fstype, source, options = fields[sep + 1], fields[sep + 2], fields[sep + 3]
        except (ValueError, IndexError):
            continue
        uid = None
        for option in options.split(","):
            if option.startswith("user_id="):
                uid = int(option[8:]) if option[8:].isdigit() else None
        out.append(MountEntry(_unescape(fields[4]), fstype, _unescape(source), uid))
    return out


def blobfs_mounts() -> list[MountEntry]:
    """The blobfs mounts in the mount table, in its order."""
    return [entry for entry in mount_table() if entry.is_blobfs]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def check_fuse() -> None:
    """Raise :class:`MountError` if this process cannot use FUSE."""
    try:
        if not stat.S_ISCHR(os.stat("/dev/fuse").st_mode):
            raise MountError("FUSE is unavailable: /dev/fuse is not a character device")
        fd = os.open("/dev/fuse", os.O_RDWR)
        os.close(fd)
    except FileNotFoundError:
        raise MountError("FUSE is unavailable: /dev/fuse does not exist") from None
    except OSError as e:
        raise MountError(f"FUSE is unavailable: /dev/fuse: {e.strerror}") from None
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        raise MountError("FUSE is unavailable: fusermount3 is not installed (apt install fuse3)")


# -- the daemon's pid record -----------------------------------------------------------------


def runtime_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/blobfs")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "blobfs" if xdg else Path(f"/tmp/blobfs-{os.getuid()}")


def _digest(real: str) -> str:
    return hashlib.sha1(real.encode()).hexdigest()[:16]


def pid_file(mountpoint: Path) -> Path:
    return runtime_dir() / f"mount-{_digest(os.path.realpath(mountpoint))}.pid"


def control_socket_name(real: str) -> str:
    """The file name of the control socket of the mount on ``real`` (the mount point's
    real path, as the mount table has it), in the runtime directory of the user who mounted
    it.  Takes the path resolved: resolving a mount point stats the mount itself."""
    return f"mount-{_digest(real)}.sock"


def secure_runtime_dir() -> Path:
    """:func:`runtime_dir`, made if missing; :class:`PermissionError` unless it is a
    directory of this user that no one else may enter or change (a socket in it must not
    be replaceable by someone else)."""
    path = runtime_dir()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not a directory of uid {os.geteuid()}")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_pid(mountpoint: Path) -> Path:
    path = pid_file(mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(f"{os.getpid()}\n{os.path.realpath(mountpoint)}\n")
    return path


def read_pid(mountpoint: Path) -> int | None:
    try:
        pid = int(pid_file(mountpoint).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is as good as gone (it is our child and has not been reaped yet).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def unmount(mountpoint: Path, *, timeout: float, lazy: bool = False) -> None:
    """Unmount with ``fusermount3 -u`` and wait for the daemon serving it to exit."""
    pid = read_pid(mountpoint)
    if is_mounted(mountpoint):
        cmd = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [str(mountpoint)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            reason = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            if "busy" in reason[0].lower():
                raise _busy(mountpoint, alive=pid is not None)
            raise MountError(f"cannot unmount {mountpoint}: {reason[0]}")
    elif pid is None:
        raise MountError(f"{mountpoint} is not mounted")
    if pid is not None:
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise MountError(
                    f"unmounted, but the daemon (pid {pid}) is still running after "
                    f"{timeout:.0f} s (pending uploads?)"
                )
            time.sleep(0.05)


def _busy(mountpoint: Path, *, alive: bool) -> MountError:
    """The refusal of a busy mount, saying who holds it and what to do."""
    state = "" if alive else " (its daemon is gone)"
    return MountError(
        f"cannot unmount {mountpoint}{state}: it is busy, {holders(mountpoint).describe()}. "
        f"Let those processes leave it (cd elsewhere, close the files), or run "
        f"'blobfs umount -z {mountpoint}' to detach it now; it is then freed once the last "
        "of them lets go."
    )


def set_kernel_readahead(dev: int, size: int) -> bool:
    """Set the kernel's read-ahead for the mount's device (needs root).

    FUSE mounts start at the kernel default of 128 KiB; with 1 MiB a pyfuse3 daemon served
    2082 instead of 967 MiB/s here, because fewer, larger reads reach the daemon.
    """
    path = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    try:
        path.write_text(str(max(4, size // 1024)))
    except OSError as e:
        log.info("cannot set kernel read-ahead (%s): %s", path, e)
        return False
    return True
