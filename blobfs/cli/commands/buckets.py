"""Bucket commands: lsbucket, mkbucket, importbucket, statbucket, du, rmbucket,
set-bucket-publicity."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import click
from rich.table import Table

from blobfs.cli.commands.common import Exit, Outcome, describe, run, state
from blobfs.cli.formatting import bucket_fields, bucket_short_uri, human_bytes
from blobfs.cli.progress import DeleteProgress, UsageProgress
from sdk.client import Client
from sdk.types import Bucket, Provider

BUCKET_HELP = "BUCKET is a bucket name, id or URI (blob:NAME, blob://CLUSTER/OWNER/NAME)."


async def resolve_bucket(client: Client, text: str) -> Bucket:
    """A bucket from its name, id or ``blob:`` URI."""
    if text.startswith("blob:"):
        bucket, key = await client.buckets.resolve_uri(text)
        if key.strip("/"):
            raise ValueError(f"{text!r} names a blob, not a bucket")
        return bucket
    return await client.buckets.get(text)


@click.command("lsbucket")
@click.option("-l", "long_format", is_flag=True, help="Long format: id, name, provider, ...")
@click.pass_context
def lsbucket(ctx: click.Context, long_format: bool) -> None:
    """List the buckets of the current cluster."""
    st = state(ctx)
    out = st.output

    async def body() -> None:
        async with st.client() as client, client.buckets.list() as it:
            buckets = [b async for b in it]
        if not long_format:
            for b in buckets:
                out.stdout.print(bucket_short_uri(b), markup=False)
            return
        columns = ["Id", "Name", "Provider", "Created", "Imported", "Public", "URI"]
        rows = [[v for k, v in bucket_fields(b) if k in columns] for b in buckets]
        if out.tty:
            table = Table(*columns, box=None, header_style="bold")
            for row in rows:
                table.add_row(*row)
            out.stdout.print(table)
        else:
            for row in rows:
                out.stdout.print("\t".join(row), markup=False)

    run(ctx, body())


@click.command("mkbucket")
@click.argument("name", required=False)
@click.pass_context
def mkbucket(ctx: click.Context, name: str | None) -> None:
    """Create a bucket called NAME (or an unnamed one, known by its id).

    Names are 3-40 characters: a lower-case letter, then lower-case letters, digits,
    '-' and '_'.  Prints the new bucket's URI.
    """
    st = state(ctx)

    async def body() -> None:
        async with st.client() as client:
            bucket = await client.buckets.create(name)
        st.output.stdout.print(bucket_short_uri(bucket), markup=False)

    run(ctx, body())


_PROVIDERS = [p.value for p in Provider if p not in (Provider.GCP, Provider.OPEN_STACK)]


@click.command("importbucket")
@click.option(
    "--provider",
    type=click.Choice(_PROVIDERS),
    required=True,
    help="Kind of the existing bucket (s3: any S3-compatible store).",
)
@click.option(
    "--provider-bucket-name",
    required=True,
    metavar="NAME",
    help="Name of the bucket (S3) or container (Azure) at the provider.",
)
@click.option("--name", metavar="NAME", help="Name for the bucket in blobfs.")
@click.option("--aws-access-key-id", "--access-key-id", metavar="KEY", help="S3 access key id.")
@click.option(
    "--aws-secret-access-key", "--secret-access-key", metavar="SECRET", help="S3 secret key."
)
@click.option("--aws-region-name", "--region", metavar="REGION", help="S3 region.")
@click.option(
    "--aws-endpoint-url", "--endpoint-url", metavar="URL", help="S3 endpoint (MinIO, ...)."
)
@click.option(
    "--azure-storage-account-url",
    "--account-url",
    metavar="URL",
    help="Azure storage account URL, https://ACCOUNT.blob.core.windows.net.",
)
@click.option(
    "--azure-storage-credential", "--account-key", metavar="KEY", help="Azure account key."
)
@click.option("--azure-sas-token", "--sas-token", metavar="TOKEN", help="Azure SAS token.")
@click.pass_context
def importbucket(
    ctx: click.Context,
    provider: str,
    provider_bucket_name: str,
    name: str | None,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
    aws_region_name: str | None,
    aws_endpoint_url: str | None,
    azure_storage_account_url: str | None,
    azure_storage_credential: str | None,
    azure_sas_token: str | None,
) -> None:
    """Register an existing provider bucket with its own credentials.

    \b
    S3:    --access-key-id, --secret-access-key, and --region and/or --endpoint-url.
    Azure: --account-url with --account-key or --sas-token.
    The credentials are checked by listing the bucket before it is recorded.
    """
    st = state(ctx)
    kind = Provider(provider)
    creds: dict[str, str] = {}
    if kind.is_s3:
        if not (aws_access_key_id and aws_secret_access_key):
            raise click.UsageError("S3 buckets need --access-key-id and --secret-access-key")
        creds = {"access_key_id": aws_access_key_id, "secret_access_key": aws_secret_access_key}
        if aws_region_name:
            creds["region_name"] = aws_region_name
        if aws_endpoint_url:
            creds["endpoint_url"] = aws_endpoint_url
    else:
        if not azure_storage_account_url:
            raise click.UsageError("Azure buckets need --account-url")
        if bool(azure_storage_credential) == bool(azure_sas_token):
            raise click.UsageError("Azure buckets need one of --account-key or --sas-token")
        creds = {"storage_endpoint": azure_storage_account_url}
        if azure_storage_credential:
            creds["credential"] = azure_storage_credential
        if azure_sas_token:
            creds["sas_token"] = azure_sas_token

    async def body() -> None:
        async with st.client() as client:
            bucket = await client.buckets.import_external(
                kind, provider_bucket_name, creds, name=name
            )
        st.output.stdout.print(bucket_short_uri(bucket), markup=False)

    run(ctx, body())


@click.command("statbucket", epilog=BUCKET_HELP)
@click.argument("bucket")
@click.pass_context
def statbucket(ctx: click.Context, bucket: str) -> None:
    """Show a bucket's details."""
    st = state(ctx)

    async def body() -> None:
        async with st.client() as client:
            b = await resolve_bucket(client, bucket)
        width = max(len(k) for k, _ in bucket_fields(b))
        for label, value in bucket_fields(b):
            st.output.stdout.print(f"{label + ':':<{width + 1}} {value}", markup=False)

    run(ctx, body())


