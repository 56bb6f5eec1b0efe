"""botocore's data files as the sdk loads them (sdk/providers/s3/models.py): the same data as
botocore's own loader gives, documentation emptied, endpoints of other services left out,
and each distinct string of a file kept once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore
import pytest
from botocore.loaders import JSONFileLoader

from sdk.providers.s3.models import DOC_KEYS, SERVICES, LeanJSONLoader

DATA = Path(botocore.__file__).parent / "data"


def _without_docs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "" if k in DOC_KEYS and isinstance(v, str) else _without_docs(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_docs(v) for v in value]
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize(
    "name", ["s3/2006-03-01/service-2", "s3/2006-03-01/endpoint-rule-set-1", "partitions"]
)
def test_the_lean_model_is_botocores_without_documentation(name: str) -> None:
    lean = LeanJSONLoader().load_file(str(DATA / name))
    assert lean == _without_docs(JSONFileLoader().load_file(str(DATA / name)))
    # Each distinct string value is one object, however often it occurs.
    occurrences = list(_strings(lean))
    by_value: dict[str, set[int]] = {}
    for s in occurrences:
        by_value.setdefault(s, set()).add(id(s))
    assert all(len(ids) == 1 for ids in by_value.values())
    assert len(occurrences) > len(by_value)


def test_endpoints_keep_only_the_services_the_sdk_uses() -> None:
    lean = LeanJSONLoader().load_file(str(DATA / "endpoints"))
    full = json.loads((DATA / "endpoints.json").read_text())
    assert [p["partition"] for p in lean["partitions"]] == [
        p["partition"] for p in full["partitions"]
    ]
    for kept, original in zip(lean["partitions"], full["partitions"], strict=True):
        assert set(kept["services"]) == set(original["services"]) & SERVICES
        assert kept["services"] == _without_docs(
            {k: v for k, v in original["services"].items() if k in SERVICES}
        )
