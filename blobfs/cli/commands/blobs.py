"""Blob commands: ls, glob, rm, sign-url (cp lives in :mod:`.copy`)."""

from __future__ import annotations

import asyncio
import errno

import click
from yarl import URL

from blobfs.cli.commands.common import Exit, Outcome, describe, run, state
from blobfs.cli.commands.locations import (
    expand,
    has_magic,
    is_blob,
    is_dir,
    key_base,
    parse_location,
    with_key,
)
from blobfs.cli.formatting import bucket_short_uri, display_uri, entry_line, parse_duration
from blobfs.cli.progress import DeleteProgress, Output
from sdk.client import Client
from sdk.errors import ResourceNotFound
from sdk.types import BlobObject, BucketEntry

PATH_HELP = (
    "Blob paths are blob:BUCKET/KEY (the current cluster and user), blob:/OWNER/BUCKET/KEY "
    "or blob://CLUSTER/OWNER/BUCKET/KEY; a trailing / names a folder."
)


def blob_location(text: str) -> URL:
    url = parse_location(text)
    if not is_blob(url):
        raise click.BadParameter(f"{text!r} is not a blob: URI", param_hint="PATH")
    return url


@click.command("ls", epilog=PATH_HELP)
@click.argument("paths", metavar="[PATH]...", nargs=-1)
@click.option("-l", "long_format", is_flag=True, help="Long format: type, size, date, name.")
@click.option("-h", "--human-readable", is_flag=True, help="Sizes as 1.0K, 23M, 4.5G.")
@click.option("-r", "--recursive", is_flag=True, help="List every blob below the folder.")
@click.option("--full-uri", is_flag=True, help="Print full URIs instead of relative names.")
@click.pass_context
def ls(
    ctx: click.Context,
    paths: tuple[str, ...],
    long_format: bool,
    human_readable: bool,
    recursive: bool,
    full_uri: bool,
) -> None:
    """List blobs in a folder (or the buckets when no PATH is given)."""
    st = state(ctx)
    out = st.output
    urls = [blob_location(p) for p in paths]

    async def body() -> Exit:
        outcome = Outcome()
        async with st.client() as client:
            if not urls:
                async with client.buckets.list() as it:
                    async for bucket in it:
                        out.stdout.print(bucket_short_uri(bucket), markup=False)
                return Exit.OK
            for n, url in enumerate(urls):
                if len(urls) > 1:
                    out.stdout.print(("\n" if n else "") + display_uri(url) + ":", markup=False)
                try:
                    await _ls_one(
                        client, out, url, long_format, human_readable, recursive, full_uri
                    )
                except Exception as e:
                    outcome.failed(e)
                    out.error(f"cannot list {display_uri(url)}: {describe(e)}")
        return outcome.code

    run(ctx, body())


async def _ls_one(
    client: Client,
    out: Output,
    url: URL,
    long_format: bool,
    human: bool,
    recursive: bool,
    full_uri: bool,
) -> None:
    base, key = await key_base(client, url)

    def show(entry: BucketEntry, name: str) -> None:
        label = str(entry.uri.human_repr()) if full_uri else name
        out.stdout.print(entry_line(entry, label, long=long_format, human=human), markup=False)

    if key and not key.endswith("/"):
        if not await client.buckets.blob_is_dir(url):
            bucket, _ = await client.buckets.resolve_uri(url)
            try:
                entry = await client.buckets.head_blob(
                    bucket.id, key, cluster_name=bucket.cluster_name, bucket_owner=bucket.owner
                )
            except ResourceNotFound:
                raise FileNotFoundError(errno.ENOENT, "No such blob or folder") from None
            show(entry, key.rsplit("/", 1)[-1])
            return
        key += "/"
    async with client.buckets.list_blobs(with_key(base, key), recursive=recursive) as it:
        async for entry in it:
            if entry.key == key and isinstance(entry, BlobObject):
                continue  # the folder's own marker
            show(entry, entry.key[len(key) :])


