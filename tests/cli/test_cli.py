"""The ``blobfs`` command end to end against SeaweedFS (S3) and Azurite, with a private
configuration file and data directory.

Most tests run the command in this process (click's runner, with the same arguments,
environment, working directory and exit codes): starting the console script costs 0.5-1 s
of imports per call, most of these tests' time.  Those about the process itself -- the
installed script (:func:`test_tree_round_trip`), Ctrl-C (:func:`test_continue_after_interrupt`),
the embedded server a fresh user's first command starts, shell completion -- run it as a
subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from blobfs.cli.main import main as blobfs_main
from sdk.config import Config
from sdk.providers.base import ObjectInfo, ProviderAdmin
from sdk.transfer import PART_SIZE
from tests.harness.clusters import cluster_for

BLOBFS = str(Path(sys.executable).with_name("blobfs"))
BIG = PART_SIZE * 2 + 4321  # a multipart upload of three parts, the last one short


@dataclass
class Cli:
    """Runs ``blobfs`` with a private configuration; ``bucket`` is a fresh bucket.

    As a subprocess (the installed console script), or with ``in_process`` through click's
    runner in this process: the same arguments, environment (variables not in ``env``
    unset), working directory, stdout, stderr and exit code.  An exception that escapes the
    command fails the test with its traceback, where the script would print it and exit 1.
    """

    env: dict[str, str]
    cwd: Path
    bucket: str = ""
    in_process: bool = False

    def __call__(self, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = self._invoke(args) if self.in_process else self._run(args)
        if code is not None:
            assert proc.returncode == code, (
                f"blobfs {' '.join(args)} exited {proc.returncode}, expected {code}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def _run(self, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BLOBFS, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def _invoke(self, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        env: dict[str, str | None] = {k: None for k in os.environ if k not in self.env}
        env.update(self.env)
        with contextlib.chdir(self.cwd):
            result = CliRunner().invoke(
                blobfs_main, list(args), env=env, prog_name="blobfs", catch_exceptions=False
            )
        return subprocess.CompletedProcess(
            ["blobfs", *args], result.exit_code, result.stdout, result.stderr
        )

    def blob(self, key: str = "") -> str:
        return f"blob:{self.bucket}/{key}"


def make_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOBFS_")}
    env["BLOBFS_CONFIG"] = str(tmp_path / "config.toml")
    env["BLOBFS_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    return env


@dataclass
class ServerCli(Cli):
    kind: str = ""
    server: Any = None


@pytest.fixture(params=["s3", "azure"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerCli]:
    """``blobfs`` in this process, pointed at a real server, with one new bucket (removed
    afterwards)."""
    yield from server_cli(request, tmp_path, in_process=True)


@pytest.fixture(params=["s3", "azure"])
def cli_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerCli]:
    """:func:`cli` as the installed console script, in a subprocess."""
    yield from server_cli(request, tmp_path, in_process=False)


def server_cli(
    request: pytest.FixtureRequest, tmp_path: Path, *, in_process: bool
) -> Iterator[ServerCli]:
    server = request.getfixturevalue(f"{request.param}_server")
    cluster = cluster_for(request.param, server)
    Config(
        clusters={cluster.name: cluster},
        current_cluster=cluster.name,
        owner="alice",
    ).save(tmp_path / "config.toml")
    work = tmp_path / "work"
    work.mkdir()
    run = ServerCli(
        env=make_env(tmp_path), cwd=work, in_process=in_process, kind=request.param, server=server
    )
    run.bucket = "b" + uuid.uuid4().hex[:12]
    assert run("mkbucket", run.bucket).stdout.strip() == f"blob:{run.bucket}"
    yield run
    run("rmbucket", "--force", run.bucket, code=None)


def make_tree(root: Path) -> None:
    (root / "empty").mkdir(parents=True)
    (root / "deep/er/empty too").mkdir(parents=True)
    (root / "deep/er/leaf.txt").write_text("leaf")
    (root / "naïve café").mkdir()
    (root / "naïve café/with space.txt").write_text("unicode and spaces")
    (root / "日本語 名前.bin").write_bytes(os.urandom(3000))
    (root / "zero").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(BIG))


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every directory (``None``) and file (content) under ``root``, by relative path."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = None
        for f in filenames:
            out[os.path.relpath(os.path.join(dirpath, f), root)] = Path(dirpath, f).read_bytes()
    return out


def copied(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """Sources of the ``SRC -> DST`` lines cp prints when piped, by last path component."""
    return sorted(
        line.split(" -> ")[0].rstrip("/").rsplit("/", 1)[-1]
        for line in proc.stdout.splitlines()
        if " -> " in line
    )


# -- transfers ----------------------------------------------------------------------------------


def test_tree_round_trip(cli_process: Cli) -> None:
    """Through the installed console script, as a user runs it."""
    src = cli_process.cwd / "src"
    make_tree(src)
    up = cli_process("cp", "-r", "src", cli_process.blob())
    assert len(copied(up)) == 5
    listing = cli_process("ls", "-r", cli_process.blob("src")).stdout.split("\n")
    assert "empty/" in listing and "deep/er/empty too/" in listing
    assert "naïve café/with space.txt" in listing

    cli_process("cp", "-r", cli_process.blob("src"), "out")
    assert snapshot(cli_process.cwd / "out") == snapshot(src)
    # modification times come back too
    assert (cli_process.cwd / "out/big.bin").stat().st_mtime == pytest.approx(
        (src / "big.bin").stat().st_mtime, abs=1e-3
    )
    long = cli_process("ls", "-l", "-h", cli_process.blob("src")).stdout
    assert "20M" in long or "16M" in long  # -h sizes


def test_update_skips_unchanged(cli: Cli) -> None:
    src = cli.cwd / "src"
    make_tree(src)
    cli("cp", "-r", "-u", "src", cli.blob())
    assert copied(cli("cp", "-r", "-u", "src", cli.blob())) == []

    leaf = src / "deep/er/leaf.txt"
    leaf.write_text("changed")
    future = time.time() + 30
    os.utime(leaf, (future, future))
    assert copied(cli("cp", "-r", "-u", "src", cli.blob())) == ["leaf.txt"]

    cli("cp", "-r", "-u", cli.blob("src"), "out")
    assert snapshot(cli.cwd / "out") == snapshot(src)
    # (-T: "out" exists now, and without -T cp would copy into it, as out/src)
    assert copied(cli("cp", "-r", "-u", "-T", cli.blob("src"), "out")) == []
    assert copied(cli("cp", "--update", cli.blob("src/big.bin"), "out/big.bin")) == []


def test_continue_resumes_a_cut_short_download(cli: Cli) -> None:
    data = os.urandom(BIG)
    (cli.cwd / "big.bin").write_bytes(data)
    old = time.time() - 3600
    os.utime(cli.cwd / "big.bin", (old, old))
    cli("cp", "big.bin", cli.blob("big.bin"))

    # A download cut short left a partial file under the final name: newer than the
    # blob, shorter.  Its head is zeros, so a full re-download would show.
    out = cli.cwd / "out.bin"
    cut = PART_SIZE + 12345
    out.write_bytes(b"\0" * cut)
    proc = cli("cp", "--continue", cli.blob("big.bin"), "out.bin")
    assert copied(proc) == ["big.bin"]
    got = out.read_bytes()
    assert len(got) == BIG and got[:cut] == b"\0" * cut and got[cut:] == data[cut:]
    # complete now: nothing more to do
    assert copied(cli("cp", "--continue", cli.blob("big.bin"), "out.bin")) == []

    # An interrupted --continue download keeps a resumable .NAME.blobfs-part.
    (cli.cwd / ".fresh.bin.blobfs-part").write_bytes(data[:cut])
    cli("cp", "--continue", cli.blob("big.bin"), "fresh.bin")
    assert (cli.cwd / "fresh.bin").read_bytes() == data
    assert not (cli.cwd / ".fresh.bin.blobfs-part").exists()

    # continuation is for downloads only
    err = cli("cp", "--continue", "big.bin", cli.blob("again.bin"), code=65).stderr
    assert "cannot copy" in err and "continuation" in err


def test_continue_after_interrupt(cli: Cli) -> None:
    """Ctrl-C in the middle of a --continue download, then resume: same bytes."""
    data = os.urandom(64 * 1024 * 1024)
    (cli.cwd / "huge.bin").write_bytes(data)
    cli("cp", "huge.bin", cli.blob("huge.bin"))
    proc = subprocess.Popen(
        [BLOBFS, "cp", "--continue", cli.blob("huge.bin"), "got.bin"],
        env=cli.env,
        cwd=cli.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    part = cli.cwd / ".got.bin.blobfs-part"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if part.exists() and part.stat().st_size > 0:
            proc.send_signal(2)  # SIGINT, as Ctrl-C
            break
        time.sleep(0.005)
    proc.wait(60)
    if proc.returncode == 0:
        pytest.skip("the download finished before it could be interrupted")
    assert proc.returncode == 130
    assert not (cli.cwd / "got.bin").exists()
    partial = part.read_bytes()
    assert partial == data[: len(partial)]  # always a valid prefix
    cli("cp", "--continue", cli.blob("huge.bin"), "got.bin")
    assert (cli.cwd / "got.bin").read_bytes() == data


def test_include_exclude_later_wins(cli: Cli) -> None:
    src = cli.cwd / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.bin", "keep.bin", "sub/d.bin", "sub/keep.bin"):
        (src / name).write_text(name)
    proc = cli("cp", "-r", "--exclude", "*.bin", "--include", "keep.bin", "src", cli.blob("one"))
    assert copied(proc) == ["a.txt", "b.txt", "keep.bin", "keep.bin"]
    proc = cli("cp", "-r", "--include", "keep.bin", "--exclude", "*.bin", "src", cli.blob("two"))
    assert copied(proc) == ["a.txt", "b.txt"]
    # anchored and directory patterns, and filters on the way down
    proc = cli("cp", "-r", "--exclude", "/sub/", "--exclude", "b.*", cli.blob("one"), "down")
    assert copied(proc) == ["a.txt", "keep.bin"]


def test_gitignore_style_ignore_files(cli: Cli) -> None:
    src = cli.cwd / "src"
    (src / "sub/build").mkdir(parents=True)
    (src / ".gitignore").write_text("*.log\nbuild/\n/only-top.txt\n")
    (src / "sub/.gitignore").write_text("!keep.log\n")
    for name in ("a.log", "only-top.txt", "x.txt", "sub/b.log", "sub/keep.log", "sub/only-top.txt"):
        (src / name).write_text(name)
    (src / "sub/build/out.o").write_text("o")
    (src / ".blobfsignore").write_text("x.txt\n")

    proc = cli("cp", "-r", "--exclude-from-files", ".gitignore", "src", cli.blob())
    assert copied(proc) == [".blobfsignore", ".gitignore", ".gitignore", "keep.log",
                            "only-top.txt", "x.txt"]  # fmt: skip
    # the default ignore file is .blobfsignore
    proc = cli("cp", "-r", "src", cli.blob("default"))
    assert "x.txt" not in copied(proc) and "a.log" in copied(proc)


def test_glob_sources(cli: Cli) -> None:
    src = cli.cwd / "src"
    src.mkdir()
    for name in ("a.txt", "b.txt", "c.bin"):
        (src / name).write_text(name)
    proc = cli("cp", "src/*.txt", cli.blob("up/"))
    assert copied(proc) == ["a.txt", "b.txt"]
    assert cli("glob", cli.blob("up/*")).stdout.split() == [
        cli.blob("up/a.txt"),
        cli.blob("up/b.txt"),
    ]
    (cli.cwd / "down").mkdir()
    proc = cli("cp", cli.blob("up/a*"), cli.blob("up/b*"), "down")
    assert sorted(os.listdir(cli.cwd / "down")) == ["a.txt", "b.txt"]
    # a pattern that matches nothing is an error for that source only
    proc = cli("cp", cli.blob("up/*.none"), cli.blob("up/a.txt"), "down2/", code=None)
    assert "cannot copy" in proc.stderr
    # a malformed pattern is bad input (65), said plainly
    for args in (["glob", cli.blob("up/[z-a].txt")], ["cp", cli.blob("up/[z-a]"), "down"]):
        proc = cli(*args, code=65)
        assert "range z-a is empty" in proc.stderr and "Traceback" not in proc.stderr
    # a key whose name cannot be local is refused before anything is written
    proc = cli("cp", cli.blob("up/.."), cli.blob("up/a.txt"), "down", code=65)
    assert "'..' cannot be a local file name" in proc.stderr
    assert sorted(os.listdir(cli.cwd)) == ["down", "src"]


def test_rm(cli: Cli) -> None:
    src = cli.cwd / "src"
    make_tree(src)
    cli("cp", "-r", "src", cli.blob())
    err = cli("rm", cli.blob("src"), code=1).stderr
    assert "recursive" in err
    cli("rm", cli.blob("src/zero"))
    cli("rm", cli.blob("src/*.bin"))
    assert cli("ls", cli.blob("src")).stdout.split("\n")[:2] == ["deep/", "empty/"]
    proc = cli("rm", "-r", cli.blob("src"))
    assert "removed" in proc.stdout
    assert cli("ls", cli.blob("src"), code=66).stderr
    assert cli("ls", cli.blob()).stdout == ""
    err = cli("rm", cli.blob("nothing"), cli.blob("nothing/either"), code=66).stderr
    assert err.count("cannot remove") == 2


def test_errors_name_the_source_and_go_on(cli: Cli) -> None:
    (cli.cwd / "ok.txt").write_text("ok")
    (cli.cwd / "dir").mkdir()
    proc = cli("cp", "missing.txt", "ok.txt", cli.blob("d/"), code=66)
    assert f"cannot copy {cli.cwd}/missing.txt to {cli.blob('d/missing.txt')}: " in proc.stderr
    assert copied(proc) == ["ok.txt"]  # the next source was still copied
    proc = cli("cp", "missing.txt", "dir", cli.blob("d/"), code=1)  # two kinds of failure
    assert "use recursive copy" in proc.stderr
    cli("cp", cli.blob("no/such/blob"), "x", code=66)

    # -T: the destination is the copy itself, so a file cannot land on a directory
    proc = cli("cp", "-T", cli.blob("d/ok.txt"), "dir", code=1)
    assert f"cannot copy {cli.blob('d/ok.txt')} to {cli.cwd}/dir: Is a directory" in proc.stderr
    proc = cli("cp", "-T", "ok.txt", cli.blob("d"), code=1)
    assert "Is a directory" in proc.stderr
    cli("cp", "-T", "ok.txt", "ok.txt", cli.blob("d"), code=2)
    # without -T the directory is a target to copy into
    cli("cp", cli.blob("d/ok.txt"), "dir")
    assert (cli.cwd / "dir/ok.txt").read_text() == "ok"
    cli("cp", "-t", "dir", cli.blob("d/ok.txt"))
    cli("cp", "-t", "nodir", cli.blob("d/ok.txt"), code=1)
    cli("cp", "ok.txt", "ok2.txt", code=65)  # local to local is not blobfs's job


# -- buckets ------------------------------------------------------------------------------------


def test_bucket_commands(cli: Cli) -> None:
    assert f"blob:{cli.bucket}" in cli("lsbucket").stdout.split()
    long = cli("lsbucket", "-l").stdout
    assert cli.bucket in long and "bucket-" in long
    stat = cli("statbucket", cli.bucket).stdout
    assert f"Name:     {cli.bucket}" in stat
    assert cli("statbucket", f"blob:{cli.bucket}").stdout == stat
    cli("statbucket", "no-such-bucket", code=66)
    cli("mkbucket", cli.bucket, code=73)
    cli("mkbucket", "Bad Name", code=65)

    (cli.cwd / "f").write_bytes(b"x" * 1000)
    cli("cp", "f", cli.blob("a/f"))
    du = cli("du", cli.bucket).stdout
    assert "Objects: 1" in du and "1000 bytes" in du

    cli("rmbucket", cli.bucket, code=1)  # not empty
    second = "c" + uuid.uuid4().hex[:12]
    cli("mkbucket", second)
    cli("rmbucket", "--force", cli.bucket, second)
    assert cli("lsbucket").stdout == ""
    cli("mkbucket", cli.bucket)  # for the fixture's clean-up


async def _provider_bucket(kind: str, server: Any, name: str, create: bool) -> None:
    admin = open_test_admin(kind, server)
    try:
        if create:
            await admin.create_bucket(name)
            store = await admin.open_bucket(name)
            await store.put("existing.txt", b"was there before")
            await store.close()
        else:
            store = await admin.open_bucket(name)
            keys = [e.key async for e in store.list() if isinstance(e, ObjectInfo)]
            await store.delete_many(keys)
            await store.close()
            await admin.delete_bucket(name)
    finally:
        await admin.close()


def open_test_admin(kind: str, server: Any) -> ProviderAdmin:
    if kind == "s3":
        from sdk.providers.s3.admin import S3Admin

        return S3Admin(
            endpoint_url=server.endpoint_url,
            region="us-east-1",
            credentials=server.credentials,
        )
    from sdk.providers.azure import AzureAdmin

    return AzureAdmin(
        endpoint_url=server.endpoint_url,
        credentials={"account_name": server.account_name, "account_key": server.account_key},
    )


def test_importbucket(cli: ServerCli) -> None:
    external = "ext-" + uuid.uuid4().hex[:12]
    asyncio.run(_provider_bucket(cli.kind, cli.server, external, create=True))
    try:
        common = ["importbucket", "--provider-bucket-name", external, "--name", "imported"]
        if cli.kind == "s3":
            creds = [
                "--provider", "s3", "--endpoint-url", cli.server.endpoint_url,
                "--region", "us-east-1", "--access-key-id", cli.server.access_key_id,
            ]  # fmt: skip
            cli(*common, *creds, "--secret-access-key", "wrong", code=77)
            cli(*common, *creds, "--secret-access-key", cli.server.secret_access_key)
        else:
            creds = ["--provider", "azure", "--account-url", cli.server.endpoint_url]
            cli(*common, *creds, "--account-key", cli.server.account_key)
        cli(*common, "--provider", "s3", code=2)  # no credentials
        assert cli("ls", "blob:imported").stdout.split() == ["existing.txt"]
        (cli.cwd / "f").write_text("new")
        cli("cp", "f", "blob:imported/f")
        assert "Imported: yes" in cli("statbucket", "imported").stdout
        cli("rmbucket", "imported")  # forgets it; the provider bucket stays
    finally:
        asyncio.run(_provider_bucket(cli.kind, cli.server, external, create=False))


def test_set_bucket_publicity(cli: Cli) -> None:
    out = cli("set-bucket-publicity", cli.bucket, "public").stdout
    assert "public" in out
    assert "Public:   yes" in cli("statbucket", cli.bucket).stdout
    cli("set-bucket-publicity", cli.bucket, "private")
    assert "Public:   no" in cli("statbucket", cli.bucket).stdout
    cli("set-bucket-publicity", cli.bucket, "open", code=2)


def test_sign_url(cli: Cli) -> None:
    (cli.cwd / "f").write_text("signed")
    cli("cp", "f", cli.blob("f"))
    url = cli("sign-url", "--expires", "1d2h3m", cli.blob("f")).stdout.strip()
    assert url.startswith("http")
    cli("sign-url", "--expires", "8d", cli.blob("f"), code=65)
    cli("sign-url", "--expires", "soon", cli.blob("f"), code=2)


# -- configuration and help ---------------------------------------------------------------------


def test_config_commands(tmp_path: Path) -> None:
    run = Cli(env=make_env(tmp_path), cwd=tmp_path, in_process=True)
    run(
        "config", "add-cluster", "lab", "--provider", "s3",
        "--endpoint-url", "http://127.0.0.1:9", "--access-key-id", "k",
        "--secret-access-key", "sekrit",
    )  # fmt: skip
    run("config", "add-cluster", "lab", "--provider", "aws", code=73)
    run("config", "add-cluster", "az", "--provider", "azure", "--account-name", "acct",
        "--account-key", "a2V5", "--use")  # fmt: skip
    run("config", "add-cluster", "bad", "--provider", "azure", code=2)
    shown = run("config", "show").stdout
    assert "* az" in shown and "lab" in shown and "sekrit" not in shown
    assert "https://acct.blob.core.windows.net" in shown
    assert "sekrit" in run("config", "show", "--show-secrets").stdout
    assert (tmp_path / "config.toml").stat().st_mode & 0o777 == 0o600
    run("config", "use-cluster", "lab")
    assert "* lab" in run("config", "show").stdout
    run("config", "use-cluster", "nope", code=78)
    run("config", "rm-cluster", "lab")
    shown = run("config", "show").stdout
    assert "lab" not in shown and "* local" in shown
    assert "* az" in run("--cluster", "az", "config", "show").stdout


def test_help_and_usage(tmp_path: Path) -> None:
    run = Cli(env=make_env(tmp_path), cwd=tmp_path, in_process=True)
    top = run("--help").stdout
    for command in ("cp", "ls", "rm", "glob", "lsbucket", "mkbucket", "config", "sign-url"):
        assert command in top
    assert "Exit codes" in top and "_BLOBFS_COMPLETE" in top
    assert "later" in run("cp", "--help").stdout or "last one" in run("cp", "--help").stdout
    run("cp", code=2)
    run("no-such-command", code=2)
    assert "Usage" in run(code=None).stdout + run(code=None).stderr  # no args: help
    env = dict(run.env, _BLOBFS_COMPLETE="bash_source")
    script = subprocess.run([BLOBFS], env=env, capture_output=True, text=True, check=False)
    assert "complete" in script.stdout


def test_local_cluster_needs_no_configuration(tmp_path: Path) -> None:
    if shutil.which("weed") is None and not Path(sys.executable).with_name("weed").exists():
        pytest.skip("no SeaweedFS binary")
    pytest.importorskip("sdk.local_server")
    run = Cli(env=make_env(tmp_path), cwd=tmp_path)
    # The first command, the script as a new user runs it, starts the embedded server; the
    # next ones use it from this process.
    again = replace(run, in_process=True)
    try:
        run("mkbucket", "zero-conf")
        (tmp_path / "f").write_text("local")
        again("cp", "f", "blob:zero-conf/f")
        assert again("ls", "blob:zero-conf").stdout.split() == ["f"]
        again("rm", "blob:zero-conf/f")
        again("rmbucket", "zero-conf")
    finally:
        run("local", "stop", code=None)
