"""The test servers themselves and the embedded SeaweedFS server.

Plain boto3 and azure-storage-blob calls, no sdk: these tests check that the servers the
other tests rely on behave like the real services in the ways that matter (round trips,
refused credentials, loopback-only ports), and that the embedded ``local`` server starts
once, is shared, outlives its caller and stops.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.harness.servers import (
    STOP_SECONDS,
    AzuriteError,
    AzuriteServer,
    SeaweedError,
    SeaweedServer,
    ensure_local_server,
    stop_local_server,
)

REPO = Path(__file__).resolve().parents[2]
_NO_RETRY = BotoConfig(retries={"max_attempts": 1, "mode": "standard"})


def _s3(server: SeaweedServer, **overrides: Any) -> Any:
    kwargs = dict(server.boto3_kwargs(), config=_NO_RETRY)
    kwargs.update(overrides)
    return boto3.client("s3", **kwargs)


def _error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def _listening_ports(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP listener of ``pid``, from ``ss``."""
    out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            host, _, port = local.rpartition(":")
            found.add((host, int(port)))
    return found


@pytest.fixture
def s3_bucket(s3_server: SeaweedServer) -> Iterator[str]:
    name = f"servers-{uuid.uuid4().hex[:12]}"
    client = _s3(s3_server)
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


# --- SeaweedFS ---------------------------------------------------------------------------


