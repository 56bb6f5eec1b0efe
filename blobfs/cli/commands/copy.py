"""``blobfs cp``: copy files and folders between local disk and buckets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import click
from yarl import URL

from blobfs.cli.commands.blobs import PATH_HELP
from blobfs.cli.commands.common import Exit, Outcome, describe, run, state
from blobfs.cli.commands.locations import (
    basename,
    expand,
    has_magic,
    is_blob,
    is_dir,
    is_local,
    join,
    parse_location,
)
from blobfs.cli.formatting import display_uri
from blobfs.cli.progress import Output, TransferProgress
from sdk.client import Client
from sdk.filters import FileFilter
from sdk.transfer import check_continue_supported
from sdk.transfer.names import unsafe_name

#: Ignore files honoured by default in uploaded trees (as .neuroignore upstream).
DEFAULT_IGNORE_FILE = ".blobfsignore"
_ORDER_KEY = "blobfs.param_order"


class _OrderedOptions(click.Command):
    """Remembers the command-line order of options, so ``--exclude`` and ``--include`` can
    be applied in the order given even though click collects them separately."""

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_args(args: list[str]) -> Any:
            opts, rest, order = parse(args)
            ctx.meta[_ORDER_KEY] = [p.name for p in order]
            return opts, rest, order

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser


def ordered_filters(
    ctx: click.Context, excludes: Sequence[str], includes: Sequence[str]
) -> list[tuple[bool, str]]:
    """``(exclude, pattern)`` pairs in the order they were given."""
    order = [n for n in ctx.meta.get(_ORDER_KEY, []) if n in ("exclude", "include")]
    queues = {"exclude": list(excludes), "include": list(includes)}
    out = [(name == "exclude", queues[name].pop(0)) for name in order if queues[name]]
    # Anything not seen on the command line (e.g. defaults) goes last, excludes first.
    out += [(True, p) for p in queues["exclude"]] + [(False, p) for p in queues["include"]]
    return out


EPILOG = (
    """\b
Examples:
  blobfs cp data.csv blob:bucket/inputs/        upload into a folder
  blobfs cp -r results blob:bucket/run1         upload a directory (becomes run1)
  blobfs cp -r blob:bucket/run1 .               download a folder into the current directory
  blobfs cp 'blob:bucket/logs/*.txt' logs/      download what a glob matches
  blobfs cp -r --exclude '*' --include '*.py' src blob:bucket/code

