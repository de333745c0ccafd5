"""Progress display on stderr, so that `--json` output on stdout stays clean; silent when not a terminal or disabled."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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
