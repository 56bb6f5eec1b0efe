"""``python -P -m blobfs.mount SOURCE MOUNTPOINT [-o OPTS] [--foreground] [--ready-fd N]``:
the daemon's own command line (:func:`blobfs.mount.launch.start_background` starts it so)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from blobfs.mount.launch import launch
from blobfs.options import OptionError, split_options


@click.command()
@click.argument("source")
@click.argument("mount_point", type=click.Path(path_type=Path))
@click.option("-o", "options", multiple=True)
@click.option("-f", "--foreground", is_flag=True)
@click.option("--ready-fd", type=int)
@click.option("--cluster")
def main(
    source: str,
    mount_point: Path,
    options: tuple[str, ...],
    foreground: bool,
    ready_fd: int | None,
    cluster: str | None,
) -> None:
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
    sys.exit(code)


if __name__ == "__main__":
    main(prog_name="python -m blobfs.mount")
