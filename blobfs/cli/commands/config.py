"""Configuration commands: show, add-cluster, use-cluster, rm-cluster; and ``local stop``.

They edit the file at ``$BLOBFS_CONFIG`` (default ``~/.config/blobfs/config.toml``, mode
0600) so nobody has to write TOML by hand.  Environment overrides are shown by ``show`` but
never written back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import click

from blobfs.cli.commands.common import Exit, fail, run, state
from sdk.config import (
    LOCAL_CLUSTER,
    SECRET_FIELDS,
    ClusterConfig,
    Config,
    config_path,
    data_dir,
    load_config,
)
from sdk.types import Provider

_PROVIDERS = [p.value for p in Provider if p not in (Provider.GCP, Provider.OPEN_STACK)]


def _file_config() -> Config:
    """The configuration as stored in the file, without environment overrides."""
    return load_config(config_path(), env={})


def _mask(field: str, value: str) -> str:
    return "********" if field in SECRET_FIELDS and value else value


@click.group("config")
def config_group() -> None:
    """Show and edit the configuration: clusters and the current cluster."""


@config_group.command("show")
@click.option("--show-secrets", is_flag=True, help="Print secrets instead of ********.")
@click.pass_context
def show(ctx: click.Context, show_secrets: bool) -> None:
    """Print the configuration in effect (file plus environment overrides)."""
    st = state(ctx)
    out = st.output
    try:
        cfg = st.config()
    except Exception as e:
        fail(out, f"error: {e}", Exit.CONFIG)
    lines = [
        f"Config file:     {cfg.path or config_path()}"
        + ("" if (cfg.path or config_path()).exists() else " (not created yet)"),
        f"Data directory:  {data_dir()}",
        f"Current cluster: {cfg.current_cluster}",
        f"Owner:           {cfg.owner}",
        f"Org:             {cfg.org or '-'}",
        "Clusters:",
    ]
    for name, cluster in sorted(cfg.clusters.items()):
        marker = "*" if name == cfg.current_cluster else " "
        lines.append(f" {marker} {name}")
        fields = cluster.to_toml()
        if cluster.embedded:
            lines.append("      embedded SeaweedFS, started on demand (stop: blobfs local stop)")
        for key, value in fields.items():
            if key == "embedded":
                continue
            shown = str(value) if show_secrets else _mask(key, str(value))
            lines.append(f"      {key} = {shown}")
    for line in lines:
        out.stdout.print(line, markup=False, soft_wrap=True)


@config_group.command("add-cluster")
@click.argument("name")
@click.option(
    "--provider",
    type=click.Choice(_PROVIDERS),
    required=True,
    help="aws, minio, s3 (any S3-compatible store, e.g. SeaweedFS) or azure.",
)
@click.option("--endpoint-url", metavar="URL", help="Endpoint (MinIO/SeaweedFS, Azure account).")
@click.option("--region", metavar="REGION", help="S3 region.")
@click.option("--access-key-id", metavar="KEY", help="S3 access key id.")
@click.option("--secret-access-key", metavar="SECRET", help="S3 secret access key.")
@click.option("--session-token", metavar="TOKEN", help="S3 session token (temporary keys).")
@click.option("--account-name", metavar="NAME", help="Azure storage account name.")
@click.option("--account-key", metavar="KEY", help="Azure account key.")
@click.option("--sas-token", metavar="TOKEN", help="Azure account SAS token.")
@click.option("--connection-string", metavar="TEXT", help="Azure connection string.")
@click.option("--use", "make_current", is_flag=True, help="Make it the current cluster.")
@click.option("--replace", is_flag=True, help="Overwrite a cluster of the same name.")
@click.pass_context
def add_cluster(
    ctx: click.Context,
    name: str,
    provider: str,
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    session_token: str | None,
    account_name: str | None,
    account_key: str | None,
    sas_token: str | None,
    connection_string: str | None,
    make_current: bool,
    replace: bool,
) -> None:
    """Add a cluster called NAME: where a provider is and how to log in to it.

    \b
    AWS:       --provider aws --region eu-west-1 [--access-key-id ... --secret-access-key ...]
               (without keys, the usual AWS credential chain is used)
    MinIO/S3:  --provider s3 --endpoint-url http://host:9000 --access-key-id ...
               --secret-access-key ...
    Azure:     --provider azure --account-name ACCOUNT
               (--account-key ... | --sas-token ... | --connection-string ...)
               [--endpoint-url https://ACCOUNT.blob.core.windows.net]
    """
    st = state(ctx)
    kind = Provider(provider)
    creds: dict[str, str] = {}
    if kind.is_s3:
        if any((account_name, account_key, sas_token, connection_string)):
            raise click.UsageError("Azure options given for an S3 provider")
        if bool(access_key_id) != bool(secret_access_key):
            raise click.UsageError("give both --access-key-id and --secret-access-key")
        if kind is not Provider.AWS and not endpoint_url:
            raise click.UsageError(f"--provider {provider} needs --endpoint-url")
        for key, value in (
            ("access_key_id", access_key_id),
            ("secret_access_key", secret_access_key),
            ("session_token", session_token),
        ):
            if value:
                creds[key] = value
    else:
        if any((access_key_id, secret_access_key, session_token, region)):
            raise click.UsageError("S3 options given for an Azure provider")
        secrets = [s for s in (account_key, sas_token, connection_string) if s]
        if len(secrets) != 1:
            raise click.UsageError(
                "give exactly one of --account-key, --sas-token or --connection-string"
            )
        if not (account_name or connection_string):
            raise click.UsageError("--account-name is needed (or a --connection-string)")
        if account_name and not endpoint_url:
            endpoint_url = f"https://{account_name}.blob.core.windows.net"
        for key, value in (
            ("account_name", account_name),
            ("account_key", account_key),
            ("sas_token", sas_token),
            ("connection_string", connection_string),
        ):
            if value:
                creds[key] = value
    cluster = ClusterConfig(
        name=name, provider=kind, endpoint_url=endpoint_url, region=region, credentials=creds
    )

    def body() -> None:
        cfg = _file_config()
        if name in cfg.clusters and not replace:
            fail(st.output, f"cluster {name!r} already exists (use --replace)", Exit.EXISTS)
        cfg = cfg.with_cluster(cluster)
        if make_current:
            cfg = _current(cfg, name)
        path = cfg.save()
        st.output.line(
            f"added cluster {name}" + (" (now current)" if make_current else "") + f" to {path}"
        )

    _guard(ctx, body)


@config_group.command("use-cluster")
@click.argument("name")
@click.pass_context
def use_cluster(ctx: click.Context, name: str) -> None:
    """Make NAME the current cluster."""
    st = state(ctx)

    def body() -> None:
        cfg = _file_config()
        cfg.cluster(name)
        _current(cfg, name).save()
        st.output.line(f"current cluster: {name}")

    _guard(ctx, body)


@config_group.command("rm-cluster")
@click.argument("name")
@click.pass_context
def rm_cluster(ctx: click.Context, name: str) -> None:
    """Remove cluster NAME from the configuration (its buckets stay at the provider)."""
    st = state(ctx)

    def body() -> None:
        cfg = _file_config()
        if name == LOCAL_CLUSTER:
            fail(st.output, "the embedded 'local' cluster cannot be removed", Exit.FAILURE)
        cfg = cfg.without_cluster(name)
        cfg.save()
        st.output.line(f"removed cluster {name}; current cluster: {cfg.current_cluster}")

    _guard(ctx, body)


def _current(cfg: Config, name: str) -> Config:
    return dataclasses.replace(cfg, current_cluster=name)


def _guard(ctx: click.Context, body: Callable[[], None]) -> None:
    """Run a synchronous command body with the usual error mapping."""

    async def wrapped() -> None:
        body()

    run(ctx, wrapped())


@click.group("local")
def local_group() -> None:
    """The embedded SeaweedFS server behind the zero-configuration 'local' cluster."""


@local_group.command("stop")
@click.pass_context
def local_stop(ctx: click.Context) -> None:
    """Stop the embedded server (it starts again on the next command that needs it)."""
    st = state(ctx)

    async def body() -> None:
        from sdk.local_server import stop_local_server  # only this command needs it

        if stop_local_server(data_dir()):
            st.output.line("stopped the local server")
        else:
            st.output.line("the local server was not running")

    run(ctx, body())


COMMANDS = [config_group, local_group]
