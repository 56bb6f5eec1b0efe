#!/usr/bin/env python3
"""What a crash half-way through a large copy costs: bytes sent again by the next mount.

On one local SeaweedFS, behind a pass-through TCP proxy that counts the bytes each way
(tests/harness/proxies.py), so that the count is the same for any blobfs tree:

1. mount the bucket, ``dd`` a local file of ``--size`` (1 GiB) into it;
2. once ``--kill-at`` (half) of it is staged, ``kill -9`` the daemon, clear the dead mount;
3. note what the server holds of the killed daemon's upload (its parts, by ListParts);
4. mount again: crash recovery stores the staged part of the file before the mount serves;
   the bytes the proxy carried to the server meanwhile are what recovery sent;
5. check the object is exactly the staged bytes, and that no multipart upload is left.

Run it against two trees to compare (the ``blobfs`` console script imports the first tree
on ``PYTHONPATH``)::

    sudo .venv/bin/python scripts/bench_recovery.py                   # this tree
    sudo .venv/bin/python scripts/bench_recovery.py --tree /work/main # another one

Needs root and fuse3.  Figures: docs/BENCHMARKS.md, "Crash recovery".
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_mount import BIN, can_run, run, unmount  # noqa: E402

from blobfs.write.sidecar import Sidecar  # noqa: E402
from sdk.client import Client  # noqa: E402
from sdk.config import ClusterConfig, Config  # noqa: E402
from sdk.local_server import SeaweedServer  # noqa: E402
from sdk.types import Provider  # noqa: E402
from tests.harness.proxies import FaultProxy  # noqa: E402

MiB = 1024 * 1024


def config_through(proxy: FaultProxy, server: SeaweedServer, work: Path) -> Config:
    cluster = ClusterConfig(
        name="bench",
        provider=Provider.S3,
        endpoint_url=proxy.url,
        region="us-east-1",
        credentials=server.credentials,
    )
    config = Config(
        clusters={"bench": cluster}, current_cluster="bench", owner="bench", path=work / "c.toml"
    )
    config.save()
    return config


def staged(staging: Path) -> tuple[Path, Sidecar] | None:
    for key_file in staging.glob("*/*.key"):
        side = Sidecar.load(key_file)
        if side is not None and side.key == "big.bin":
            return key_file.with_suffix(".data"), side
    return None


def mount(env: dict[str, str], uri: str, where: Path, log: Path) -> float:
    started = time.monotonic()
    proc = run([str(BIN / "blobfs"), "mount", uri, str(where), "-o", f"log_file={log}"], env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"mount failed: {proc.stderr}{log.read_text()[-2000:]}")
    return time.monotonic() - started


def daemon(where: Path) -> int:
    from blobfs.mount import mountpoint

    pid = mountpoint.read_pid(where)
    assert pid is not None, "no daemon"
    return pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction staged at the kill")
    parser.add_argument("--tree", type=Path, default=REPO, help="blobfs tree to run")
    args = parser.parse_args()
    if not can_run("bench_recovery", ("fusermount3",)):
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    server = SeaweedServer(work / "seaweedfs", memory_limit_mb=None).start()
    assert server.ports is not None
    proxy = FaultProxy(("127.0.0.1", server.ports.s3)).start()
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(args.tree.resolve()),
        BLOBFS_CONFIG=str(work / "c.toml"),
        BLOBFS_DATA_DIR=str(work / "data"),
        XDG_CACHE_HOME=str(work / "cache"),
    )
    where = work / "mnt"
    where.mkdir()
    try:
        config = config_through(proxy, server, work)

        async def create() -> str:
            # Imported with the server's static key, as bench_mount.import_bucket does, but
            # reached through the proxy.
            boto3.client("s3", **server.boto3_kwargs()).create_bucket(Bucket="bench")
            credentials = dict(server.credentials, endpoint_url=proxy.url, region_name="us-east-1")
            async with Client(config, registry_path=work / "data" / "registry.sqlite3") as c:
                bucket = await c.buckets.import_external(
                    Provider.S3, "bench", credentials, name="bench"
                )
                return f"blob:{bucket.name}"

        uri = asyncio.run(create())
        size = args.size_mib * MiB
        source = work / "source.bin"
        with open(source, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MiB))
        mount(env, uri, where, work / "first.log")
        pid = daemon(where)
        dd = subprocess.Popen(
            ["dd", f"if={source}", f"of={where}/big.bin", "bs=1M"],
            stderr=subprocess.DEVNULL,
        )
        staging = work / "cache" / "blobfs" / "staging"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            found = staged(staging)
            if found is not None and found[0].stat().st_size >= args.kill_at * size:
                break
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        dd.wait()
        run(["fusermount3", "-uz", str(where)])
        # What the killed process had written to its sockets still reaches the server:
        # wait until nothing moves, then look at what the server holds.
        quiet = proxy.stats["bytes_up"]
        while True:
            time.sleep(1.0)
            if proxy.stats["bytes_up"] == quiet:
                break
            quiet = proxy.stats["bytes_up"]
        found = staged(staging)
        assert found is not None, "nothing staged"
        data_file, _ = found
        staged_bytes = data_file.stat().st_size
        s3 = boto3.client("s3", **server.boto3_kwargs())
        held = 0  # in every upload of the file the server has (whatever the tree recorded)
        for upload in s3.list_multipart_uploads(Bucket="bench").get("Uploads", []):
            parts = s3.list_parts(Bucket="bench", Key="big.bin", UploadId=upload["UploadId"])
            held += sum(p["Size"] for p in parts.get("Parts", []))
        before = proxy.stats["bytes_up"]
        seconds = mount(env, uri, where, work / "second.log")
        sent = proxy.stats["bytes_up"] - before
        unmount(where)
        digest = hashlib.sha256()
        body = s3.get_object(Bucket="bench", Key="big.bin")["Body"]
        for chunk in iter(lambda: body.read(MiB), b""):
            digest.update(chunk)
        expected = hashlib.sha256()
        with open(source, "rb") as f:
            expected.update(f.read(staged_bytes))
        exact = digest.hexdigest() == expected.hexdigest()
        left = len(s3.list_multipart_uploads(Bucket="bench").get("Uploads", []))
        mib = staged_bytes / MiB
        print(f"tree {args.tree}: {args.size_mib} MiB copy, killed with {mib:.0f} MiB staged")
        print(f"  held by the killed daemon's upload on the server: {held / MiB:.0f} MiB")
        print(f"  sent again by the next mount's recovery:          {sent / MiB:.1f} MiB")
        print(
            f"  mount with recovery: {seconds:.1f} s, object exact: {exact}, uploads left: {left}"
        )
        return 0 if exact and not left else 1
    finally:
        if run(["mountpoint", "-q", str(where)]).returncode == 0:
            run(["fusermount3", "-uz", str(where)])
        proxy.stop()
        server.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
