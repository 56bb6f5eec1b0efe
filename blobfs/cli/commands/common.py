"""What every sub-command shares: global options, the sdk client, errors and exit codes."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import click

from blobfs.cli.progress import Output
from sdk.client import Client
from sdk.config import Config, load_config
from sdk.errors import (
    AlreadyExists,
    BlobfsError,
    ConfigError,
    PermissionDenied,
    ResourceNotFound,
    TransientError,
)

log = logging.getLogger("blobfs")


class Exit(enum.IntEnum):
    """Exit codes scripts can rely on (listed in ``blobfs --help``; sysexits.h values)."""

    OK = 0
    FAILURE = 1  # the operation failed; for cp/rm: some sources failed, the rest ran
    USAGE = 2  # click's own code for a bad option or argument
    DATA = 65  # EX_DATAERR: invalid input (bad bucket name, URI, duration, ...)
    NOT_FOUND = 66  # EX_NOINPUT: a bucket, blob or local path does not exist
    SOFTWARE = 70  # EX_SOFTWARE: an internal error (a bug; run with -v for the traceback)
    EXISTS = 73  # EX_CANTCREAT: a bucket or cluster of that name already exists
    TEMPORARY = 75  # EX_TEMPFAIL: the provider is unreachable or overloaded; try again
    PERMISSION = 77  # EX_NOPERM: the provider refused the credentials
    CONFIG = 78  # EX_CONFIG: the configuration is missing or wrong
    INTERRUPTED = 130  # 128 + SIGINT

    def __str__(self) -> str:
        return str(self.value)


def exit_code(exc: BaseException) -> Exit:
    """The exit code a failure maps to."""
    if isinstance(exc, ConfigError):
        return Exit.CONFIG
    if isinstance(exc, ResourceNotFound | FileNotFoundError):
        return Exit.NOT_FOUND
    if isinstance(exc, PermissionDenied | PermissionError):
        return Exit.PERMISSION
    if isinstance(exc, AlreadyExists | FileExistsError):
        return Exit.EXISTS
    if isinstance(exc, TransientError):
        return Exit.TEMPORARY
    if isinstance(exc, BlobfsError | OSError):
        return Exit.FAILURE
    if isinstance(exc, ValueError):
        return Exit.DATA
    return Exit.SOFTWARE


def describe(exc: BaseException) -> str:
    """The reason part of an error message: short, without the path (said elsewhere)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass
class Outcome:
    """Failures of a command that goes on after errors; gives the final exit code.

    All failures of one kind give that kind's code (e.g. every source missing: 66);
    mixed kinds give 1.
    """

    codes: list[Exit] = field(default_factory=list)

    def failed(self, exc: BaseException) -> None:
        self.codes.append(exit_code(exc))

    @property
    def code(self) -> Exit:
        if not self.codes:
            return Exit.OK
        first = self.codes[0]
        return first if all(c == first for c in self.codes) else Exit.FAILURE


@dataclass
class CliState:
    """Global options, stored as the click context object."""

    cluster: str | None = None
    verbosity: int = 0
    _output: Output | None = None

    @property
    def output(self) -> Output:
        if self._output is None:
            self._output = Output.detect(self.verbosity)
        return self._output

    def config(self) -> Config:
        config = load_config()
        if self.cluster:
            config = replace(config, current_cluster=self.cluster)
            config.cluster()  # fails with the list of known clusters
        return config

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        async with Client.from_config(self.config()) as client:
            yield client


def state(ctx: click.Context) -> CliState:
    obj = ctx.find_object(CliState)
    if obj is None:  # a sub-command invoked on its own (tests)
        obj = ctx.ensure_object(CliState)
    return obj


def fail(output: Output, message: str, code: Exit) -> NoReturn:
    """Print ``blobfs: message`` on stderr and exit with ``code``."""
    output.error(f"blobfs: {message}")
    raise click.exceptions.Exit(int(code))


def run(ctx: click.Context, body: Coroutine[Any, Any, Exit | None]) -> NoReturn:
    """Run a command's async body; map what escapes it to a message and an exit code."""
    st = state(ctx)
    try:
        # A plain selector loop, explicitly, whatever policy an imported library installed.
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            code = runner.run(body) or Exit.OK
    except KeyboardInterrupt:
        fail(st.output, "interrupted", Exit.INTERRUPTED)
    except (click.exceptions.Exit, click.ClickException):
        raise
    except Exception as e:
        code = exit_code(e)
        if code is Exit.SOFTWARE or st.verbosity > 1:
            log.error("unexpected error", exc_info=e)
        fail(st.output, f"error: {describe(e)}", code)
    raise click.exceptions.Exit(int(code))
