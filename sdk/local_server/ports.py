"""The loopback ports of one ``weed mini`` process, chosen free and all different.

Every listener gets its own port, so two servers on one machine never collide and nothing is
reachable from outside.  A port is free when chosen; another process may still take it
before ``weed`` binds it, which :meth:`~sdk.local_server.SeaweedServer.start` handles by
trying again (:class:`~sdk.local_server.errors.PortTaken`).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sdk.local_server.errors import SeaweedError

# ``mini``'s maintenance worker dials the admin gRPC port as admin HTTP port + 10000 whatever
# ``-admin.port.grpc`` says (4.48), so the pair must be exactly this far apart.
ADMIN_GRPC_OFFSET = 10000


@dataclass(frozen=True)
class SeaweedPorts:
    """The loopback TCP ports of one ``weed mini`` process."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int
    admin: int
    admin_grpc: int

    @classmethod
    def allocate(cls) -> SeaweedPorts:
        """Free loopback ports, all different.

        The ports are free when chosen; another process can still take one before ``weed``
        binds it, which :meth:`SeaweedServer.start` handles by trying again.
        """
        with contextlib.ExitStack() as stack:
            held: list[int] = []
            # Hold every socket until all are chosen so that no port is handed out twice.
            while len(held) < 8:
                held.append(_hold_free_port(stack, 0))
            admin, admin_grpc = _hold_port_pair(stack, ADMIN_GRPC_OFFSET)
            master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = held
            return cls(
                master=master,
                master_grpc=master_grpc,
                volume=volume,
                volume_grpc=volume_grpc,
                filer=filer,
                filer_grpc=filer_grpc,
                s3=s3,
                s3_grpc=s3_grpc,
                admin=admin,
                admin_grpc=admin_grpc,
            )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeaweedPorts:
        return cls(**{name: int(data[name]) for name in cls.__dataclass_fields__})


def _hold_free_port(stack: contextlib.ExitStack, port: int) -> int:
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind(("127.0.0.1", port))
    return int(sock.getsockname()[1])


def _hold_port_pair(stack: contextlib.ExitStack, offset: int) -> tuple[int, int]:
    for _ in range(200):
        low_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        low_sock.bind(("127.0.0.1", 0))
        low = int(low_sock.getsockname()[1])
        if low + offset <= 65535:
            high_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                high_sock.bind(("127.0.0.1", low + offset))
            except OSError:
                high_sock.close()
            else:
                stack.enter_context(low_sock)
                stack.enter_context(high_sock)
                return low, low + offset
        low_sock.close()
    raise SeaweedError(f"found no two free loopback ports {offset} apart")