@click.command("du", epilog=BUCKET_HELP)
@click.argument("bucket")
@click.pass_context
def du(ctx: click.Context, bucket: str) -> None:
    """Show the number of objects in a bucket and their total size."""
    st = state(ctx)

    async def body() -> None:
        async with st.client() as client:
            b = await resolve_bucket(client, bucket)
            usage = None
            with UsageProgress(st.output) as progress:
                async with client.buckets.get_disk_usage(
                    b.id, cluster_name=b.cluster_name, bucket_owner=b.owner
                ) as it:
                    async for usage in it:
                        progress.update(usage)
        assert usage is not None  # the sdk always yields a final total
        out = st.output.stdout
        out.print(f"Objects: {usage.object_count}", markup=False)
        out.print(
            f"Size:    {usage.total_bytes} bytes ({human_bytes(usage.total_bytes)})", markup=False
        )

    run(ctx, body())


@click.command("rmbucket", epilog=BUCKET_HELP)
@click.argument("buckets", metavar="BUCKET...", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove the bucket's blobs first.")
@click.pass_context
def rmbucket(ctx: click.Context, buckets: tuple[str, ...], force: bool) -> None:
    """Remove buckets.  A bucket that still holds blobs is refused unless --force.

    Imported buckets are only forgotten; their provider bucket stays.
    """
    st = state(ctx)
    out = st.output

    async def body() -> Exit:
        outcome = Outcome()
        async with st.client() as client:
            for text in buckets:
                try:
                    b = await resolve_bucket(client, text)
                    if force:
                        with DeleteProgress(out) as progress:
                            try:
                                await client.buckets.blob_rm(
                                    b.uri, recursive=True, progress=progress
                                )
                            except FileNotFoundError:
                                pass  # already empty
                    await client.buckets.rm(b.id, cluster_name=b.cluster_name, bucket_owner=b.owner)
                except Exception as e:
                    outcome.failed(e)
                    out.error(f"cannot remove bucket {text}: {describe(e)}")
        return outcome.code

    run(ctx, body())


@runtime_checkable
class _Publicity(Protocol):
    """``Buckets.set_public_access`` as in the reference (checked at run time so the CLI
    works with an sdk that has not got it yet)."""

    async def set_public_access(
        self,
        bucket_id_or_name: str,
        public_access: bool,
        cluster_name: str | None = None,
        bucket_owner: str | None = None,
    ) -> Bucket: ...


@click.command("set-bucket-publicity", epilog=BUCKET_HELP)
@click.argument("bucket")
@click.argument("level", type=click.Choice(["public", "private"]))
@click.pass_context
def set_bucket_publicity(ctx: click.Context, bucket: str, level: str) -> None:
    """Allow (public) or forbid (private) anonymous reads of a bucket's blobs."""
    st = state(ctx)

    async def body() -> None:
        async with st.client() as client:
            b = await resolve_bucket(client, bucket)
            buckets = client.buckets
            if not isinstance(buckets, _Publicity):
                raise NotImplementedError("this sdk version cannot change bucket publicity")
            await buckets.set_public_access(
                b.id, level == "public", cluster_name=b.cluster_name, bucket_owner=b.owner
            )
        st.output.line(f"{bucket_short_uri(b)} is now {level}")

    run(ctx, body())


COMMANDS = [lsbucket, mkbucket, importbucket, statbucket, du, rmbucket, set_bucket_publicity]