def test_s3_round_trip(s3_server: SeaweedServer, s3_bucket: str) -> None:
    client = _s3(s3_server)
    put = client.put_object(Bucket=s3_bucket, Key="dir/hello.txt", Body=b"hello, world")
    got = client.get_object(Bucket=s3_bucket, Key="dir/hello.txt")
    assert got["Body"].read() == b"hello, world"
    assert got["ETag"] == put["ETag"]
    listed = client.list_objects_v2(Bucket=s3_bucket, Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["dir/"]


def test_s3_wrong_secret_is_refused(s3_server: SeaweedServer, s3_bucket: str) -> None:
    client = _s3(s3_server, aws_secret_access_key=f"{s3_server.secret_access_key}-wrong")
    with pytest.raises(ClientError) as excinfo:
        client.get_object(Bucket=s3_bucket, Key="anything")
    assert _error_code(excinfo) in ("SignatureDoesNotMatch", "AccessDenied")
    with pytest.raises(ClientError) as excinfo:
        client.put_object(Bucket=s3_bucket, Key="intruder", Body=b"x")
    assert _error_code(excinfo) in ("SignatureDoesNotMatch", "AccessDenied")


def test_s3_unknown_access_key_is_refused(s3_server: SeaweedServer) -> None:
    client = _s3(s3_server, aws_access_key_id="BLOBFSNOSUCHKEY00000")
    with pytest.raises(ClientError) as excinfo:
        client.list_buckets()
    assert _error_code(excinfo) in ("InvalidAccessKeyId", "AccessDenied")


def test_s3_anonymous_is_refused(s3_server: SeaweedServer, s3_bucket: str) -> None:
    _s3(s3_server).put_object(Bucket=s3_bucket, Key="private", Body=b"secret")
    anonymous = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name=s3_server.region,
        config=BotoConfig(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_object", {"Bucket": s3_bucket, "Key": "private"}),
        ("put_object", {"Bucket": s3_bucket, "Key": "new", "Body": b"x"}),
        ("list_objects_v2", {"Bucket": s3_bucket}),
        ("list_buckets", {}),
    ]
    for method, kwargs in calls:
        with pytest.raises(ClientError) as excinfo:
            getattr(anonymous, method)(**kwargs)
        assert _error_code(excinfo) == "AccessDenied", method


def test_s3_listens_only_on_its_own_loopback_ports(s3_server: SeaweedServer) -> None:
    assert s3_server.pid is not None and s3_server.ports is not None
    listeners = _listening_ports(s3_server.pid)
    assert {host for host, _ in listeners} == {"127.0.0.1"}
    assert {port for _, port in listeners} == set(s3_server.ports.as_dict().values())


def test_s3_behaves_like_aws_on_missing_and_non_empty_buckets(
    s3_server: SeaweedServer, s3_bucket: str
) -> None:
    client = _s3(s3_server)
    with pytest.raises(ClientError) as excinfo:
        client.put_object(Bucket=f"missing-{uuid.uuid4().hex[:8]}", Key="k", Body=b"x")
    assert _error_code(excinfo) == "NoSuchBucket"
    client.put_object(Bucket=s3_bucket, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as excinfo:
        client.delete_bucket(Bucket=s3_bucket)
    assert _error_code(excinfo) == "BucketNotEmpty"


class _PatternReader:
    """``size`` bytes of incompressible data made on the fly: no GiB buffers or temp files."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self._block = hashlib.shake_256(b"blobfs").digest(1 << 20)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            offset = (self.pos + len(out)) % len(self._block)
            # Shift the pattern every MiB so no two blocks repeat verbatim.
            salt = ((self.pos + len(out)) // len(self._block)).to_bytes(8, "little")
            chunk = self._block[offset:] if offset else salt + self._block[8:]
            out += chunk[: n - len(out)]
        self.pos += n
        return bytes(out)


def _digest_of(reader: _PatternReader) -> str:
    h = hashlib.sha256()
    while chunk := reader.read(8 << 20):
        h.update(chunk)
    return h.hexdigest()


@pytest.mark.slow
def test_s3_multipart_upload_spanning_many_volumes(tmp_path: Path) -> None:
    """An object far beyond the volume size limit spans many volumes, grown in more than
    one round (weed grows 7 at a time), and reads back whole and by range.  A server of its
    own with 16 MiB volumes: 160 MiB fill about ten of them, as 1 GiB would the session
    server's 64 MiB ones (and a few GiB the embedded server's 128 MiB ones), at a sixth of
    the bytes."""
    from boto3.s3.transfer import TransferConfig

    limit_mib, size_mib = 16, 160
    size = size_mib << 20
    server = SeaweedServer(tmp_path / "srv", volume_size_limit_mb=limit_mib)
    server.start()
    try:
        client = _s3(server)
        client.create_bucket(Bucket="big")
        transfer = TransferConfig(multipart_chunksize=16 << 20, max_concurrency=4)
        client.upload_fileobj(_PatternReader(size), "big", "big", Config=transfer)
        head = client.head_object(Bucket="big", Key="big")
        assert head["ContentLength"] == size
        assert re.fullmatch(r'"[0-9a-f]{32}-\d+"', head["ETag"])  # a multipart ETag
        volumes = list(server.data_dir.rglob("big_*.dat"))
        assert len(volumes) > 7, volumes
        h = hashlib.sha256()
        for chunk in client.get_object(Bucket="big", Key="big")["Body"].iter_chunks(8 << 20):
            h.update(chunk)
        assert h.hexdigest() == _digest_of(_PatternReader(size))
        tail = client.get_object(Bucket="big", Key="big", Range=f"bytes={size - 10}-")
        reader = _PatternReader(size)
        reader.read(size - 10)
        assert tail["Body"].read() == reader.read(10)
    finally:
        server.stop(timeout=STOP_SECONDS)


def test_seaweed_failure_reports_the_log(tmp_path: Path) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fake weed: cannot start, disk on fire' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = SeaweedServer(tmp_path / "srv", weed=fake, startup_timeout=10)
    with pytest.raises(SeaweedError, match="disk on fire") as excinfo:
        server.start()
    assert "code 3" in str(excinfo.value)
    assert not server.running


# --- Azurite -----------------------------------------------------------------------------


def test_azure_round_trip(azure_server: AzuriteServer) -> None:
    service = BlobServiceClient.from_connection_string(azure_server.connection_string)
    container = service.create_container(f"servers-{uuid.uuid4().hex[:12]}")
    try:
        container.upload_blob("dir/hello.txt", b"hello, azure")
        assert container.download_blob("dir/hello.txt").readall() == b"hello, azure"
        assert [b.name for b in container.list_blobs()] == ["dir/hello.txt"]
    finally:
        container.delete_container()


def test_azure_wrong_key_is_refused(azure_server: AzuriteServer) -> None:
    wrong = BlobServiceClient(
        azure_server.endpoint_url,
        credential={
            "account_name": azure_server.account_name,
            "account_key": "d3Jvbmcga2V5IGZvciB0aGUgdGVzdHMgb25seQ==",
        },
        retry_total=0,
    )
    with pytest.raises(HttpResponseError) as excinfo:
        list(wrong.list_containers())
    assert excinfo.value.status_code == 403
    code = getattr(excinfo.value, "error_code", None)
    assert code in ("AuthorizationFailure", "AuthenticationFailed")


def test_azure_listens_only_on_its_loopback_port(azure_server: AzuriteServer) -> None:
    assert azure_server.pid is not None
    # azurite-blob is a node script: the listener belongs to node, our direct child.
    assert _listening_ports(azure_server.pid) == {("127.0.0.1", azure_server.port)}


def test_azurite_failure_reports_the_log(tmp_path: Path) -> None:
    fake = tmp_path / "azurite-blob"
    fake.write_text("#!/bin/sh\necho 'fake azurite: no node today'\nexit 7\n")
    fake.chmod(0o755)
    server = AzuriteServer(tmp_path / "srv", azurite=fake, startup_timeout=10)
    with pytest.raises(AzuriteError, match="no node today"):
        server.start()
    assert not server.running


def test_server_that_never_answers_is_stopped_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "azurite-blob"
    fake.write_text("#!/bin/sh\necho 'fake azurite: listening soon'\nexec sleep 600\n")
    fake.chmod(0o755)
    server = AzuriteServer(tmp_path / "srv", azurite=fake, startup_timeout=1)
    with pytest.raises(AzuriteError, match="did not answer within 1 s") as excinfo:
        server.start()
    assert "listening soon" in str(excinfo.value)
    assert not server.running
    pid = server.pid
    assert pid is not None
    # Stopped and reaped: the pid is gone (or, if reused already, is not our sleep).
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    assert b"sleep" not in cmdline


# --- the embedded server -------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from sdk.local_server import ensure_local_server
    info = ensure_local_server(Path(sys.argv[1]))
    print(json.dumps({"pid": info.pid, "endpoint_url": info.endpoint_url}))
    """
)


