"""Progress display for the command line, implementing the sdk progress interfaces.

In a terminal (stdout is a TTY) transfers show a rich live display: an overall bar and one
bar per file in flight, each with size, rate and time remaining; deletes and disk-usage scans
show a running count with a rate.  Piped, the same events become plain lines, one per file
(``SRC -> DST``) or removed blob, so logs stay readable and grep-able.  ``-q`` silences both;
errors always go to stderr as ``cannot copy SRC to DST: reason``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from yarl import URL

from blobfs.cli.formatting import display_uri, human_bytes
from sdk.progress import (
    AbstractDeleteProgress,
    AbstractRecursiveFileProgress,
    StorageProgressComplete,
    StorageProgressDelete,
    StorageProgressEnterDir,
    StorageProgressFail,
    StorageProgressLeaveDir,
    StorageProgressStart,
    StorageProgressStep,
)
from sdk.types import BucketUsage


@dataclass
class Output:
    """Where and how much to print, decided once per command."""

    verbosity: int = 0
    tty: bool = False
    out: Console | None = None
    err: Console | None = None

    @classmethod
    def detect(cls, verbosity: int) -> Output:
        tty = sys.stdout.isatty()
        # Plain consoles never emit control codes or wrap lines when piped.
        out = Console(highlight=False, soft_wrap=not tty)
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        return cls(verbosity=verbosity, tty=tty, out=out, err=err)

    @property
    def stdout(self) -> Console:
        assert self.out is not None
        return self.out

    @property
    def stderr(self) -> Console:
        assert self.err is not None
        return self.err

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    @property
    def live(self) -> bool:
        """Whether to draw live progress (a terminal, not quiet)."""
        return self.tty and not self.quiet

    def line(self, text: str) -> None:
        """An informational line on stdout (suppressed by ``-q``)."""
        if not self.quiet:
            self.stdout.print(text, markup=False)

    def error(self, text: str) -> None:
        """An error line on stderr (always shown)."""
        self.stderr.print(text, markup=False, style="red" if self.tty else None)


def _name(url: URL) -> str:
    return url.path.rstrip("/").rsplit("/", 1)[-1] or display_uri(url)


class TransferProgress(AbstractRecursiveFileProgress):
    """Progress of one ``cp`` command (all its sources); use as a context manager."""

    def __init__(self, output: Output) -> None:
        self._out = output
        self.files_done = 0
        self.bytes_done = 0
        self.failures = 0
        self._started = time.monotonic()
        self._tasks: dict[tuple[URL, URL], TaskID] = {}
        self._seen: dict[tuple[URL, URL], int] = {}
        self._expected_files: int | None = None
        self._progress: Progress | None = None
        self._total: TaskID | None = None
        if output.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", table_column=None),
                BarColumn(bar_width=30),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=output.stdout,
                transient=True,
            )
            self._total = self._progress.add_task("Total", total=None)

    def __enter__(self) -> TransferProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._out.live and (self.files_done or self.failures):
            self._out.line(self.summary())

    def expect(self, files: int, size: int) -> None:
        """Announce the total (from a count made alongside the copy) for the ETA."""
        self._expected_files = files
        if self._progress is not None and self._total is not None:
            self._progress.update(self._total, total=max(size, self.bytes_done))
            self._describe_total()

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        text = (
            f"copied {self.files_done} file{'s' if self.files_done != 1 else ''} "
            f"({human_bytes(self.bytes_done)}) in {elapsed:.1f} s, "
            f"{human_bytes(self.bytes_done / elapsed)}/s"
        )
        if self.failures:
            text += f"; {self.failures} failed"
        return text

    # -- events -------------------------------------------------------------------------------

    def start(self, data: StorageProgressStart) -> None:
        key = (data.src, data.dst)
        self._seen[key] = 0
        if self._progress is not None:
            self._tasks[key] = self._progress.add_task(_name(data.src), total=data.size)

    def step(self, data: StorageProgressStep) -> None:
        key = (data.src, data.dst)
        delta = data.current - self._seen.get(key, 0)
        self._seen[key] = data.current
        self._advance(delta)
        task = self._tasks.get(key)
        if self._progress is not None and task is not None:
            self._progress.update(task, completed=data.current)

    def complete(self, data: StorageProgressComplete) -> None:
        key = (data.src, data.dst)
        self._advance(data.size - self._seen.pop(key, 0))
        self.files_done += 1
        task = self._tasks.pop(key, None)
        if self._progress is not None:
            if task is not None:
                self._progress.remove_task(task)
            self._describe_total()
            if self._out.verbosity > 0:
                self._progress.console.print(self._line(data), markup=False)
        else:
            self._out.line(self._line(data))

    def enter(self, data: StorageProgressEnterDir) -> None:
        pass

    def leave(self, data: StorageProgressLeaveDir) -> None:
        pass

    def fail(self, data: StorageProgressFail) -> None:
        self.failures += 1
        key = (data.src, data.dst)
        self._seen.pop(key, None)
        task = self._tasks.pop(key, None)
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)
        self._out.error(
            f"cannot copy {display_uri(data.src)} to {display_uri(data.dst)}: {data.message}"
        )

    # -- helpers ------------------------------------------------------------------------------

    def _line(self, data: StorageProgressComplete) -> str:
        return f"{display_uri(data.src)} -> {display_uri(data.dst)}"

    def _advance(self, delta: int) -> None:
        self.bytes_done += delta
        if self._progress is not None and self._total is not None:
            self._progress.update(self._total, completed=self.bytes_done)

    def _describe_total(self) -> None:
        if self._progress is None or self._total is None:
            return
        of = f"/{self._expected_files}" if self._expected_files is not None else ""
        self._progress.update(self._total, description=f"Total {self.files_done}{of} files")


class DeleteProgress(AbstractDeleteProgress):
    """Progress of ``rm``: a live count with rate, or one ``removed URI`` line per blob."""

    def __init__(self, output: Output) -> None:
        self._out = output
        self.removed = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if output.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("Removing"),
                MofNCompleteColumn(),
                TextColumn("blobs"),
                BarColumn(bar_width=30),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=output.stdout,
                transient=True,
            )
            self._task = self._progress.add_task("rm", total=None, rate="")
        self._started = time.monotonic()

    def __enter__(self) -> DeleteProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            if self.removed:
                elapsed = time.monotonic() - self._started
                self._out.line(
                    f"removed {self.removed} blob{'s' if self.removed != 1 else ''} "
                    f"in {elapsed:.1f} s"
                )

    def expect(self, count: int) -> None:
        """Announce how many blobs will go (counted alongside), for the bar and ETA."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=max(count, self.removed))

    def delete(self, data: StorageProgressDelete) -> None:
        self.removed += 1
        if self._progress is not None and self._task is not None:
            elapsed = max(time.monotonic() - self._started, 1e-6)
            self._progress.update(
                self._task, completed=self.removed, rate=f"{self.removed / elapsed:.0f}/s"
            )
            if self._out.verbosity > 0:
                self._progress.console.print(f"removed {display_uri(data.uri)}", markup=False)
        else:
            self._out.line(f"removed {display_uri(data.uri)}")


class UsageProgress:
    """Running totals of a ``du`` scan: a live line in a terminal, nothing when piped."""

    def __init__(self, output: Output) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if output.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("Scanning: {task.completed} objects, {task.fields[size]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=output.stdout,
                transient=True,
            )
            self._task = self._progress.add_task("du", total=None, size="0 B", rate="")
        self._started = time.monotonic()

    def __enter__(self) -> UsageProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, usage: BucketUsage) -> None:
        if self._progress is None or self._task is None:
            return
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._progress.update(
            self._task,
            completed=usage.object_count,
            size=human_bytes(usage.total_bytes),
            rate=f"{usage.object_count / elapsed:.0f} objects/s",
        )
