"""The durability contract on a real mount when the S3 server goes away.

The module runs its own SeaweedFS (it overrides the session's ``s3_server``), so stopping it
disturbs no other test.  The server is stopped and started again on the same ports, as a
restarted service would be:

* while ``dd`` copies a large file into the mount: the server stops half-way, data keeps
  arriving during the outage, the copy ends (``close()`` uploads) while the server is still
  down, and it comes back two seconds later.  Either the copy succeeds and the object holds
  exactly the source bytes, or ``dd`` reports an error; in every case the bucket never holds
  bytes that were not written (a multipart upload completed with missing or stale parts), and no
  multipart upload is left behind;
* while a file is being closed: ``close()`` fails with EIO instead of returning success
  over data that is not stored, and nothing partial appears;
* while ``blobfs flush`` runs: it fails with a clear message naming the file (and exit 75
  with ``--timeout``), ``blobfs status`` shows the file and the error, and a flush once
  the server is back stores it.

The last two mount with a small ``retries=``: what they check is what happens once the
retries are spent, and the default spends 6-11 s per request (the first test keeps it: its
copy should ride out a short outage).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.harness.servers import STOP_SECONDS, SeaweedServer
from tests.mount.world import FAST, Holder, World, new_world, unmount_all

pytestmark = pytest.mark.mount

MiB = 1024 * 1024
#: Retries and failures are logged at INFO: the mount logs tell what happened.
OPTIONS = FAST + ",log_level=info"
#: A close fails once one retry of its upload failed too.
CLOSE_RETRIES = 1
#: Three tries: a failing flush takes a second or more, so ``flush --timeout 0.5`` finds
#: the upload still going (each try at a refused port took 0.3-1 s here).
FLUSH_RETRIES = 2
#: Size of the copy: several multipart parts (8 MiB) before, during and after the outage.
COPY_MIB = 80

if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this module's own, which its tests stop and start."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs-faults"), auth=True)
    server.start()
    try:
        yield server
    finally:
        stop(server)
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="module", params=["s3"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    w = new_world(request, tmp_path_factory, "faults")
    yield w
    unmount_all(w)


class Bucket:
    """Plain boto3 on the provider bucket behind ``world.bucket``: what is really stored."""

    def __init__(self, world: World, server: SeaweedServer) -> None:
        async def name(store: Any) -> str:
            return str(store.bucket_name)

        self.name: str = world.sdk(name)
        self.client = boto3.client("s3", **server.boto3_kwargs())

    def body(self, key: str) -> bytes | None:
        try:
            got = self.client.get_object(Bucket=self.name, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        data: bytes = got["Body"].read()
        return data

    def uploads(self) -> list[str]:
        listed = self.client.list_multipart_uploads(Bucket=self.name)
        return [u["Key"] for u in listed.get("Uploads", [])]


def stop(server: SeaweedServer) -> None:
    """Stop the server, killing it after STOP_SECONDS (the clients see the same refused
    connections either way)."""
    server.stop(timeout=STOP_SECONDS)


def retries_before_eio(log: Path) -> int:
    """How many retries the daemon logged (sdk.retry logs each) before its first close
    failed."""
    lines = log.read_text().splitlines()
    failed = next(i for i, line in enumerate(lines) if "flush: StorageFailure" in line)
    return sum(1 for line in lines[:failed] if "sdk.retry: Retrying" in line)


def restart(server: SeaweedServer) -> None:
    """Start the stopped server on the ports its clients know."""
    ports = server.ports
    assert ports is not None
    server.start(ports=ports)
    assert server.ports == ports


def check_stored(bucket: Bucket, key: str, source: bytes, *, complete: bool) -> str:
    """The object under ``key`` is absent, or the first bytes of ``source`` (all of them if
    ``complete``); nothing else.  Returns what was found, for the failure messages."""
    stored = bucket.body(key)
    if stored is None:
        assert not complete, f"{key}: reported stored, but missing"
        return "absent"
    digest = hashlib.sha256(stored).hexdigest()[:12]
    if complete:
        assert len(stored) == len(source), f"{key}: {len(stored)} of {len(source)} bytes"
    assert stored == source[: len(stored)], f"{key}: {len(stored)} bytes, not what was written"
    return f"{len(stored)} bytes ({digest})"


def test_server_stopped_during_a_large_copy(
    world: World, s3_server: SeaweedServer, tmp_path: Path
) -> None:
    bucket = Bucket(world, s3_server)
    source = random.Random(6).randbytes(COPY_MIB * MiB)
    mnt = world.mount(f"blob:{world.bucket}", world.tmp / "copy", OPTIONS)
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    dd = subprocess.Popen(
        ["dd", f"if={fifo}", f"of={mnt}/big.bin", "bs=1M", "iflag=fullblock"],
        stderr=subprocess.PIPE,
        text=True,
    )
    stopped = threading.Event()
    try:
        with open(fifo, "wb") as feed:
            for i in range(COPY_MIB):
                if i == COPY_MIB // 2:
                    # In a thread: a graceful stop takes seconds, and data keeps coming.
                    threading.Thread(target=lambda: (stop(s3_server), stopped.set())).start()
                if i >= COPY_MIB // 2 and not stopped.is_set():
                    time.sleep(0.1)  # spread the rest of the writes over the outage
                try:
                    feed.write(source[i * MiB : (i + 1) * MiB])
                    feed.flush()
                except BrokenPipeError:
                    break  # dd gave up: its error is checked below
        # The feed has ended: dd closes the file (uploading) while the server is still down.
        stopped.wait(60)
        time.sleep(2)
        restart(s3_server)
        _, err = dd.communicate(timeout=600)
    finally:
        if not s3_server.running:
            stopped.wait(60)
            restart(s3_server)
        if dd.poll() is None:
            dd.kill()
    # The mount's own view, then what is in the bucket once every upload has ended.
    seen = (mnt / "big.bin").read_bytes() if dd.returncode == 0 else None
    world.umount(mnt)
    found = check_stored(bucket, "big.bin", source, complete=dd.returncode == 0)
    if dd.returncode == 0:
        assert seen == source, "the mount read back other bytes than were written"
    else:
        assert "Input/output error" in err, err
    print(f"dd exit {dd.returncode}, stored: {found}")
    assert bucket.uploads() == [], f"multipart uploads left behind (dd {dd.returncode}, {found})"
    log = (world.tmp / "copy.log").read_text()
    # sdk.retry logs each retry at INFO; a copy that never met the outage tested nothing.
    assert "Retrying" in log or "StorageFailure" in log, "the outage never reached the daemon"


@pytest.mark.parametrize("size", [MiB, 20 * MiB], ids=["single-put", "multipart"])
def test_close_while_the_server_is_stopped_fails_with_eio(
    world: World, s3_server: SeaweedServer, size: int
) -> None:
    bucket = Bucket(world, s3_server)
    data = random.Random(size).randbytes(size)
    key = f"close-{size}.bin"
    options = f"{OPTIONS},retries={CLOSE_RETRIES}"
    mnt = world.mount(f"blob:{world.bucket}", world.tmp / f"close-{size}", options)
    fd = os.open(mnt / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    stop(s3_server)
    try:
        with pytest.raises(OSError) as failure:
            os.close(fd)
        assert failure.value.errno == errno.EIO, failure.value
    finally:
        restart(s3_server)
    world.umount(mnt)
    if size == MiB:  # one PUT, nothing uploaded before: the close tried it 1 + retries times
        assert retries_before_eio(world.tmp / f"close-{size}.log") == CLOSE_RETRIES
    # The kernel's release after the failed close may store the file once the server is
    # back (the data is still staged); what must never be there is anything partial.
    found = check_stored(bucket, key, data, complete=False)
    if found != "absent":
        assert bucket.body(key) == data, found
    print(f"after the failed close: {found}")
    assert bucket.uploads() == [], f"multipart uploads left behind ({found})"


def test_flush_fails_clearly_while_the_server_is_stopped(
    world: World, s3_server: SeaweedServer
) -> None:
    bucket = Bucket(world, s3_server)
    data = random.Random(16).randbytes(300_000)
    options = f"{OPTIONS},retries={FLUSH_RETRIES}"
    mnt = world.mount(f"blob:{world.bucket}", world.tmp / "flush", options)
    # Written and still open in another process: only a flush stores it now.
    holder = Holder(mnt / "pending.bin", data)
    try:
        stop(s3_server)
        try:
            started = time.monotonic()
            proc = world.blobfs("flush", str(mnt))
            took = time.monotonic() - started
            assert proc.returncode == 1, (proc.returncode, proc.stderr)
            assert "blobfs flush: pending.bin: not stored:" in proc.stderr, proc.stderr
            print(f"flush failed after {took:.1f} s: {proc.stderr.strip()}")
            status = json.loads(world.blobfs("status", "--json", str(mnt)).stdout)
            assert [f["path"] for f in status["unsaved"]["files"]] == ["pending.bin"]
            failures = [e for e in status["errors"]["recent"] if e["path"] == "pending.bin"]
            assert failures and "next close" in failures[-1]["retry"], status["errors"]
            # Waiting a bounded time: exit 75, the upload goes on.
            proc = world.blobfs("flush", "--timeout", "0.5", str(mnt))
            assert proc.returncode == 75 and "still uploading" in proc.stderr, proc.stderr
        finally:
            restart(s3_server)
        assert bucket.body("pending.bin") in (None, data)
        proc = world.blobfs("flush", str(mnt))
        assert proc.returncode == 0, proc.stderr
        assert bucket.body("pending.bin") == data
    finally:
        holder.close()
    world.umount(mnt)
    assert bucket.uploads() == []