def _ensure_in_subprocess(data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    result: dict[str, Any] = json.loads(out)
    return result


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def embedded_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "blobfs-data"
    yield data_dir
    stop_local_server(data_dir)


def test_embedded_server_starts_once_is_reused_and_stops(embedded_dir: Path) -> None:
    info = ensure_local_server(embedded_dir)
    assert _alive(info.pid)
    client = boto3.client(
        "s3",
        endpoint_url=info.endpoint_url,
        aws_access_key_id=info.access_key_id,
        aws_secret_access_key=info.secret_access_key,
        region_name="us-east-1",
        config=_NO_RETRY,
    )
    client.create_bucket(Bucket="kept")
    client.put_object(Bucket="kept", Key="k", Body=b"survives restarts")

    state_dir = embedded_dir / "seaweedfs"
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / "s3.json").stat().st_mode) == 0o600
    state = json.loads((state_dir / "state.json").read_text())
    assert state["pid"] == info.pid and state["secret_access_key"] == info.secret_access_key

    # Authentication is on: the generated key works, a wrong one does not.
    wrong = boto3.client(
        "s3",
        endpoint_url=info.endpoint_url,
        aws_access_key_id=info.access_key_id,
        aws_secret_access_key="wrong",
        region_name="us-east-1",
        config=_NO_RETRY,
    )
    with pytest.raises(ClientError):
        wrong.list_buckets()

    # A second call here, through a symlink, and from another process reuse the server.
    assert ensure_local_server(embedded_dir) == info
    link = embedded_dir.parent / "link-to-data"
    link.symlink_to(embedded_dir)
    assert ensure_local_server(link).pid == info.pid
    assert _result(_ensure_in_subprocess(embedded_dir))["pid"] == info.pid
    # That process has exited; the server it found goes on.
    assert _alive(info.pid)
    assert client.get_object(Bucket="kept", Key="k")["Body"].read() == b"survives restarts"

    assert stop_local_server(embedded_dir) is True
    assert not _alive(info.pid)
    assert stop_local_server(embedded_dir) is False

    # Started again: same data, same key, new process (and maybe new ports).
    again = ensure_local_server(embedded_dir)
    assert again.pid != info.pid
    assert again.access_key_id == info.access_key_id
    client = boto3.client(
        "s3",
        endpoint_url=again.endpoint_url,
        aws_access_key_id=again.access_key_id,
        aws_secret_access_key=again.secret_access_key,
        region_name="us-east-1",
        config=_NO_RETRY,
    )
    assert client.get_object(Bucket="kept", Key="k")["Body"].read() == b"survives restarts"


def test_embedded_server_started_by_a_process_outlives_it(embedded_dir: Path) -> None:
    first = _result(_ensure_in_subprocess(embedded_dir))
    assert _alive(first["pid"])
    assert ensure_local_server(embedded_dir).pid == first["pid"]


def test_embedded_server_concurrent_starts_share_one_server(embedded_dir: Path) -> None:
    procs = [_ensure_in_subprocess(embedded_dir) for _ in range(3)]
    pids = {_result(p)["pid"] for p in procs}
    assert len(pids) == 1
    (pid,) = pids
    running = [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and f"-dir={embedded_dir}".encode() in _cmdline(int(p))
    ]
    assert running == [str(pid)]


def test_embedded_server_replaces_a_dead_one(embedded_dir: Path) -> None:
    info = ensure_local_server(embedded_dir)
    os.kill(info.pid, 9)
    deadline = time.monotonic() + 10
    while _alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    again = ensure_local_server(embedded_dir)
    assert again.pid != info.pid and _alive(again.pid)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
