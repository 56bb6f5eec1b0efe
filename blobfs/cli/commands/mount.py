"""``blobfs mount``, ``blobfs umount`` and ``blobfs install-helper``.

The work is :mod:`blobfs.mount`'s; this module is their command line.  Loaded only when one
of them is asked for (:class:`blobfs.cli.main.Group`), since the daemon's dependencies are
not light.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from blobfs.mount import mountpoint
from blobfs.mount.launch import launch
from blobfs.mount.mountpoint import MountError
from blobfs.options import OptionError, split_options

#: Where ``install-helper --systemd`` puts the documentation the unit's Documentation= names.
DOC_DIR = Path("/usr/local/share/doc/blobfs")
#: How long ``blobfs umount`` waits for the daemon to exit (uploads may be pending).
UMOUNT_TIMEOUT = 600.0


@click.command("mount")
@click.argument("source")
@click.argument("mount_point", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "options",
    multiple=True,
    metavar="OPT[,OPT...]",
    help="Mount options (ro, allow_other, uid=, gid=, umask=, cache_dir=, cache_size=, "
    "memory=, attr_ttl=, dir_ttl=, readahead=, log_level=, log_file= ...; see docs/MOUNT.md).",
)
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground (for systemd).")
@click.option("--ready-fd", type=int, hidden=True)
@click.option("--cluster", "cluster_opt", hidden=True)
@click.pass_context
def mount_command(
    ctx: click.Context,
    source: str,
    mount_point: Path,
    options: tuple[str, ...],
    foreground: bool,
    ready_fd: int | None,
    cluster_opt: str | None,
) -> None:
    """Mount bucket (or prefix) SOURCE, e.g. blob:my-bucket, on directory MOUNT_POINT.

    Returns once the mount is ready; `blobfs umount MOUNT_POINT` unmounts it.
    """
    cluster = cluster_opt or getattr(ctx.obj, "cluster", None)
    try:
        code = launch(
            source,
            mount_point,
            split_options(list(options)),
            foreground=foreground,
            cluster=cluster,
            ready_fd=ready_fd,
        )
    except OptionError as e:
        raise click.UsageError(str(e)) from e
    ctx.exit(code)


@click.command("umount")
@click.argument("mount_point", type=click.Path(path_type=Path))
@click.option(
    "--timeout",
    type=float,
    default=UMOUNT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the daemon to finish and exit.",
)
@click.option("-z", "--lazy", is_flag=True, help="Detach even if the mount is busy.")
@click.pass_context
def umount_command(ctx: click.Context, mount_point: Path, timeout: float, lazy: bool) -> None:
    """Unmount a blobfs mount and wait for its daemon to exit."""
    try:
        mountpoint.unmount(mount_point.absolute(), timeout=timeout, lazy=lazy)
    except MountError as e:
        click.echo(f"blobfs umount: {e}", err=True)
        ctx.exit(e.exit_code)


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
    /usr/local/bin/blobfs; optionally the systemd unit, with the documentation it names in
    /usr/local/share/doc/blobfs."""
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
        source = Path(__file__).resolve().parents[3]
        unit = source / "systemd" / "blobfs@.service"
        if not unit.exists():
            raise click.ClickException(f"unit file not found at {unit}")
        dest = root / "etc" / "systemd" / "system" / "blobfs@.service"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(unit.read_text())
        (root / "etc" / "blobfs").mkdir(parents=True, exist_ok=True)
        click.echo(f"{dest}")
        # What the unit's Documentation= names.
        docs = root / DOC_DIR.relative_to("/")
        docs.mkdir(parents=True, exist_ok=True)
        for page in sorted((source / "docs").glob("*.md")):
            (docs / page.name).write_text(page.read_text())
            click.echo(f"{docs / page.name}")


COMMANDS = [mount_command, umount_command, install_helper_command]
