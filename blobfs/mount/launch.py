"""Starting a mount: checks, then the daemon in this process or detached.

``blobfs mount``, the ``mount.fuse.blobfs`` helper and the detached daemon itself all come
through :func:`launch`.  In the background case the daemon is started again as
``python -P -m blobfs.mount ... --foreground --ready-fd N`` and this process waits on the
pipe: it returns 0 only once the mount answers requests, or non-zero with the daemon's
one-line reason (:mod:`blobfs.mount.notify`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from blobfs.mount import mountpoint
from blobfs.mount.mountpoint import MountError
from blobfs.mount.notify import ReadyPipe, wait_ready
from blobfs.options import absolute_paths, parse_options

#: How long ``blobfs mount`` waits for the daemon to become ready.
READY_TIMEOUT = 120.0

#: Environment variables naming files or directories the daemon uses (the sdk's configuration
#: and registry, the cache): a relative one is made absolute for the daemon, which runs in /.
_PATH_VARIABLES = (
    "BLOBFS_CONFIG",
    "BLOBFS_DATA_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
)


def launch(
    source: str,
    where: Path,
    items: list[str],
    *,
    foreground: bool,
    cluster: str | None,
    ready_fd: int | None = None,
) -> int:
    """Mount ``source`` on ``where`` with the option ``items``; return the exit code.

    Raises :class:`~blobfs.options.OptionError` for a bad option (a usage error, which the
    caller reports in its own way).  Everything else is reported on stderr (and on the
    ready pipe, when there is one) and becomes the exit code.
    """
    options = parse_options(items)
    where = where.absolute()
    try:
        mountpoint.check_mountpoint(where)
        mountpoint.check_fuse()
    except MountError as e:
        if ready_fd is not None:
            ReadyPipe(ready_fd).failed(str(e))
        print(f"blobfs mount: {e}", file=sys.stderr)
        return e.exit_code
    if foreground:
        # Imported here: pyfuse3, trio and the whole file system load only in the daemon.
        from blobfs.mount.daemon import run_foreground

        return run_foreground(source, where, options, cluster=cluster, ready_fd=ready_fd)
    return start_background(
        source, where, absolute_paths(items), cluster=cluster, log_file=options.log_file
    )


def _daemon_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in _PATH_VARIABLES:
        if env.get(name):
            env[name] = str(Path(env[name]).absolute())
    return env


def start_background(
    source: str, where: Path, option_items: list[str], *, cluster: str | None, log_file: Path | None
) -> int:
    """Start the daemon detached and wait until it is ready; return the exit code.

    ``option_items`` must name paths absolutely (:func:`~blobfs.options.absolute_paths`)."""
    read_fd, write_fd = os.pipe()
    # -P: ``-m`` would put the working directory first on sys.path, so a ``blobfs`` or
    # ``sdk`` directory where the user happens to stand would be imported instead of ours.
    cmd = [sys.executable, "-P", "-m", "blobfs.mount", source, str(where), "--foreground"]
    cmd += ["--ready-fd", str(write_fd)]
    if option_items:
        cmd += ["-o", ",".join(option_items)]
    if cluster:
        cmd += ["--cluster", cluster]
    stderr = open(log_file, "ab") if log_file else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(write_fd,),
            start_new_session=True,
            # A daemon keeps no directory busy (the user's may be on a file system that is
            # to be unmounted).
            cwd="/",
            env=_daemon_environment(),
            close_fds=True,
        )
    finally:
        os.close(write_fd)
        if log_file:
            stderr.close()  # type: ignore[union-attr]
    reason = wait_ready(read_fd, READY_TIMEOUT)
    if reason is None:
        return 0
    if not reason:
        code = proc.poll()
        reason = f"the daemon exited (status {code}) before the mount was ready"
    elif proc.poll() is None and "did not become ready" in reason:
        proc.terminate()
    print(f"blobfs mount: {reason}", file=sys.stderr)
    return 1


__all__ = ["READY_TIMEOUT", "launch", "start_background"]