\b
--exclude/--include take .gitignore-style patterns relative to the copied folder (a pattern
without / matches at any depth, a trailing / matches only directories); when several match,
the last one given wins.  Files named by --exclude-from-files (default .blobfsignore) in the
uploaded tree and the directories above it add patterns for their directory, as .gitignore
files do in git.
"""
    + PATH_HELP
)


@click.command("cp", cls=_OrderedOptions, epilog=EPILOG)
@click.argument("paths", metavar="SOURCE... DESTINATION", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Copy directories recursively.")
@click.option(
    "-u",
    "--update",
    is_flag=True,
    help="Copy only when the source is newer than the destination or it is missing.",
)
@click.option(
    "--continue",
    "continue_",
    is_flag=True,
    help="Downloads: complete partially downloaded files instead of starting over.",
)
@click.option(
    "--exclude", multiple=True, metavar="PATTERN", help="Leave out matching files (repeatable)."
)
@click.option(
    "--include",
    multiple=True,
    metavar="PATTERN",
    help="Copy matching files even if an earlier --exclude matched (repeatable).",
)
@click.option(
    "--exclude-from-files",
    multiple=True,
    metavar="NAMES",
    help=f"Names of ignore files to honour in uploaded trees, space separated "
    f"(default {DEFAULT_IGNORE_FILE}; '' for none).",
)
@click.option(
    "-t",
    "--target-directory",
    metavar="DIR",
    help="Copy every SOURCE into DIR (then all arguments are sources).",
)
@click.option(
    "-T",
    "--no-target-directory",
    is_flag=True,
    help="Treat DESTINATION as the copy itself, never as a directory to copy into.",
)
@click.option(
    "--glob/--no-glob",
    "use_glob",
    default=True,
    show_default=True,
    help="Expand glob patterns in SOURCEs.",
)
@click.pass_context
def cp(
    ctx: click.Context,
    paths: tuple[str, ...],
    recursive: bool,
    update: bool,
    continue_: bool,
    exclude: tuple[str, ...],
    include: tuple[str, ...],
    exclude_from_files: tuple[str, ...],
    target_directory: str | None,
    no_target_directory: bool,
    use_glob: bool,
) -> None:
    """Copy local files to buckets and blobs to local disk.

    Errors name the source and the reason (cannot copy SRC to DST: ...); cp goes on with
    the next source and exits non-zero at the end.
    """
    st = state(ctx)
    if target_directory and no_target_directory:
        raise click.UsageError("-t and -T cannot be used together")
    if target_directory:
        sources, dst_text = list(paths), target_directory
    else:
        if len(paths) < 2:
            raise click.UsageError("give at least one SOURCE and a DESTINATION")
        sources, dst_text = list(paths[:-1]), paths[-1]
    dst = parse_location(dst_text)
    file_filter = FileFilter()
    try:
        for is_exclude, pattern in ordered_filters(ctx, exclude, include):
            file_filter.append(is_exclude, pattern)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--exclude/--include") from None
    if exclude_from_files:
        ignore_names = frozenset(n for names in exclude_from_files for n in names.split())
    else:
        ignore_names = frozenset({DEFAULT_IGNORE_FILE})
    job = _Copy(
        recursive=recursive,
        update=update,
        continue_=continue_,
        filter=file_filter,
        ignore_names=ignore_names,
    )

    into: bool | None = None  # decided by whether DESTINATION is a directory
    if target_directory:
        into = True
    elif no_target_directory:
        into = False

    async def body() -> Exit:
        async with st.client() as client:
            return await job.run(
                client,
                st.output,
                [parse_location(s) for s in sources],
                dst,
                into=into,
                use_glob=use_glob,
            )

    run(ctx, body())


class _Copy:
    """One ``cp`` invocation: expands sources, picks destinations, reports failures."""

    def __init__(
        self,
        *,
        recursive: bool,
        update: bool,
        continue_: bool,
        filter: FileFilter,
        ignore_names: frozenset[str],
    ) -> None:
        self.recursive = recursive
        self.update = update
        self.continue_ = continue_
        self.filter = filter
        self.ignore_names = ignore_names
        self.outcome = Outcome()

    async def run(
        self,
        client: Client,
        output: Output,
        patterns: list[URL],
        dst: URL,
        *,
        into: bool | None,
        use_glob: bool,
    ) -> Exit:
        sources: list[URL] = []
        for pattern in patterns:
            if use_glob and has_magic(pattern):
                try:
                    sources += await expand(client, pattern)
                except Exception as e:
                    self._failed(output, pattern, dst, e)
            else:
                sources.append(pattern)
        if not sources:
            return self.outcome.code
        if into is False and len(sources) > 1:
            output.error("blobfs: -T needs exactly one source")
            return Exit.USAGE
        # Several sources, or -t, need an existing local directory; blob folders are
        # virtual and always exist.
        must_be_dir = into is True or len(sources) > 1 or dst.path.endswith("/")
        if must_be_dir and is_local(dst) and not await is_dir(client, dst):
            output.error(f"blobfs: target {display_uri(dst)} is not a directory")
            return Exit.FAILURE
        if into is None:
            into = must_be_dir or await is_dir(client, dst)

        with TransferProgress(output) as progress:
            counter = None
            if output.live:
                counter = asyncio.create_task(_count(client, sources, progress))
            try:
                for src in sources:
                    target = join(dst, basename(src)) if into and basename(src) else dst
                    try:
                        if into and is_blob(src) and basename(src):
                            # The local name comes from the key: never '..' and the like.
                            unsafe = unsafe_name(basename(src))
                            if unsafe is not None:
                                raise ValueError(unsafe)
                        await self._copy_one(client, src, target, progress)
                    except Exception as e:
                        self._failed(output, src, target, e)
            finally:
                if counter is not None:
                    counter.cancel()
        return self.outcome.code

    def _failed(self, output: Output, src: URL, dst: URL, exc: Exception) -> None:
        self.outcome.failed(exc)
        output.error(f"cannot copy {display_uri(src)} to {display_uri(dst)}: {describe(exc)}")

    async def _copy_one(
        self, client: Client, src: URL, dst: URL, progress: TransferProgress
    ) -> None:
        if is_blob(src) == is_blob(dst):
            raise ValueError(
                "copying between two local paths or between two blob URIs is not supported"
            )
        if self.continue_:
            check_continue_supported(src, dst)
        buckets = client.buckets
        directory = self.recursive and await is_dir(client, src)
        if is_local(src):
            if directory:
                await buckets.upload_dir(
                    src,
                    dst,
                    update=self.update,
                    filter=self.filter.match,
                    ignore_file_names=self.ignore_names,
                    progress=progress,
                )
            else:
                await buckets.upload_file(src, dst, update=self.update, progress=progress)
        elif directory:
            await buckets.download_dir(
                src,
                dst,
                update=self.update,
                continue_=self.continue_,
                filter=self.filter.match,
                progress=progress,
            )
        else:
            await buckets.download_file(
                src, dst, update=self.update, continue_=self.continue_, progress=progress
            )


async def _count(client: Client, sources: list[URL], progress: TransferProgress) -> None:
    """Count what the sources hold, alongside the copy, to give the total bar its ETA."""
    files = size = 0
    try:
        for src in sources:
            if is_local(src):
                f, s = await asyncio.to_thread(_count_local, src.path)
            else:
                f, s = await _count_blobs(client, src)
            files += f
            size += s
        progress.expect(files, size)
    except Exception:  # only cosmetic
        return


def _count_local(path: str) -> tuple[int, int]:
    if not os.path.isdir(path):
        return 1, os.path.getsize(path)
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(dirpath, name))
                files += 1
            except OSError:
                pass
    return files, size


async def _count_blobs(client: Client, src: URL) -> tuple[int, int]:
    files = size = 0
    if not src.path.endswith("/") and not await client.buckets.blob_is_dir(src):
        bucket, key = await client.buckets.resolve_uri(src)
        entry = await client.buckets.head_blob(
            bucket.id, key, cluster_name=bucket.cluster_name, bucket_owner=bucket.owner
        )
        return 1, entry.size
    folder = URL.build(scheme=src.scheme, host=src.host or "", path=src.path.rstrip("/") + "/")
    async with client.buckets.list_blobs(folder, recursive=True) as it:
        async for entry in it:
            if not entry.key.endswith("/"):
                files += 1
                size += entry.size
    return files, size


COMMANDS = [cp]
