"""The ``blobfs`` command: buckets, blobs, configuration and the FUSE mount.

Sub-commands live in :mod:`blobfs.cli.commands`; this module only declares the top-level
group, its global options and the exit codes.
"""

from __future__ import annotations

import logging

import click

from blobfs.cli.commands.common import CliState, Exit

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


@click.group(
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
# Each command module lists its commands in COMMANDS.  Imported after ``main`` exists, and
# each import stays light: the mount daemon's own dependencies (pyfuse3, trio, the file
# system) load only in the daemon.
from blobfs.cli.commands import (  # noqa: E402
    blobs,
    buckets,
    config,
    control,
    copy,
    credentials,
    mount,
)

for _module in (buckets, blobs, copy, config, credentials, mount, control):
    for _command in _module.COMMANDS:
        main.add_command(_command)
