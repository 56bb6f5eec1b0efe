"""What botocore's HTTP transport does for one endpoint, and whether the direct clients may
stand in for it.

botocore decides per client, and this module reads its decision from the client it built
(aiobotocore's ``AIOHTTPSession``) rather than working it out again:

* the **proxy** for the endpoint: ``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` names
  the host (or the client configuration's ``proxies``);
* the **CA bundle** servers are verified with: the client's ``verify``, else
  ``AWS_CA_BUNDLE`` or the profile's ``ca_bundle``, else ``REQUESTS_CA_BUNDLE``, else
  certifi's bundle -- only that file is trusted, not the system's store;
* a **client certificate** (the configuration's ``client_cert``).

The direct clients (:mod:`sdk.providers.s3.direct`, :mod:`sdk.providers.s3.prepared`) trust
exactly the same bundle (:meth:`DirectTransport.ssl_context`) and **step aside** -- the store
gets no direct client and every request goes through botocore -- whenever a proxy applies
to the endpoint, verification is off for an https endpoint, a client certificate is set, or
the transport cannot be read.  Speaking CONNECT, proxy authentication and botocore's proxy
TLS settings again by hand would duplicate botocore for no gain: the direct client saves
~0.3 ms of botocore's work per request, less than a proxy hop costs.

A plain-http endpoint reached without a proxy gets botocore clients with ``verify=False``
(:func:`botocore_verify`): no TLS happens there, and botocore then builds no TLS context.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies


@dataclass(frozen=True)
class DirectTransport:
    """How a direct client reaches an endpoint as botocore would: over TLS trusting exactly
    ``cafile`` (``None``: plain http)."""

    cafile: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A new client TLS context trusting only :attr:`cafile` (``None`` over http); one
        per event loop that uses it."""
        if self.cafile is None:
            return None
        return ssl.create_default_context(cafile=self.cafile)


def botocore_verify(endpoint_url: str | None) -> bool | None:
    """The ``verify`` argument for a botocore client of ``endpoint_url``: ``False`` where no
    TLS can happen -- a plain-http endpoint reached without a proxy -- else ``None``
    (botocore's own choice: the CA bundle settings above).

    aiobotocore gives each client's connection pool a TLS context loaded with the CA bundle
    whatever the endpoint's scheme, 0.7 MiB per client that has sent a request (a mount
    daemon has two: 1.1 MB of its idle RSS); told not to verify, it makes none.
    """
    if endpoint_url is None or urlsplit(endpoint_url).scheme != "http":
        return None
    if get_environ_proxies(endpoint_url):
        return None  # the proxy may be reached over TLS
    return False


def direct_transport(client: Any, endpoint_url: str) -> DirectTransport | None:
    """How the direct clients reach ``endpoint_url`` for aiobotocore ``client``, or ``None``
    when they must step aside (see the module docstring)."""
    endpoint = getattr(client, "_endpoint", None)
    session = getattr(endpoint, "http_session", None)
    proxies = getattr(session, "_proxy_config", None)
    verify = getattr(session, "_verify", None)
    if session is None or proxies is None or verify is None:
        return None  # not the transport this module knows: botocore decides everything
    if proxies.proxy_url_for(endpoint_url):
        return None
    if getattr(session, "_cert_file", None):
        return None
    if urlsplit(endpoint_url).scheme != "https":
        return DirectTransport()
    if verify is False:
        return None
    cafile = get_cert_path(verify)
    return DirectTransport(cafile=str(cafile)) if cafile else None


__all__ = ["DirectTransport", "botocore_verify", "direct_transport"]
