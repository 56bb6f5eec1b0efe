"""Credentials and access control, enforced by the real servers.

Each test body runs on SeaweedFS (authentication on: an admin identity, anonymous refused)
and on Azurite.  Whatever blobfs hands out is then used with plain aioboto3 /
azure-storage-blob clients or plain HTTP, so what is checked is that the *server* refuses
what the credentials do not allow, not that the sdk declines to ask.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob.aio import ContainerClient
from botocore.exceptions import ClientError
from click.testing import CliRunner

from blobfs.cli.main import main as blobfs_main
from sdk.client import Client
from sdk.config import Config
from sdk.errors import AlreadyExists, InvalidRequest, ResourceNotFound
from sdk.providers.base import CredentialTimes
from sdk.types import Bucket, BucketCredentials, Provider
from tests.harness.clusters import cluster_for

MiB = 1024 * 1024


#: One botocore data loader for every raw client: a fresh session parses the S3 model again.
_LOADER = AioSession().get_component("data_loader")


class Refused(Exception):
    """The server said 401/403 (any reason: denied, unknown key, expired, bad signature)."""


class RawBucket:
    """One bucket through a plain provider client and the raw credentials, nothing of the
    sdk in between."""

    def __init__(self, provider: Provider, creds: Mapping[str, str], bucket_name: str) -> None:
        self.provider = provider
        self.creds = dict(creds)
        self.bucket = bucket_name
        self._client: Any = None
        self._cm: Any = None

    async def __aenter__(self) -> RawBucket:
        c = self.creds
        if self.provider.is_s3:
            botocore_session = AioSession()
            botocore_session.register_component("data_loader", _LOADER)
            session = aioboto3.Session(botocore_session=botocore_session)
            self._cm = session.client(
                "s3",
                endpoint_url=c.get("endpoint_url"),
                region_name=c.get("region_name") or "us-east-1",
                aws_access_key_id=c["access_key_id"],
                aws_secret_access_key=c["secret_access_key"],
                aws_session_token=c.get("session_token"),
                config=AioConfig(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 1},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            self._client = await self._cm.__aenter__()
        else:
            self._client = ContainerClient(
                c["storage_endpoint"], self.bucket, credential=AzureSasCredential(c["sas_token"])
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.provider.is_s3:
            await self._cm.__aexit__(None, None, None)
        else:
            await self._client.close()

    async def _do(self, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (401, 403):
                raise Refused(str(e.response.get("Error", {}).get("Code"))) from e
            raise
        except HttpResponseError as e:
            if e.status_code in (401, 403):
                raise Refused(str(e.error_code)) from e
            raise

    async def list(self) -> list[str]:
        if self.provider.is_s3:
            r = await self._do(self._client.list_objects_v2(Bucket=self.bucket))
            return [o["Key"] for o in r.get("Contents") or ()]

        async def names() -> list[str]:
            return [b.name async for b in self._client.list_blobs()]

        return list(await self._do(names()))

    async def get(self, key: str) -> bytes:
        if self.provider.is_s3:

            async def body() -> bytes:
                r = await self._client.get_object(Bucket=self.bucket, Key=key)
                async with r["Body"] as stream:
                    data: bytes = await stream.read()
                return data

            return bytes(await self._do(body()))

        async def download() -> bytes:
            stream = await self._client.get_blob_client(key).download_blob()
            data: bytes = await stream.readall()
            return data

        return bytes(await self._do(download()))

    async def put(self, key: str, data: bytes) -> None:
        if self.provider.is_s3:
            await self._do(self._client.put_object(Bucket=self.bucket, Key=key, Body=data))
        else:
            await self._do(self._client.get_blob_client(key).upload_blob(data, overwrite=True))

    async def delete(self, key: str) -> None:
        if self.provider.is_s3:
            await self._do(self._client.delete_object(Bucket=self.bucket, Key=key))
        else:
            await self._do(self._client.get_blob_client(key).delete_blob())


def raw(creds: BucketCredentials, bucket_name: str | None = None) -> RawBucket:
    """A plain client on ``bucket_name`` (default: the one the credentials name)."""
    c = creds.credentials
    return RawBucket(creds.provider, c, bucket_name or c["bucket_name"])


async def provider_name(client: Client, bucket: Bucket) -> str:
    return (await client.buckets.store_for(bucket)).bucket_name


def base_url(client: Client) -> str:
    """Where anonymous requests go: the S3 endpoint or the Azure account URL."""
    endpoint = client.config.cluster().endpoint_url
    assert endpoint
    return endpoint.rstrip("/")


async def anonymous_status(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        await r.read()
        return r.status


async def make(client: Client, name: str, *blobs: tuple[str, bytes]) -> Bucket:
    bucket = await client.buckets.create(name)
    for key, data in blobs:
        await client.buckets.put_blob(bucket.id, key, data)
    return bucket


async def admin_of(client: Client) -> Any:
    return await client._pool.admin(client.cluster_name)


# -- temporary credentials ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_read_only_credentials_list_and_read_but_cannot_write(client: Client) -> None:
    bucket = await make(client, "readonly", ("a.txt", b"alpha"))
    creds = await client.buckets.request_tmp_credentials("readonly", read_only=True)
    assert creds.bucket_id == bucket.id and creds.provider is bucket.provider
    keys = set(creds.credentials)
    if bucket.provider.is_s3:
        assert {"access_key_id", "secret_access_key", "session_token", "expiration"} <= keys
        assert {"bucket_name", "endpoint_url", "region_name"} <= keys
        assert creds.credentials["access_key_id"] != client.config.cluster().credentials.get(
            "access_key_id"
        ), "the cluster's own key was handed out"
        expires = creds.credentials["expiration"]
    else:
        assert keys == {"storage_endpoint", "bucket_name", "sas_token", "expiry"}
        expires = creds.credentials["expiry"]
    remaining = datetime.fromisoformat(expires).timestamp() - time.time()
    assert 60 < remaining <= 3700  # an hour by default (900 s is STS's floor)

    async with raw(creds) as b:
        assert await b.list() == ["a.txt"]
        assert await b.get("a.txt") == b"alpha"
        with pytest.raises(Refused):
            await b.put("new.txt", b"no")
        with pytest.raises(Refused):
            await b.put("a.txt", b"overwrite")
        with pytest.raises(Refused):
            await b.delete("a.txt")
    async with client.buckets.fetch_blob("readonly", "a.txt") as it:
        assert b"".join([c async for c in it]) == b"alpha"
    with pytest.raises(ResourceNotFound):
        await client.buckets.head_blob("readonly", "new.txt")


@pytest.mark.asyncio
async def test_credentials_for_one_bucket_are_refused_on_another(client: Client) -> None:
    await make(client, "mine", ("k", b"mine"))
    other = await make(client, "other", ("k", b"other"))
    creds = await client.buckets.request_tmp_credentials("mine")
    async with raw(creds) as b:  # read-write on its own bucket
        await b.put("written", b"ok")
        assert sorted(await b.list()) == ["k", "written"]
        await b.delete("written")
    async with raw(creds, await provider_name(client, other)) as b:
        with pytest.raises(Refused):
            await b.list()
        with pytest.raises(Refused):
            await b.get("k")
        with pytest.raises(Refused):
            await b.put("k", b"stolen")
        with pytest.raises(Refused):
            await b.delete("k")
    async with client.buckets.fetch_blob("other", "k") as it:
        assert b"".join([c async for c in it]) == b"other"


@pytest.mark.asyncio
async def test_expired_credentials_are_renewed_during_a_long_transfer(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    ttl = 2.0
    (await admin_of(client)).credential_times = CredentialTimes(ttl=ttl)
    bucket = await client.buckets.create("long")
    data = os.urandom(20 * MiB)

    async def slowly() -> AsyncIterator[bytes]:
        for i in range(0, len(data), MiB):
            await asyncio.sleep(0.2)  # ~4 s in all: twice the credentials' lifetime
            yield data[i : i + MiB]

    caplog.set_level(logging.DEBUG, logger="sdk.providers")
    started = time.monotonic()
    await client.buckets.put_blob(bucket.id, "big.bin", slowly())
    got = bytearray()
    async with client.buckets.fetch_blob(bucket.id, "big.bin") as it:
        async for chunk in it:
            got += chunk
            await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    assert bytes(got) == data
    renewals = [r for r in caplog.records if r.getMessage().startswith("renewed credentials")]
    assert elapsed > 2 * ttl and len(renewals) >= 1, (elapsed, len(renewals))

    # The server enforces that lifetime: credentials issued with it are refused once it is
    # over, so the transfer above only went through because the store renewed them.  STS
    # issues sessions of at least 15 minutes; there the store renews by its own clock.
    creds = await client.buckets.request_tmp_credentials(bucket.id, read_only=True)
    if bucket.provider is Provider.AZURE:
        async with raw(creds) as b:
            assert await b.list() == ["big.bin"]
            deadline = time.monotonic() + ttl + 1.5
            with pytest.raises(Refused):  # once the lifetime is over (whole seconds)
                while time.monotonic() < deadline:
                    await b.list()
                    await asyncio.sleep(0.2)
                await b.list()
    else:
        expires = datetime.fromisoformat(creds.credentials["expiration"])
        assert (expires - datetime.now(UTC)).total_seconds() > 800


# -- persistent credentials ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_persistent_credentials_work_until_revoked(client: Client) -> None:
    a = await make(client, "bucket-a", ("k", b"a"))
    b = await make(client, "bucket-b", ("k", b"b"))
    creds = await client.buckets.persistent_credentials_create([a.id, "bucket-b"], "both")
    assert creds.name == "both" and not creds.read_only and creds.owner == "alice"
    assert [c.bucket_id for c in creds.credentials] == [a.id, b.id]
    assert all(c.credentials["bucket_name"] for c in creds.credentials)
    ro = await client.buckets.persistent_credentials_create(["bucket-a"], None, read_only=True)
    with pytest.raises(AlreadyExists):
        await client.buckets.persistent_credentials_create(["bucket-a"], "both")

    for c in creds.credentials:
        async with raw(c) as rb:
            assert await rb.get("k") in (b"a", b"b")
            await rb.put("via-persistent", b"x")
            await rb.delete("via-persistent")
    async with raw(ro.credentials[0]) as rb:
        assert await rb.list() == ["k"]
        with pytest.raises(Refused):
            await rb.put("x", b"x")
        with pytest.raises(Refused):
            await rb.delete("k")

    assert await client.buckets.persistent_credentials_get("both") == creds
    assert await client.buckets.persistent_credentials_get(creds.id) == creds
    async with client.buckets.persistent_credentials_list() as it:
        assert {c.id async for c in it} == {creds.id, ro.id}

    await client.buckets.persistent_credentials_rm("both")
    for c in creds.credentials:
        async with raw(c) as rb:
            with pytest.raises(Refused):
                await rb.list()
            with pytest.raises(Refused):
                await rb.get("k")
    with pytest.raises(ResourceNotFound):
        await client.buckets.persistent_credentials_get("both")
    async with raw(ro.credentials[0]) as rb:  # the others are untouched
        assert await rb.get("k") == b"a"


@pytest.mark.asyncio
async def test_removing_a_bucket_revokes_or_detaches_its_credentials(client: Client) -> None:
    await client.buckets.create("gone")
    kept = await make(client, "kept", ("k", b"kept"))
    only = await client.buckets.persistent_credentials_create(["gone"], "only")
    shared = await client.buckets.persistent_credentials_create(["gone", "kept"], "shared")
    await client.buckets.rm("gone")

    with pytest.raises(ResourceNotFound):
        await client.buckets.persistent_credentials_get("only")
    after = await client.buckets.persistent_credentials_get("shared")
    assert [c.bucket_id for c in after.credentials] == [kept.id]
    async with raw(after.credentials[0]) as rb:
        assert await rb.get("k") == b"kept"
    # What covered only the removed bucket is revoked at the provider, not just forgotten.
    async with raw(only.credentials[0], await provider_name(client, kept)) as rb:
        with pytest.raises(Refused):
            await rb.list()
    assert shared.id == after.id


@pytest.mark.asyncio
async def test_imported_buckets_get_no_persistent_credentials(client: Client) -> None:
    own = await client.buckets.create("source")
    name = await provider_name(client, own)
    cluster = client.config.cluster()
    if own.provider.is_s3:
        creds = {
            "access_key_id": cluster.credentials["access_key_id"],
            "secret_access_key": cluster.credentials["secret_access_key"],
            "endpoint_url": cluster.endpoint_url or "",
            "region_name": cluster.region or "us-east-1",
        }
    else:
        creds = {
            "storage_endpoint": cluster.endpoint_url or "",
            "credential": cluster.credentials["account_key"],
        }
    imported = await client.buckets.import_external(own.provider, name, creds, name="imported")
    with pytest.raises(InvalidRequest, match="imported"):
        await client.buckets.persistent_credentials_create([imported.id], "nope")
    async with client.buckets.persistent_credentials_list() as it:
        assert [c async for c in it] == []


# -- signed URLs and public access --------------------------------------------------------------


@pytest.mark.asyncio
async def test_signed_url_opens_its_blob_only_and_expires(client: Client) -> None:
    bucket = await make(client, "signed", ("a.txt", b"signed content"), ("b.txt", b"other"))
    # Long enough for the first GET on a loaded 2-core CI machine (1 s was not: the
    # signature is dated to the whole second, so its life can be nearly a second shorter).
    url = await client.buckets.make_signed_url(bucket.uri / "a.txt", expires_in_seconds=4)
    # Expiry is whole seconds on both providers: refused within 4 + 2 s of signing.
    deadline = time.monotonic() + 6.0
    async with aiohttp.ClientSession() as http:
        async with http.get(str(url)) as r:
            assert r.status == 200 and await r.read() == b"signed content"
        # The same signature on another blob is refused.
        other = str(url).replace("/a.txt?", "/b.txt?")
        assert other != str(url)
        async with http.get(other) as r:
            assert r.status == 403
        while True:
            async with http.get(str(url)) as r:
                if r.status == 403:
                    break
                assert r.status == 200, r.status
            assert time.monotonic() < deadline, "the signed URL did not expire"
            await asyncio.sleep(0.2)
    for bad in (0, 7 * 24 * 3600 + 1):
        with pytest.raises(ValueError):
            await client.buckets.make_signed_url(bucket.uri / "a.txt", expires_in_seconds=bad)


@pytest.mark.asyncio
async def test_public_access_on_and_off(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = await make(client, "pub", ("a.txt", b"public content"))
    name = await provider_name(client, bucket)
    blob = f"{base_url(client)}/{name}/a.txt"
    listing = f"{base_url(client)}/{name}" + (
        "?list-type=2" if bucket.provider.is_s3 else "?restype=container&comp=list"
    )
    assert not bucket.public
    assert await anonymous_status(blob) == 403
    assert await anonymous_status(listing) == 403
    # Persistent credentials live in the same container ACL on Azure: they must survive.
    creds = await client.buckets.persistent_credentials_create(["pub"], "survivor")

    public = await client.buckets.set_public_access("pub", True)
    assert public.public and (await client.buckets.get("pub")).public
    assert await anonymous_status(blob) == 200
    assert await anonymous_status(listing) == 200

    admin = await admin_of(client)
    calls: list[bool] = []
    real = admin.set_public_access

    async def counting(bucket_name: str, value: bool) -> None:
        calls.append(value)
        await real(bucket_name, value)

    monkeypatch.setattr(admin, "set_public_access", counting)
    assert (await client.buckets.set_public_access("pub", True)).public
    assert calls == []  # unchanged: the provider is not asked

    private = await client.buckets.set_public_access("pub", False)
    assert calls == [False] and not private.public
    assert not (await client.buckets.get("pub")).public
    assert await anonymous_status(blob) == 403
    assert await anonymous_status(listing) == 403
    async with raw(creds.credentials[0]) as rb:
        assert await rb.get("a.txt") == b"public content"


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_secrets_stay_out_of_repr_logs_and_other_users_files(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, botocore and azure-core included
    bucket = await make(client, "secret", ("k", b"v"))
    tmp = await client.buckets.request_tmp_credentials(bucket.id)
    persistent = await client.buckets.persistent_credentials_create([bucket.id], "sec")
    async with client.buckets.fetch_blob(bucket.id, "k") as it:  # a scoped-store request
        assert b"".join([c async for c in it]) == b"v"

    secret_fields = ("secret_access_key", "session_token", "sas_token")
    secrets = [
        value
        for creds in (tmp, *persistent.credentials)
        for field, value in creds.credentials.items()
        if field in secret_fields
    ]
    assert secrets
    text = caplog.text + repr(tmp) + repr(persistent) + str(persistent)
    for secret in secrets:
        assert secret not in text
        # SAS tokens are logged with their signature redacted; check the signature part.
        if "sig=" in secret:
            sig = secret.split("sig=", 1)[1].split("&", 1)[0]
            assert sig not in text
    registry = client._registry.path
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600


# -- the command line ---------------------------------------------------------------------------


def test_credentials_commands(
    provider_kind: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    server = request.getfixturevalue(f"{provider_kind}_server")
    cluster = cluster_for(provider_kind, server)
    Config(clusters={cluster.name: cluster}, current_cluster=cluster.name, owner="bob").save(
        tmp_path / "config.toml"
    )
    env = {
        "BLOBFS_CONFIG": str(tmp_path / "config.toml"),
        "BLOBFS_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(blobfs_main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, (args, result.output)
        return result.output

    cli("mkbucket", "clib")
    out = cli("mkcredentials", "clib", "--name", "cli-creds", "--read-only")
    assert "Name:      cli-creds" in out and "Read-only: yes" in out and "Buckets:   clib" in out
    secret_field = "secret_access_key: " if provider_kind == "s3" else "sas_token: "
    assert secret_field in out
    listed = cli("lscredentials")
    assert "cli-creds" in listed and "clib" in listed and secret_field not in listed
    assert cli("statcredentials", "cli-creds") == out
    cli("set-bucket-publicity", "clib", "public")
    assert "Public:   yes" in cli("statbucket", "clib")
    cli("set-bucket-publicity", "clib", "private")
    assert "Public:   no" in cli("statbucket", "clib")
    cli("rmcredentials", "cli-creds")
    assert "cli-creds" not in cli("lscredentials")
    assert "cannot remove credentials cli-creds" in cli("rmcredentials", "cli-creds", code=66)
    cli("mkcredentials", "no-such-bucket", code=66)
    cli("rmbucket", "clib")
