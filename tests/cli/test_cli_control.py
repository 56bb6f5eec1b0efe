"""``blobfs status``, ``flush``, ``invalidate`` and ``install-helper --systemd`` where no mount
is needed: what they say about a path that is not a blobfs mount, a bad ``metrics=``
option, and what the helper installs for the systemd unit.  (On real mounts:
``tests/mount/test_mount_control.py``.)"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from blobfs.options import OptionError, parse_options
from sdk.retry import RetryPolicy

BLOBFS = str(Path(sys.executable).with_name("blobfs"))


def blobfs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BLOBFS, *args], capture_output=True, text=True, check=False, timeout=60, cwd="/"
    )


def test_commands_name_what_is_not_a_blobfs_mount(tmp_path: Path) -> None:
    proc = blobfs("flush", str(tmp_path))
    assert proc.returncode == 66, proc.stderr
    assert f"blobfs flush: {tmp_path} is not a mount point" in proc.stderr
    proc = blobfs("status", "/proc")
    assert proc.returncode == 66 and "is a proc mount, not blobfs" in proc.stderr
    proc = blobfs("invalidate", "/proc", "/proc/self")
    assert proc.returncode == 66 and "not blobfs" in proc.stderr


def test_metrics_address_is_loopback_unless_named(tmp_path: Path) -> None:
    def address(value: str) -> str | None:
        return parse_options([f"metrics={value}"]).metrics

    assert parse_options([]).metrics is None
    assert address("9100") == "127.0.0.1:9100"
    assert address("0.0.0.0:9100") == "0.0.0.0:9100"
    assert address("[::1]:9100") == "[::1]:9100"
    assert address("/run/blobfs-metrics.sock") == "/run/blobfs-metrics.sock"
    # A bad one stops the mount before anything starts, as a usage error.
    for value in ("nonsense", "127.0.0.1:99999", "relative/path.sock"):
        proc = blobfs("mount", "blob:x", str(tmp_path), "-o", f"metrics={value}")
        assert proc.returncode == 2, proc.stderr
        assert "expected [HOST:]PORT" in proc.stderr


def test_retries_option_sets_the_daemons_retry_policy() -> None:
    assert parse_options([]).retry_policy() == RetryPolicy()  # the sdk's default: 8 tries
    options = parse_options(["retries=0"])
    assert options.retry_policy().attempts == 1 and options.to_list() == ["retries=0"]
    for value, message in (("-1", "negative count"), ("two", "not a whole number")):
        with pytest.raises(OptionError, match=message):
            parse_options([f"retries={value}"])


def test_install_helper_installs_the_unit_and_the_docs_it_names(tmp_path: Path) -> None:
    proc = blobfs("install-helper", "--systemd", "--root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    unit_path = tmp_path / "etc/systemd/system/blobfs@.service"
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(unit_path.read_text())
    documentation = unit["Unit"]["Documentation"]
    assert documentation.startswith("file:///")
    page = tmp_path / documentation.removeprefix("file:///")
    assert page.is_file() and "blobfs invalidate" in page.read_text()
    assert unit["Service"]["ExecReload"].split()[1:] == ["invalidate", "%f"]
