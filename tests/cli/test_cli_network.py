"""``blobfs cp`` over a network that misbehaves, on SeaweedFS and Azurite.

``blobfs`` reaches the server through the fault-injecting proxy of tests/harness/proxies.py
(resets mid-request and mid-response, bodies cut short, stalls, dropped connections, "503
busy", latency; a seeded draw, bounded).  A file of several parts and a small tree go up
and come back down through it.  Each copy either exits 0 with exactly the right bytes in
place, or exits non-zero naming what failed; nothing half-written appears under a final
name, locally or in the bucket, and no multipart upload is left (S3).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sdk.client import Client
from sdk.config import Config
from sdk.providers.base import ObjectInfo
from tests.cli.test_cli import ServerCli, make_env, snapshot
from tests.harness.clusters import behind_proxy, cluster_for
from tests.harness.proxies import KINDS, FaultProxy, Faults

MiB = 1024 * 1024

#: Every kind of fault at once, on about a quarter of the requests, 30 faults at most.
FAULTS = Faults(
    latency=0.001,
    drop=0.04,
    reset_request=0.04,
    reset_response=0.04,
    truncate=0.04,
    stall=0.02,
    slowdown=0.05,
    after=512 * 1024,
    stall_for=1.0,
    most=30,
)


@pytest.fixture(params=["s3", "azure"])
def faulty_cli(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerCli, FaultProxy]]:
    """``blobfs`` reaching a real server through a :class:`FaultProxy`, one new bucket."""
    server = request.getfixturevalue(f"{request.param}_server")
    proxy, url = behind_proxy(request.param, server)
    cluster = replace(cluster_for(request.param, server), endpoint_url=url)
    Config(clusters={cluster.name: cluster}, current_cluster=cluster.name, owner="alice").save(
        tmp_path / "config.toml"
    )
    work = tmp_path / "work"
    work.mkdir()
    run = ServerCli(env=make_env(tmp_path), cwd=work, kind=request.param, server=server)
    run.bucket = "b" + uuid.uuid4().hex[:12]
    run("mkbucket", run.bucket)
    try:
        yield run, proxy
    finally:
        proxy.set(None)
        run("rmbucket", "--force", run.bucket, code=None)
        proxy.stop()


async def objects(cli: ServerCli, prefix: str) -> tuple[dict[str, bytes], list[str]]:
    """What the bucket holds under ``prefix``, read straight from the server, and the keys
    of multipart uploads in progress (S3)."""
    cluster = cluster_for(cli.kind, cli.server)
    config = Config(clusters={cluster.name: cluster}, current_cluster=cluster.name, owner="alice")
    registry = Path(cli.env["BLOBFS_DATA_DIR"]) / "registry.sqlite3"
    async with Client(config, registry_path=registry) as client:
        bucket, _ = await client.buckets.resolve_uri(f"blob:{cli.bucket}")
        store = await client.buckets.store_for(bucket)
        out: dict[str, bytes] = {}
        async for info in store.list(prefix):
            if isinstance(info, ObjectInfo):
                out[info.key] = await store.read_range(info.key, 0, info.size + 1)
        pending = getattr(store, "pending_uploads", None)
        return out, [] if pending is None else await pending()


def test_copies_over_a_faulty_network_are_exact_or_fail_cleanly(
    faulty_cli: tuple[ServerCli, FaultProxy],
) -> None:
    cli, proxy = faulty_cli
    rng = random.Random(5)
    src = cli.cwd / "src"
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(rng.randbytes(20 * MiB + 11))  # three parts
    for i in range(4):
        (src / "sub" / f"f{i}.txt").write_bytes(rng.randbytes(rng.randrange(1, 300_000)))
    proxy.set(FAULTS, seed=11)
    up = cli("cp", "-r", "src", cli.blob(), code=None)
    down = cli("cp", "-r", cli.blob("src"), "back", code=None) if up.returncode == 0 else None
    proxy.set(None)
    print(f"{cli.kind}: {dict(proxy.stats)}; up {up.returncode}, down {down and down.returncode}")
    assert sum(proxy.stats[k] for k in KINDS) >= 5, f"too few faults: {dict(proxy.stats)}"
    for proc in (up, down):
        if proc is not None and proc.returncode != 0:
            assert "cannot copy" in proc.stderr and "Traceback" not in proc.stderr
    # Locally: a final name holds exactly the source, and no temporary file is left.
    back = cli.cwd / "back"
    if down is not None and down.returncode == 0:
        assert snapshot(back) == snapshot(src)
    elif back.exists():
        mine = snapshot(src)
        for path, data in snapshot(back).items():
            assert ".blobfs-" not in path, f"a temporary file was left: {path}"
            assert data == mine[path], f"{path}: other bytes under the final name"
    # In the bucket: each object is absent or exactly its file.
    stored, uploads = asyncio.run(objects(cli, "src/"))
    for key, data in stored.items():
        if not key.endswith("/"):
            assert data == (cli.cwd / key).read_bytes(), f"{key}: other bytes stored"
    if up.returncode == 0:
        assert {"src/big.bin", "src/sub/f3.txt"} <= set(stored)
    assert uploads == [], "multipart uploads left behind"
