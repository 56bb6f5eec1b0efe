"""A real mount over a network that misbehaves, on SeaweedFS and Azurite.

The mount reaches the server through the fault-injecting proxy of tests/harness/proxies.py,
which strikes requests with latency, resets mid-request and mid-response, responses cut
short or stalled, connections dropped at once and "503 busy" answers (a seeded draw,
bounded in number).  Sequential and random reads, a streamed write of several parts, small
files and renames run through it.  Every operation must either succeed with exactly the
right bytes or fail with EIO; afterwards, with the network sound again, the bucket must
hold no half-written object (a key is absent, or holds exactly what was written) and no
multipart upload (S3).
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.clusters import behind_proxy
from tests.harness.proxies import KINDS, FaultProxy, Faults
from tests.mount.world import FAST, World, new_world, unmount_all

pytestmark = pytest.mark.mount

MiB = 1024 * 1024
if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
    pytest.skip("needs /dev/fuse and root", allow_module_level=True)

#: Every kind of fault at once, on about a quarter of the requests, 40 faults at most.
MIXED = Faults(
    latency=0.001,
    drop=0.04,
    reset_request=0.04,
    reset_response=0.04,
    truncate=0.04,
    stall=0.02,
    slowdown=0.05,
    after=512 * 1024,
    stall_for=1.5,
    most=40,
)


@dataclass
class Net:
    world: World
    proxy: FaultProxy


@pytest.fixture(scope="module", params=["s3", "azure"])
def net(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    kind = str(request.param)
    proxy, url = behind_proxy(kind, request.getfixturevalue(f"{kind}_server"))
    world = new_world(request, tmp_path_factory, "net", endpoint_url=url)
    try:
        yield Net(world, proxy)
    finally:
        proxy.set(None)
        unmount_all(world)
        proxy.stop()


@dataclass
class Outcomes:
    """What each operation came to: done with the right bytes, or EIO."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def run(self, name: str, operation: Callable[[], Any]) -> bool:
        try:
            operation()
        except OSError as e:
            assert e.errno == errno.EIO, f"{name}: {e!r}, not EIO"
            self.failed.append(name)
            return False
        self.done.append(name)
        return True


def read_file(path: Path) -> bytes:
    with open(path, "rb") as f:
        return b"".join(iter(lambda: f.read(MiB), b""))


def write_file(path: Path, data: bytes, chunk: int = MiB) -> None:
    with open(path, "wb") as f:
        for start in range(0, len(data), chunk):
            f.write(data[start : start + chunk])


def test_a_misbehaving_network_loses_nothing(net: Net) -> None:
    world, proxy = net.world, net.proxy
    rng = random.Random(17)
    seq, rand = rng.randbytes(24 * MiB), rng.randbytes(24 * MiB)
    world.put_many({"seq.bin": seq, "rand.bin": rand})
    mnt = world.mount(f"blob:{world.bucket}", world.tmp / "net", FAST + ",log_level=info")
    big = rng.randbytes(20 * MiB + 3)
    small = {f"small{i}.txt": rng.randbytes(4096) for i in range(8)}
    written: dict[str, bytes] = {}  # what a successful close stored
    attempted: dict[str, bytes] = {}  # what a failed close may or may not have stored
    out = Outcomes()
    proxy.set(MIXED, seed=3)
    try:

        def sequential() -> None:
            assert read_file(mnt / "seq.bin") == seq, "sequential read: other bytes"

        out.run("sequential read", sequential)

        def random_reads() -> None:
            fd = os.open(mnt / "rand.bin", os.O_RDONLY)
            try:
                for _ in range(40):
                    size = rng.choice([4096, 65536, MiB])
                    offset = rng.randrange(0, len(rand) - size)
                    assert os.pread(fd, size, offset) == rand[offset : offset + size]
            finally:
                os.close(fd)

        out.run("random reads", random_reads)
        for name, data in {"big.bin": big, **small}.items():
            ok = out.run(f"write {name}", lambda n=name, d=data: write_file(mnt / n, d))
            (written if ok else attempted)[name] = data
        for old, new in (("small0.txt", "renamed0.txt"), ("big.bin", "moved.bin")):
            if old in written and out.run(
                f"rename {old}", lambda o=old, n=new: os.rename(mnt / o, mnt / n)
            ):
                written[new] = written.pop(old)
        for name, data in written.items():
            out.run(f"read back {name}", lambda n=name, d=data: check_read(mnt / n, d))
    finally:
        proxy.set(None)
    world.umount(mnt)

    print(f"{world.kind}: {proxy.stats}; done {len(out.done)}, EIO {out.failed}")
    struck = [kind for kind in KINDS if proxy.stats[kind]]
    assert len(struck) >= 5 and proxy.struck() >= 10, f"too few faults: {dict(proxy.stats)}"
    assert len(out.done) >= 0.8 * (len(out.done) + len(out.failed)), out.failed

    def stored(store: Any) -> dict[str, bytes | None]:
        async def body(key: str) -> bytes | None:
            try:
                info = await store.head(key)
            except Exception:
                return None
            data: bytes = await store.read_range(key, 0, info.size) if info.size else b""
            return data

        async def collect() -> dict[str, bytes | None]:
            keys = {*written, *attempted, "small0.txt", "big.bin"}
            return {key: await body(key) for key in keys}

        return collect()

    found: dict[str, bytes | None] = world.sdk(stored)
    for key, data in written.items():
        assert found[key] == data, f"{key}: closed with success, but not stored exactly"
    for key, data in attempted.items():
        assert found[key] in (None, data), f"{key}: a failed write left other bytes"
    for gone in ("small0.txt", "big.bin"):
        if gone not in written and gone not in attempted:
            assert found[gone] is None, f"{gone} renamed, but still there"
    if world.kind == "s3":

        async def uploads(store: Any) -> list[str]:
            pending: list[str] = await store.pending_uploads()
            return pending

        assert world.sdk(uploads) == [], "multipart uploads left behind"


def check_read(path: Path, data: bytes) -> None:
    assert read_file(path) == data, f"{path.name}: read back other bytes than were written"
