"""Progress display on stderr, so that `--json` output on stdout stays clean; silent when not a terminal or disabled."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def enabled() -> bool:
    return os.environ.get("COMPRESSBENCH_PROGRESS", "auto") != "off"


@contextmanager
def bar(description: str, total: int) -> Iterator[Progress | None]:
    """A progress bar with one task; yields None when progress is switched off (tests, CI logs)."""
    if not enabled():
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=not sys.stderr.isatty()) as progress:
        progress.add_task(description, total=total, status="")
        yield progress


def log(message: str) -> None:
    if enabled():
        console.print(message, highlight=False, soft_wrap=True)  # logs keep one line per message


@contextmanager
def quiet_root_logger(level: int = logging.ERROR, also: tuple[str, ...] = ()) -> Iterator[None]:
    """Silence libraries that advise through the root logger (ONNX Runtime's quantizer), and the loggers named in
    `also` that set their own level (NNCF's), for one call."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in also)]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, was in zip(loggers, previous, strict=True):
            logger.setLevel(was)


# Where third-party output goes while a step runs (`third_party_logs`); None: where it always went.
_log_folder: Path | None = None


@contextmanager
def third_party_logs(folder: Path) -> Iterator[None]:
    """While it is open, what the libraries a job calls print or log (ONNX Runtime, OpenVINO and NNCF write from
    C++ straight to the process's stdout and stderr) goes to one file a job in `folder` (`captured`), not to the
    terminal; the tool's own progress lines stay on the terminal."""
    global _log_folder
    previous, _log_folder = _log_folder, Path(folder)
    try:
        yield
    finally:
        _log_folder = previous


def log_name(label: str) -> str:
    """The name of the file a job's third-party output goes to, from its label (a recipe name)."""
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", label).strip("_") + ".log"


def log_file(label: str) -> Path | None:
    """The file a job's third-party output goes to (None when it is not being captured)."""
    return None if _log_folder is None else _log_folder / log_name(label)


@contextmanager
def captured(label: str) -> Iterator[Path | None]:
    """Send file descriptors 1 and 2 (C++ writes), Python's sys.stdout / sys.stderr (warnings, prints) and log
    records to `log_file(label)` while the block runs; the progress console keeps writing to the terminal through a
    copy of the original stderr."""
    path = log_file(label)
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "a", encoding="utf-8") as log:
        saved_out, saved_err = os.dup(1), os.dup(2)
        terminal = os.fdopen(os.dup(saved_err), "w", encoding="utf-8", errors="replace")
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        console.file = terminal
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # where sys.stdout is not fd 1
                yield path
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            console.file = None  # type: ignore[assignment]  # back to sys.stderr
            terminal.close()
            logging.getLogger().removeHandler(handler)
