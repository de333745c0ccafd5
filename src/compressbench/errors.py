"""The one error type users see: a single line naming the file, field, step or layer at fault."""

from collections.abc import Iterator
from typing import Any


class CompressbenchError(Exception):
    """Bad input or an impossible request. The CLI prints its message as one line and exits non-zero."""


def raised_with(error: BaseException) -> Iterator[Any]:
    """Every local value of every frame `error` passed through, outermost first: where a one-line message finds
    the file or the ONNX node a library was handling when it raised."""
    frame = error.__traceback__
    while frame is not None:
        yield from frame.tb_frame.f_locals.values()
        frame = frame.tb_next
