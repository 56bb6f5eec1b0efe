"""Pytest plugin: one real SeaweedFS (S3) and one Azurite per test session.

``s3_server`` is a :class:`~sdk.local_server.SeaweedServer` with authentication on (a
generated admin key; unsigned and wrongly signed requests are refused); ``azure_server`` an
:class:`~tests.servers.AzuriteServer`; ``tls_s3_server`` a SeaweedFS serving https with a
certificate of a private authority (:mod:`tests.harness.tls`).  Each starts on first use.
A server that does not start is an error of every test that needs it, with the server's log
in the message: never a skip, since a run that silently tested nothing would pass.

At the end of the session the servers stop and their data is deleted (logs stay in pytest's
temporary directory, which keeps the last three runs).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.harness.servers import STOP_SECONDS, AzuriteServer, SeaweedServer
from tests.harness.tls import TlsSeaweedServer, private_ca

_started: list[str] = []


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """SeaweedFS serving S3 on loopback, admin key in ``access_key_id``/``secret_access_key``."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"), auth=True)
    server.start()
    _started.append(
        f"SeaweedFS {server.endpoint_url} (pid {server.pid}) "
        f"started in {server.startup_seconds:.1f} s, log {server.log_path}"
    )
    try:
        yield server
    finally:
        server.stop(timeout=STOP_SECONDS)
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSeaweedServer]:
    """SeaweedFS serving S3 over https with a certificate from a private CA (``server.ca``),
    which no system trust store knows."""
    directory = tmp_path_factory.mktemp("seaweedfs-tls")
    server = TlsSeaweedServer(directory / "server", private_ca(directory / "ca"))
    server.start()
    _started.append(f"SeaweedFS over TLS {server.endpoint_url} (pid {server.pid})")
    try:
        yield server
    finally:
        server.stop(timeout=STOP_SECONDS)
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """Azurite serving Blob Storage on loopback, account ``devstoreaccount1``."""
    server = AzuriteServer(tmp_path_factory.mktemp("azurite"))
    server.start()
    _started.append(
        f"Azurite {server.endpoint_url} (pid {server.pid}) "
        f"started in {server.startup_seconds:.1f} s, log {server.log_path}"
    )
    try:
        yield server
    finally:
        server.stop(timeout=STOP_SECONDS)
        shutil.rmtree(server.data_dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _started:
        terminalreporter.section("test servers")
        for line in _started:
            terminalreporter.write_line(line)
