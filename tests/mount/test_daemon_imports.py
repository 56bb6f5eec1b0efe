"""The mount daemon imports what serving needs and no more: whatever it imports stays resident
for the life of every mount (docs/BENCHMARKS.md, "Daemon memory").

A separate interpreter imports the daemon's entry point and opens the bucket exactly as
:func:`blobfs.mount.daemon.serve` does (the asyncio loop, the store, the first listing), then
reports the modules it holds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.mount.world import World, new_world

OPEN_LIKE_THE_DAEMON = """
import json, sys
import trio
import blobfs.mount.__main__
from blobfs import bridge
from blobfs.fs.names import root_key
from blobfs.mount import daemon

async def main():
    async with bridge.asyncio_loop() as aio:
        async with bridge.open_source(aio, sys.argv[1]) as (store, prefix):
            await store.first_entry(root_key(prefix), delimiter="/")

trio.run(main)
print(json.dumps(sorted(sys.modules)))
"""

#: What the daemon has no use for, and what pulls it in if it is imported after all.
NOT_IN_THE_DAEMON = {
    "click": "the command line (the daemon parses its arguments with argparse)",
    "tomli_w": "writing the configuration",
    "sdk.transfer": "copies between files and blobs",
    "s3transfer": "boto3's managed transfers, injected into S3 clients",
    "aiofiles": "aioboto3's managed transfers",
    "multiprocessing": "s3transfer",
}


@pytest.fixture(scope="module", params=["s3", "azure"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield new_world(request, tmp_path_factory, "imports")


def test_the_daemon_loads_no_command_line_or_transfer_modules(world: World) -> None:
    proc = subprocess.run(
        [sys.executable, "-P", "-c", OPEN_LIKE_THE_DAEMON, f"blob:{world.bucket}"],
        env=world.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    provider = "aiobotocore" if world.kind == "s3" else "azure.storage.blob"
    assert {"pyfuse3", "blobfs.fs.filesystem", provider} <= loaded
    unexpected = {name: why for name, why in NOT_IN_THE_DAEMON.items() if name in loaded}
    assert not unexpected, f"the daemon imports {unexpected}"
