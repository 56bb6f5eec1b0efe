"""botocore's data files, loaded lean: what a long-running process keeps of them in memory.

A botocore S3 client holds the service model, the endpoint rule set and ``endpoints.json``
for as long as it lives.  As botocore loads them (every object an ``OrderedDict``, the
documentation of every operation and shape kept, the endpoints of all ~400 AWS services)
they cost 12 MiB of a mount daemon's resident memory.  :class:`LeanJSONLoader` parses them
into plain dicts, empties the documentation strings (used only for docstrings; botocore
reads some of the keys, so they stay, with ``""``), and keeps
from ``endpoints.json`` only the services the sdk makes clients for: the same client in
about 9 MiB less (measured with ``RssAnon`` after creating one client).  Equal strings of
one file are also kept once: ``json`` shares repeated object keys but not values, and shape
names, types and locations repeat thousands of times (S3's model and rule set 1.7 MiB ->
1.3 MiB).  A table per file rather than :func:`sys.intern`: growing the interpreter's
interned-string table can itself cost a megabyte.

``endpoints.json`` is parsed whole first (4 MiB of objects for the ~400 services), the few
services kept are written back to text and that text is parsed again, so that nothing of
the whole parse survives it: its objects die together and Python's allocator returns their
arenas to the system, where objects kept from among them would have pinned them.  That is
1.0 MB of an idle mount daemon's RSS, and the file loads in 10 ms instead of 48.
"""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

from botocore.loaders import JSONFileLoader

#: Keys whose values only ever feed documentation.
DOC_KEYS = frozenset({"documentation", "documentationUrl"})
#: The services the sdk creates clients for (:mod:`sdk.providers.s3.services`).
SERVICES = frozenset({"s3", "sts", "iam"})


class _LeanObjects:
    """The ``object_pairs_hook`` of one file: plain dicts, documentation emptied, each
    distinct string value (in an object or a list) kept once."""

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}

    def _shared(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._strings.setdefault(value, value)
        if isinstance(value, list):
            strings = self._strings
            for i, item in enumerate(value):
                if isinstance(item, str):
                    value[i] = strings.setdefault(item, item)
        return value

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        shared = self._shared
        return {k: "" if k in DOC_KEYS and isinstance(v, str) else shared(v) for k, v in pairs}


class LeanJSONLoader(JSONFileLoader):  # type: ignore[misc]  # botocore is untyped
    """botocore's JSON file loader, keeping less (see the module docstring)."""

    def load_file(self, file_path: str) -> Any:
        for path, packed in ((file_path + ".json", False), (file_path + ".json.gz", True)):
            if os.path.isfile(path):
                with open(path, "rb") as fp:
                    raw = fp.read()
                text = (gzip.decompress(raw) if packed else raw).decode("utf-8")
                if os.path.basename(file_path) == "endpoints":
                    text = _kept_services(text)
                return json.loads(text, object_pairs_hook=_LeanObjects())
        return None


def _kept_services(text: str) -> str:
    """``endpoints.json`` with only the services in :data:`SERVICES`, as JSON text (see
    the module docstring for why text)."""
    data = json.loads(text)
    for partition in data.get("partitions", ()):
        services = partition.get("services")
        if isinstance(services, dict):
            partition["services"] = {k: v for k, v in services.items() if k in SERVICES}
    return json.dumps(data)


__all__ = ["DOC_KEYS", "SERVICES", "LeanJSONLoader"]
