"""``blobfs status``, ``blobfs flush`` and ``blobfs invalidate``: looking at and steering a
running mount through its control socket (:mod:`blobfs.mount.client`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.live import Live

from blobfs.cli.commands.common import Exit, state
from blobfs.cli.progress import Output
from blobfs.cli.status_view import detail, listing
from blobfs.mount import client
from blobfs.mount.client import ControlError
from blobfs.mount.mountpoint import MountEntry

#: How long ``status`` waits for a daemon's answer.
STATUS_TIMEOUT = 10.0
#: Width of ``status`` output that is not a terminal (table cells are never cut).
PIPED_WIDTH = 1000
#: How long ``invalidate`` waits (a large inode table takes a while to walk).
INVALIDATE_TIMEOUT = 120.0

_EXIT = {
    "not_mounted": Exit.NOT_FOUND,
    "unreachable": Exit.FAILURE,
    "denied": Exit.PERMISSION,
    "refused": Exit.DATA,
    "timeout": Exit.TEMPORARY,
}


def _fail(output: Output, command: str, e: ControlError) -> NoReturn:
    output.error(f"blobfs {command}: {e}")
    raise click.exceptions.Exit(int(_EXIT.get(e.kind, Exit.FAILURE)))


def _entry(output: Output, command: str, where: Path) -> MountEntry:
    try:
        return client.find_mount(where)
    except ControlError as e:
        _fail(output, command, e)


def _paths(
    output: Output, command: str, entry: MountEntry, where: Path, paths: tuple[str, ...]
) -> list[str]:
    try:
        return client.relative_paths(entry, paths, where)
    except ValueError as e:
        output.error(f"blobfs {command}: {e}")
        raise click.exceptions.Exit(int(Exit.USAGE)) from None


def _all_mounts() -> list[dict[str, Any]]:
    rows = []
    for entry in client.mounts():
        row: dict[str, Any] = {"mountpoint": entry.path, "source": entry.source}
        try:
            row["status"], row["error"] = (
                client.request(entry, "status", timeout=STATUS_TIMEOUT),
                None,
            )
        except ControlError as e:
            row["status"], row["error"] = None, str(e)
        rows.append(row)
    return rows


@click.command("status")
@click.argument("mount_point", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
@click.option("-w", "--watch", is_flag=True, help="Keep showing it, refreshed (Ctrl-C ends).")
@click.option(
    "-n",
    "--interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.pass_context
def status_command(
    ctx: click.Context, mount_point: Path | None, as_json: bool, watch: bool, interval: float
) -> None:
    """Show how a running mount is doing: unsaved files, uploads, errors, caches, requests.

    Without MOUNT_POINT: every blobfs mount of this user (of everyone, for root), one line
    each.  The JSON document is described in docs/MOUNT.md.
    """
    output = state(ctx).output
    entry = _entry(output, "status", mount_point) if mount_point is not None else None

    def fetch() -> Any:
        if entry is None:
            return _all_mounts()
        try:
            return client.request(entry, "status", timeout=STATUS_TIMEOUT)
        except ControlError as e:
            _fail(output, "status", e)

    def render(document: Any) -> Any:
        return listing(document) if entry is None else detail(document)

    if as_json and not watch:
        click.echo(json.dumps(fetch(), indent=2))
        return
    if not watch:
        document = fetch()
        if entry is None and not document:
            output.line("no blobfs mounts")
            return
        # Piped: whole lines, never cut to a terminal's width.
        console = output.stdout if output.tty else Console(width=PIPED_WIDTH, highlight=False)
        console.print(render(document))
        return
    try:
        with Live(render(fetch()), console=output.stdout, auto_refresh=False) as live:
            while True:
                time.sleep(max(0.1, interval))
                document = fetch()
                if as_json:
                    live.update(json.dumps(document, indent=2), refresh=True)
                else:
                    live.update(render(document), refresh=True)
    except KeyboardInterrupt:
        return


@click.command("flush")
@click.argument("mount_point", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Give up waiting after this many seconds (exit 75; the uploads go on). Default: wait.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def flush_command(
    ctx: click.Context,
    mount_point: Path,
    paths: tuple[str, ...],
    timeout: float | None,
    as_json: bool,
) -> None:
    """Store every change made on the mount before now (or under PATHs) in the bucket.

    Exits 0 only once all of it is stored; otherwise non-zero, naming what is not.  Run it
    before trusting the bucket: in a shutdown script, a CI job, before a backup.
    """
    output = state(ctx).output
    entry = _entry(output, "flush", mount_point)
    relative = _paths(output, "flush", entry, mount_point, paths)
    try:
        result = client.flush(entry, relative, timeout)
    except ControlError as e:
        _fail(output, "flush", e)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for f in result["failed"]:
            output.error(f"blobfs flush: {f['path']}: not stored: {f['error']}")
        for k in result["kept"]:
            output.error(
                f"blobfs flush: {k['path']}: not stored: its upload failed after it was closed "
                f"({k['reason']}); the data is kept in {k['staging']} and stored at the next "
                "mount"
            )
        for p in result["pending"]:
            output.error(f"blobfs flush: {p}: still uploading after {timeout:g} s")
        if result["complete"] and output.verbosity > 0:
            output.line(f"stored {len(result['stored'])} file(s)")
    if result["complete"]:
        return
    code = Exit.TEMPORARY if result["timed_out"] and not result["failed"] else Exit.FAILURE
    raise click.exceptions.Exit(int(code))


@click.command("invalidate")
@click.argument("mount_point", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_context
def invalidate_command(ctx: click.Context, mount_point: Path, paths: tuple[str, ...]) -> None:
    """Forget what the mount caches under PATHs (default: everything): attributes,
    directory listings, data, the kernel's caches too.  The next access sees the bucket as
    it is now (after another host changed it).  Files being written keep their data.
    """
    output = state(ctx).output
    entry = _entry(output, "invalidate", mount_point)
    relative = _paths(output, "invalidate", entry, mount_point, paths)
    try:
        result = client.request(entry, "invalidate", paths=relative, timeout=INVALIDATE_TIMEOUT)
    except ControlError as e:
        _fail(output, "invalidate", e)
    if output.verbosity > 0:
        output.line(
            f"forgot {result['nodes']} entries, {result['listings']} listings, "
            f"{result['blocks']} cached blocks ({result['kernel']} kernel entries)"
        )


COMMANDS = [status_command, flush_command, invalidate_command]
