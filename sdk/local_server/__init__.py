"""SeaweedFS on loopback: the tests' S3 server and the embedded server of the ``local`` cluster.

:mod:`.server` (:class:`SeaweedServer`: one ``weed mini`` process, its command line and start),
:mod:`.ports` (free loopback ports), :mod:`.identities` (admin key, identities document,
secret files), :mod:`.probe` (readiness), :mod:`.pids` (detached processes by pid),
:mod:`.embedded` (the ``local`` cluster's server and its state file), :mod:`.errors`.
``python -m sdk.local_server DIR`` runs a foreground server for debugging.
"""

from sdk.local_server.embedded import (
    LocalServerInfo,
    ensure_local_server,
    local_server_status,
    stop_local_server,
)
from sdk.local_server.errors import SeaweedError
from sdk.local_server.identities import ADMIN_ACTIONS, admin_identities_config, generate_access_key
from sdk.local_server.ports import SeaweedPorts
from sdk.local_server.server import SeaweedServer, find_weed

__all__ = [
    "ADMIN_ACTIONS",
    "LocalServerInfo",
    "SeaweedError",
    "SeaweedPorts",
    "SeaweedServer",
    "admin_identities_config",
    "ensure_local_server",
    "find_weed",
    "generate_access_key",
    "local_server_status",
    "stop_local_server",
]
