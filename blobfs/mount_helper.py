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
``data_dir=PATH`` -> ``BLOBFS_DATA_DIR``, ``cluster=NAME``), and runs ``blobfs mount`` in
the background, which returns once the mount is ready -- so ``mount -a`` and systemd's
mount units see a live mount or a clear error.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from .options import split_options

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
    cmd = [sys.executable, "-m", "blobfs.daemon", source, where]
    if options:
        cmd += ["-o", ",".join(options)]
    if cluster:
        cmd += ["--cluster", cluster]
    os.environ.update(env)
    # mount(8) may run us with a minimal environment; the daemon needs nothing more.
    os.execv(sys.executable, cmd)


@click.command("install-helper")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Install under this root (for packaging and tests).",
)
@click.option(
    "--systemd/--no-systemd",
    default=False,
    help="Also install the blobfs@.service template unit.",
)
def install_helper_command(root: Path, systemd: bool) -> None:
    """Install /sbin/mount.fuse.blobfs (for mount -t fuse.blobfs and /etc/fstab) and
    /usr/local/bin/blobfs, optionally the systemd unit."""
    bindir = Path(sys.executable).parent
    helper = shutil.which("mount.fuse.blobfs", path=str(bindir)) or shutil.which(
        "mount.fuse.blobfs"
    )
    blobfs = shutil.which("blobfs", path=str(bindir)) or shutil.which("blobfs")
    if helper is None or blobfs is None:
        raise click.ClickException("blobfs is not installed with its scripts (pip install)")
    links = {
        root / "sbin" / "mount.fuse.blobfs": Path(helper),
        root / "usr" / "local" / "bin" / "blobfs": Path(blobfs),
    }
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.resolve() == target.resolve():
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
        click.echo(f"{link} -> {target}")
    if systemd:
        unit = Path(__file__).resolve().parent.parent / "systemd" / "blobfs@.service"
        if not unit.exists():
            raise click.ClickException(f"unit file not found at {unit}")
        dest = root / "etc" / "systemd" / "system" / "blobfs@.service"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(unit.read_text())
        (root / "etc" / "blobfs").mkdir(parents=True, exist_ok=True)
        click.echo(f"{dest}")
