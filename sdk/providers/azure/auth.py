"""Where an Azure storage account is and how to authenticate to it.

Credentials come in the cluster form (``account_name`` + ``account_key``, ``sas_token`` or
``connection_string``) or the imported-bucket form (``storage_endpoint`` with ``credential``
= account key, or ``sas_token``); :func:`resolve_auth` turns either into an :class:`Auth`,
which builds the service client every store and admin uses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from azure.storage.blob.aio import BlobServiceClient

from sdk.errors import ConfigError

MiB: Final = 1024 * 1024

#: Client options shared by every client the Azure provider creates.
#:
#: 8 MiB requests: ~300 MiB/s from Azurite on loopback where 1 MiB ones manage ~70, while a
#: read still buffers little and a failed request re-sends little.  ``retry_total=0``:
#: :mod:`sdk.retry` retries translated errors, so azure-core must not retry as well.  Its
#: aiohttp pool (100 connections, no per-host cap) is plenty for 4-16 requests in flight.
REQUEST_SIZE: Final = 8 * MiB
CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "max_single_put_size": REQUEST_SIZE,
    "max_block_size": REQUEST_SIZE,
    "max_single_get_size": REQUEST_SIZE,
    "max_chunk_get_size": REQUEST_SIZE,
    "retry_total": 0,
    "connection_timeout": 20,
    "read_timeout": 60,
}

#: Azurite's well-known development account, used for ``UseDevelopmentStorage=true``.
_DEV_ACCOUNT: Final = "devstoreaccount1"
_DEV_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Auth:
    """Where an account is and how to authenticate to it."""

    account_url: str
    account_name: str | None
    account_key: str | None
    sas_token: str | None

    def credential(self) -> str | dict[str, str] | None:
        """What azure-core takes as ``credential``: the account key or the SAS token."""
        if self.account_key:
            if not self.account_name:
                raise ConfigError(f"cannot tell the account name of {self.account_url}")
            return {"account_name": self.account_name, "account_key": self.account_key}
        return self.sas_token

    def client(self) -> BlobServiceClient:
        """A new service client, with its own connection pool."""
        return BlobServiceClient(self.account_url, credential=self.credential(), **CLIENT_OPTIONS)


def _account_from_url(url: str) -> str | None:
    """``acct`` of ``https://acct.blob.core.windows.net`` or of ``http://127.0.0.1:10000/acct``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        path_style = True
    except ValueError:
        path_style = host == "localhost" or "." not in host
    if path_style:
        first = parts.path.strip("/").split("/", 1)[0]
        return first or None
    return host.split(".", 1)[0] or None


def _parse_connection_string(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ConfigError("malformed Azure connection string (expected Name=value;...)")
        fields[name.strip().lower()] = value.strip()
    return fields


def resolve_auth(
    endpoint_url: str | None, credentials: Mapping[str, str], default_url: str | None = None
) -> Auth:
    """The account of ``credentials``.

    Accepts the cluster form (``account_name``+``account_key``, ``sas_token`` or
    ``connection_string``) and the imported-bucket form (``storage_endpoint`` with
    ``credential`` = account key or ``sas_token``).  ``default_url`` is the account URL to
    use when the credentials name none (neither endpoint nor account)."""
    endpoint = endpoint_url or credentials.get("storage_endpoint") or None
    if credentials.get("connection_string"):
        cs = _parse_connection_string(credentials["connection_string"])
        if cs.get("usedevelopmentstorage", "").lower() == "true":
            url = endpoint or f"http://127.0.0.1:10000/{_DEV_ACCOUNT}"
            return Auth(url.rstrip("/"), _DEV_ACCOUNT, _DEV_KEY, None)
        name = cs.get("accountname")
        blob_endpoint = endpoint or cs.get("blobendpoint")
        if blob_endpoint:
            url = blob_endpoint
        else:
            if not name:
                raise ConfigError(
                    "Azure connection string names neither BlobEndpoint nor AccountName"
                )
            protocol = cs.get("defaultendpointsprotocol", "https")
            suffix = cs.get("endpointsuffix", "core.windows.net")
            url = f"{protocol}://{name}.blob.{suffix}"
        sas = cs.get("sharedaccesssignature")
        return Auth(
            url.rstrip("/"),
            name or _account_from_url(url),
            cs.get("accountkey") or None,
            sas.lstrip("?") if sas else None,
        )
    key = credentials.get("account_key") or credentials.get("credential")
    sas = credentials.get("sas_token")
    name = credentials.get("account_name")
    if not key and not sas:
        raise ConfigError(
            "Azure credentials need account_name + account_key, sas_token or connection_string"
        )
    if not endpoint:
        if name:
            endpoint = f"https://{name}.blob.core.windows.net"
        elif default_url:
            endpoint = default_url
        else:
            raise ConfigError("Azure credentials without an endpoint URL need account_name")
    endpoint = endpoint.rstrip("/")
    return Auth(
        endpoint,
        name or _account_from_url(endpoint),
        key or None,
        sas.lstrip("?") if sas and not key else None,
    )