@click.command("glob", epilog=PATH_HELP)
@click.argument("patterns", metavar="PATTERN...", nargs=-1, required=True)
@click.option("--full-uri", is_flag=True, help="Print full URIs.")
@click.pass_context
def glob_cmd(ctx: click.Context, patterns: tuple[str, ...], full_uri: bool) -> None:
    """List blobs matching glob patterns: * ? [...] within a path component, ** across them.

    \b
    Example: blobfs glob 'blob:data/**/*.csv'
    """
    st = state(ctx)
    out = st.output
    urls = [blob_location(p) for p in patterns]

    async def body() -> Exit:
        outcome = Outcome()
        async with st.client() as client:
            for url in urls:
                try:
                    base, _ = await key_base(client, url)
                    async with client.buckets.glob_blobs(url) as it:
                        async for entry in it:
                            shown = entry.uri if full_uri else with_key(base, entry.key)
                            out.stdout.print(display_uri(shown), markup=False)
                except Exception as e:
                    outcome.failed(e)
                    out.error(f"cannot glob {display_uri(url)}: {describe(e)}")
        return outcome.code

    run(ctx, body())


@click.command("rm", epilog=PATH_HELP)
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Remove folders and their contents.")
@click.option(
    "--glob/--no-glob",
    "use_glob",
    default=True,
    show_default=True,
    help="Expand glob patterns in PATHs.",
)
@click.pass_context
def rm(ctx: click.Context, paths: tuple[str, ...], recursive: bool, use_glob: bool) -> None:
    """Remove blobs (and with -r, folders).  Goes on after an error; exits non-zero."""
    st = state(ctx)
    out = st.output
    urls = [blob_location(p) for p in paths]

    async def body() -> Exit:
        outcome = Outcome()
        async with st.client() as client:
            for pattern in urls:
                try:
                    targets = (
                        await expand(client, pattern)
                        if use_glob and has_magic(pattern)
                        else [pattern]
                    )
                except Exception as e:
                    outcome.failed(e)
                    out.error(f"cannot remove {display_uri(pattern)}: {describe(e)}")
                    continue
                for url in targets:
                    try:
                        await _rm_one(client, out, url, recursive)
                    except Exception as e:
                        outcome.failed(e)
                        out.error(f"cannot remove {display_uri(url)}: {describe(e)}")
        return outcome.code

    run(ctx, body())


async def _rm_one(client: Client, out: Output, url: URL, recursive: bool) -> None:
    with DeleteProgress(out) as progress:
        counter = None
        if out.live and recursive:
            counter = asyncio.create_task(_count_keys(client, url, progress))
        try:
            await client.buckets.blob_rm(url, recursive=recursive, progress=progress)
        finally:
            if counter is not None:
                counter.cancel()


async def _count_keys(client: Client, url: URL, progress: DeleteProgress) -> None:
    # A second listing alongside the delete, only to give the bar a total and an ETA.
    try:
        if not await is_dir(client, url):
            return
        folder = url if url.path.endswith("/") else URL(str(url) + "/")
        count = 1
        async with client.buckets.list_blobs(folder, recursive=True) as it:
            async for _ in it:
                count += 1
        progress.expect(count)
    except Exception:  # only cosmetic
        return


@click.command("sign-url", epilog=PATH_HELP)
@click.argument("path")
@click.option(
    "--expires",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="How long the URL works, like 1d2h3m4s (at most 7 days).",
)
@click.pass_context
def sign_url(ctx: click.Context, path: str, expires: str) -> None:
    """Print a URL that lets anyone download the blob at PATH until it expires."""
    st = state(ctx)
    url = blob_location(path)
    try:
        seconds = int(parse_duration(expires).total_seconds())
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--expires") from None

    async def body() -> None:
        async with st.client() as client:
            signed = await client.buckets.make_signed_url(url, expires_in_seconds=seconds)
        st.output.stdout.print(str(signed), markup=False, soft_wrap=True)

    run(ctx, body())


COMMANDS = [ls, glob_cmd, rm, sign_url]
