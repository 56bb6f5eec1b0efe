"""What the mount tests share: a private configuration, registry and bucket per provider
(:class:`World`), and mounting and unmounting through the ``blobfs`` command."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from blobfs.mount import mountpoint
from sdk.client import Client
from sdk.config import Config
from tests.harness.clusters import cluster_for

MiB = 1024 * 1024
BIN = Path(sys.executable).parent
BLOBFS = str(BIN / "blobfs")
FAST = "attr_ttl=1,entry_ttl=1,dir_ttl=1,negative_ttl=1,memory=64M,readahead=8M"
REPO = Path(__file__).resolve().parents[2]


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class World:
    kind: str
    tmp: Path
    config: Config
    bucket: str
    env: dict[str, str]
    mounts: list[Path] = field(default_factory=list)

    @property
    def registry(self) -> Path:
        return self.tmp / "data" / "registry.sqlite3"

    def sdk(self, fn: Any) -> Any:
        """Run ``await fn(store)`` on the bucket's store, from sync test code."""

        async def main() -> Any:
            async with Client(self.config, registry_path=self.registry) as client:
                bucket, _ = await client.buckets.resolve_uri(f"blob:{self.bucket}")
                return await fn(await client.buckets.store_for(bucket))

        return asyncio.run(main())

    def put_many(self, objects: dict[str, bytes], metadata: dict[str, str] | None = None) -> None:
        async def put_all(store: Any) -> None:
            sem = asyncio.Semaphore(64)

            async def one(key: str, data: bytes) -> None:
                async with sem:
                    await store.put(key, data, metadata=metadata)

            await asyncio.gather(*(one(k, v) for k, v in objects.items()))

        self.sdk(put_all)

    def blobfs(
        self, *args: str, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        kw.setdefault("env", self.env)
        return subprocess.run([BLOBFS, *args], capture_output=True, text=True, check=False, **kw)

    def mount(self, source: str, where: Path, options: str = FAST) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        log = self.tmp / f"{where.name}.log"
        proc = self.blobfs("mount", source, str(where), "-o", f"{options},log_file={log}")
        assert proc.returncode == 0, proc.stderr + (log.read_text() if log.exists() else "")
        self.mounts.append(where)
        return where

    def umount(self, where: Path) -> None:
        pid = mountpoint.read_pid(where)
        proc = self.blobfs("umount", str(where))
        assert proc.returncode == 0, proc.stderr
        self.mounts.remove(where)
        assert_gone(where, pid)


def assert_gone(where: Path, pid: int | None) -> None:
    """No mount on ``where`` and no daemon process left."""
    if pid is not None:
        deadline = time.monotonic() + 30
        while mountpoint._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not mountpoint._alive(pid), f"daemon {pid} still running"
    assert not mountpoint.is_mounted(where), f"{where} still mounted"


def new_world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    endpoint_url: str | None = None,
) -> World:
    """A private configuration and registry with one new, empty bucket, on the provider
    named by ``request.param``; shared by the read and write mount tests.
    ``endpoint_url`` replaces the server's (a proxy in front of it)."""
    kind = str(request.param)
    server = request.getfixturevalue(f"{kind}_server")
    tmp = tmp_path_factory.mktemp(f"{name}-{kind}")
    cluster = cluster_for(kind, server)
    if endpoint_url is not None:
        cluster = replace(cluster, endpoint_url=endpoint_url)
    config = Config(
        clusters={cluster.name: cluster},
        current_cluster=cluster.name,
        owner="tester",
        path=tmp / "config.toml",
    )
    config.save()
    (tmp / "data").mkdir()
    env = dict(os.environ)
    env.update(
        BLOBFS_CONFIG=str(tmp / "config.toml"),
        BLOBFS_DATA_DIR=str(tmp / "data"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    w = World(kind=kind, tmp=tmp, config=config, bucket=bucket, env=env)

    async def create() -> None:
        async with Client(config, registry_path=w.registry) as client:
            await client.buckets.create(bucket)

    asyncio.run(create())
    return w


def unmount_all(w: World) -> None:
    for where in list(w.mounts):
        w.blobfs("umount", str(where))


def sh(cmd: str, **kw: Any) -> str:
    out: str = subprocess.run(
        cmd, shell=True, capture_output=True, text=True, check=True, **kw
    ).stdout
    return out


def objects(world: World, prefix: str) -> dict[str, Any]:
    """key -> ObjectInfo (with metadata, by HEAD) of every key under ``prefix``."""

    async def fn(store: Any) -> dict[str, Any]:
        keys = [info.key async for info in store.list(prefix)]
        return {key: await store.head(key) for key in keys}

    result: dict[str, Any] = world.sdk(fn)
    return result


#: A writer that keeps its file open: the test process must not hold the descriptor, or
#: every child it starts (``blobfs status`` ...) would close a copy of it on exec, and the
#: kernel sends the mount a FLUSH for each close -- which uploads the file.
HOLD = """
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
data = sys.stdin.buffer.read(size)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
view = memoryview(data)
while view:
    view = view[os.write(fd, view):]
print("written", flush=True)
for line in sys.stdin:
    if not line.startswith("append "):
        break
    os.write(fd, line[7:].rstrip("\\n").encode())
    print("appended", flush=True)
os.close(fd)
print("closed", flush=True)
"""


class Holder:
    """Another process that writes ``data`` to ``path`` and keeps the file open."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path), str(len(data))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=False,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        self._expect(b"written")

    def _expect(self, word: bytes) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == word, (line, self.proc.poll())

    def append(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"append {text}\n".encode())
        self.proc.stdin.flush()
        self._expect(b"appended")

    def close(self) -> None:
        """Close the file (which uploads it) and end the process."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"close\n")
            self.proc.stdin.close()
            self._expect(b"closed")
        assert self.proc.wait(30) == 0
