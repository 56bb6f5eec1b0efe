"""The ``blobfs`` command: buckets, blobs, configuration and the FUSE mount.

Sub-commands live in :mod:`blobfs.commands` (and :mod:`blobfs.daemon` for ``mount``); this
module only declares the top-level group, its global options and the exit codes.
"""

from __future__ import annotations

import logging

import click

from blobfs.commands.common import CliState, Exit

EPILOG = f"""\b
Exit codes:
  {Exit.OK}    success
  {Exit.FAILURE}    failure; cp, rm, rmbucket: some sources failed (the others were done)
  {Exit.USAGE}    usage error: bad option or argument
  {Exit.DATA}   invalid input: bucket name, URI, duration, pattern
  {Exit.NOT_FOUND}   a bucket, blob or local path does not exist
  {Exit.SOFTWARE}   internal error (a bug: please report it with the output of -vv)
  {Exit.EXISTS}   a bucket or cluster of that name already exists
  {Exit.TEMPORARY}   the provider is unreachable or overloaded: try again later
  {Exit.PERMISSION}   the provider refused the credentials
  {Exit.CONFIG}   the configuration is missing or wrong
  {Exit.INTERRUPTED}  interrupted (Ctrl-C)
When several operations fail for the same reason, that reason's code is used; mixed
reasons give {Exit.FAILURE}.

\b
Shell completion (click's built-in mechanism), e.g. for bash add to ~/.bashrc:
  eval "$(_BLOBFS_COMPLETE=bash_source blobfs)"
zsh: _BLOBFS_COMPLETE=zsh_source in ~/.zshrc; fish: _BLOBFS_COMPLETE=fish_source blobfs
| source, in ~/.config/fish/completions/blobfs.fish.
"""


class _Group(click.Group):
    """Loads the mount commands only when they are asked for.

    :mod:`blobfs.daemon` imports pyfuse3, trio and the whole file system; every other command
    starts faster without them.
    """

    _LAZY = {"mount": "mount_command", "umount": "umount_command"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self._LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._LAZY:
            from blobfs import daemon

            command: click.Command = getattr(daemon, self._LAZY[cmd_name])
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.option(
    "--cluster",
    metavar="NAME",
    envvar="BLOBFS_CLUSTER",
    help="Cluster to use instead of the current one (env BLOBFS_CLUSTER).",
)
@click.option("-v", "--verbose", count=True, help="More output; repeat for debug logging.")
@click.option("-q", "--quiet", count=True, help="Less output: no progress, errors only.")
@click.version_option(package_name="blobfs")
@click.pass_context
def main(ctx: click.Context, cluster: str | None, verbose: int, quiet: int) -> None:
    """Cloud buckets from the command line: S3, S3-compatible stores and Azure Blob Storage."""
    verbosity = verbose - quiet
    logging.basicConfig(
        level=logging.WARNING - 10 * max(-1, min(verbosity, 2)),
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = CliState(cluster=cluster, verbosity=verbosity)


# --- sub-commands -------------------------------------------------------------------------------
# Other modules register their commands here (e.g. mount/umount from blobfs.daemon).
# Keep each registration on its own line.
from blobfs.commands import blobs, buckets, config, copy  # noqa: E402

for _command in [*buckets.COMMANDS, *blobs.COMMANDS, *copy.COMMANDS, *config.COMMANDS]:
    main.add_command(_command)
from blobfs.commands import credentials  # noqa: E402

for _command in credentials.COMMANDS:
    main.add_command(_command)
from blobfs.mount_helper import install_helper_command  # noqa: E402

main.add_command(install_helper_command)
