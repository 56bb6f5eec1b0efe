"""Persistent credentials commands: mkcredentials, lscredentials, statcredentials,
rmcredentials.

``mkcredentials`` and ``statcredentials`` print secrets: on stdout only, never in a log line
or an error message, since showing them is what the command is for.
"""

from __future__ import annotations

import click
from rich.table import Table

from blobfs.cli.commands.buckets import BUCKET_HELP, resolve_bucket
from blobfs.cli.commands.common import Exit, Outcome, describe, run, state
from sdk.client import Client
from sdk.errors import ResourceNotFound
from sdk.types import PersistentBucketCredentials

CREDENTIALS_HELP = "ID_OR_NAME is the credentials' id (bucket-credentials-...) or name."

#: Order in which credential fields are printed (others follow, sorted).
_FIELD_ORDER = (
    "bucket_name",
    "endpoint_url",
    "region_name",
    "storage_endpoint",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "sas_token",
    "expiration",
    "expiry",
)


async def _bucket_label(client: Client, bucket_id: str) -> str:
    try:
        bucket = await client.buckets.get(bucket_id)
    except ResourceNotFound:
        return bucket_id
    return bucket.name or bucket.id


async def _describe(client: Client, creds: PersistentBucketCredentials) -> list[str]:
    """The lines ``statcredentials`` prints: a summary, then each bucket's raw credentials
    as ``field: value`` (secrets included)."""
    labels = [await _bucket_label(client, c.bucket_id) for c in creds.credentials]
    lines = [
        f"Id:        {creds.id}",
        f"Name:      {creds.name or '-'}",
        f"Owner:     {creds.owner}",
        f"Cluster:   {creds.cluster_name}",
        f"Read-only: {'yes' if creds.read_only else 'no'}",
        f"Buckets:   {', '.join(labels) or '-'}",
    ]
    for label, bucket_creds in zip(labels, creds.credentials, strict=True):
        raw = bucket_creds.credentials
        lines += ["", f"[{label}]  ({bucket_creds.bucket_id}, {bucket_creds.provider.value})"]
        keys = [k for k in _FIELD_ORDER if k in raw] + sorted(set(raw) - set(_FIELD_ORDER))
        lines += [f"{k}: {raw[k]}" for k in keys]
    return lines


@click.command("mkcredentials", epilog=BUCKET_HELP)
@click.argument("buckets", metavar="BUCKET...", nargs=-1, required=True)
@click.option("--name", metavar="NAME", help="Name for the credentials (unique per user).")
@click.option("--read-only", is_flag=True, help="Allow listing and reading only.")
@click.pass_context
def mkcredentials(
    ctx: click.Context, buckets: tuple[str, ...], name: str | None, read_only: bool
) -> None:
    """Create persistent credentials for one or more buckets and print them.

    They stay valid until removed with rmcredentials (or until all their buckets are
    removed).  Imported buckets are refused: blobfs holds no rights to create credentials
    there.
    """
    st = state(ctx)

    async def body() -> None:
        async with st.client() as client:
            ids = [(await resolve_bucket(client, text)).id for text in buckets]
            creds = await client.buckets.persistent_credentials_create(
                ids, name, read_only=read_only
            )
            lines = await _describe(client, creds)
        for line in lines:
            st.output.stdout.print(line, markup=False)

    run(ctx, body())


@click.command("lscredentials")
@click.pass_context
def lscredentials(ctx: click.Context) -> None:
    """List your persistent credentials (without their secrets)."""
    st = state(ctx)
    out = st.output

    async def body() -> None:
        rows: list[list[str]] = []
        async with st.client() as client:
            async with client.buckets.persistent_credentials_list() as it:
                all_creds = [c async for c in it]
            for c in all_creds:
                labels = [await _bucket_label(client, b.bucket_id) for b in c.credentials]
                rows.append(
                    [c.id, c.name or "-", "yes" if c.read_only else "no", ", ".join(labels)]
                )
        columns = ["Id", "Name", "Read-only", "Buckets"]
        if out.tty:
            table = Table(*columns, box=None, header_style="bold")
            for row in rows:
                table.add_row(*row)
            out.stdout.print(table)
        else:
            for row in rows:
                out.stdout.print("\t".join(row), markup=False)

    run(ctx, body())


@click.command("statcredentials", epilog=CREDENTIALS_HELP)
@click.argument("credentials")
@click.pass_context
def statcredentials(ctx: click.Context, credentials: str) -> None:
    """Show persistent credentials, secrets included."""
    st = state(ctx)

    async def body() -> None:
        async with st.client() as client:
            creds = await client.buckets.persistent_credentials_get(credentials)
            lines = await _describe(client, creds)
        for line in lines:
            st.output.stdout.print(line, markup=False)

    run(ctx, body())


@click.command("rmcredentials", epilog=CREDENTIALS_HELP)
@click.argument("credentials", metavar="ID_OR_NAME...", nargs=-1, required=True)
@click.pass_context
def rmcredentials(ctx: click.Context, credentials: tuple[str, ...]) -> None:
    """Revoke persistent credentials: the provider refuses them from then on."""
    st = state(ctx)
    out = st.output

    async def body() -> Exit:
        outcome = Outcome()
        async with st.client() as client:
            for text in credentials:
                try:
                    await client.buckets.persistent_credentials_rm(text)
                except Exception as e:
                    outcome.failed(e)
                    out.error(f"cannot remove credentials {text}: {describe(e)}")
        return outcome.code

    run(ctx, body())


COMMANDS = [mkcredentials, lscredentials, statcredentials, rmcredentials]
