"""``mount.fuse.blobfs``: lets mount(8) and ``/etc/fstab`` mount blobfs.

mount(8) runs ``/sbin/mount.<type>`` for ``-t <type>``, so ``mount -t fuse.blobfs SOURCE
DIR -o OPTS`` (and the fstab line ``blob:bucket /mnt/x fuse.blobfs _netdev,allow_other 0
0``) runs ``/sbin/mount.fuse.blobfs SOURCE DIR -o OPTS``.  fuse3's generic ``mount.fuse3``
would instead run a program named ``blobfs`` as ``blobfs SOURCE DIR -o OPTS``, which is not
our command line, so blobfs installs its own helper: ``blobfs install-helper`` links
``/sbin/mount.fuse.blobfs`` to this entry point.

The helper drops the options that belong to mount(8), systemd and fstab (``_netdev``,
``nofail``, ``noauto``, ``x-systemd.*``, ``defaults``, ``rw``, atime flags, ...), turns the
helper-only ones into the environment (``config=PATH`` -> ``BLOBFS_CONFIG``,
``data_dir=PATH`` -> ``BLOBFS_DATA_DIR``, ``cluster=NAME``), and starts the daemon in the
background as ``blobfs mount`` does, returning once the mount is ready -- so ``mount -a``
and systemd's mount units see a live mount or a clear error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from blobfs.mount.launch import launch
from blobfs.options import OptionError, split_options

#: Options that mean something to mount(8), fstab or systemd but not to the daemon.
_DROP_EXACT = {
    "defaults",
    "rw",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "nofail",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
    "sync",
    "async",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "loud",
    "silent",
}
_DROP_PREFIXES = ("x-", "_", "comment=")
_HELPER_ENV = {"config": "BLOBFS_CONFIG", "data_dir": "BLOBFS_DATA_DIR"}


def filter_options(items: list[str]) -> tuple[list[str], dict[str, str], str | None]:
    """Split fstab options into (daemon options, environment, cluster)."""
    keep: list[str] = []
    env: dict[str, str] = {}
    cluster: str | None = None
    for item in split_options(items):
        name, sep, value = item.partition("=")
        if item in _DROP_EXACT or item.startswith(_DROP_PREFIXES):
            continue
        if name in _HELPER_ENV and sep:
            env[_HELPER_ENV[name]] = value
        elif name == "cluster" and sep:
            cluster = value
        else:
            keep.append(item)
    return keep, env, cluster


def parse_argv(argv: list[str]) -> tuple[str, str, list[str]]:
    """``SOURCE DIR [-o OPTS] [-n] [-s] [-f] [-v] [-t TYPE]`` as mount(8) passes them."""
    positional: list[str] = []
    options: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-o" and i + 1 < len(argv):
            options.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("-o") and len(arg) > 2:
            options.append(arg[2:])
        elif arg == "-t" and i + 1 < len(argv):
            i += 1  # the type; we know it
        elif arg in ("-n", "-s", "-f", "-v", "-r", "-w"):
            if arg == "-r":
                options.append("ro")
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 2:
        raise SystemExit(
            "usage: mount.fuse.blobfs SOURCE MOUNTPOINT [-o OPTIONS]  (see docs/MOUNT.md)"
        )
    return positional[0], positional[1], options


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``mount.fuse.blobfs``."""
    source, where, raw = parse_argv(list(sys.argv[1:] if argv is None else argv))
    options, env, cluster = filter_options(raw)
    os.environ.update(env)
    try:
        code = launch(source, Path(where), options, foreground=False, cluster=cluster)
    except OptionError as e:
        raise SystemExit(f"mount.fuse.blobfs: {e}") from e
    raise SystemExit(code)
