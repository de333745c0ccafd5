"""Resolve user plug-ins given as `package.module:function` or `path/to/file.py:function`."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressbench.errors import CompressbenchError, raised_with

# Model references that name a source rather than a module (`timm:resnet18`): not `module:function` references.
SOURCE_PREFIXES = ("timm:",)


def is_user_reference(name: str) -> bool:
    return ":" in name and not name.startswith(SOURCE_PREFIXES)


def load_reference(reference: str, what: str) -> Callable[..., Any]:
    module_part, _, attr = reference.rpartition(":")
    if not module_part or not attr:
        raise CompressbenchError(f"{what} {reference!r}: expected 'package.module:function' or 'file.py:function'")
    if module_part.endswith(".py"):
        path = Path(module_part)
        if not path.is_file():
            raise CompressbenchError(f"{what} {reference!r}: file {path} not found")
        spec = importlib.util.spec_from_file_location(f"compressbench_user_{path.stem}", path)
        assert spec and spec.loader  # a .py file always has a loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # its sibling modules import as they would when the file runs as a script
            sys.path.append(folder)
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise CompressbenchError(f"{what} {reference!r}: importing {path} failed: {error}") from error
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as error:
            raise CompressbenchError(f"{what} {reference!r}: cannot import {module_part}: {error}") from error
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CompressbenchError(f"{what} {reference!r}: {module_part} has no function {attr!r}")
    return factory


def reference_fingerprint(reference: str) -> str:
    """Part of a cache key: a file reference changes identity when its file's content changes."""
    module_part = reference.rpartition(":")[0]
    if module_part.endswith(".py") and Path(module_part).is_file():
        return hashlib.sha256(Path(module_part).read_bytes()).hexdigest()[:16]
    return ""


def call_user(reference: str, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the user's function; anything it raises becomes one line naming the function, the line of the user's
    file that raised and the message (the traceback stays on the error's `__cause__`)."""
    try:
        return function(*args, **kwargs)
    except CompressbenchError:
        raise
    except Exception as error:
        raise CompressbenchError(f"{what} {reference!r}: {describe_exception(error, function)}") from error


def describe_exception(error: BaseException, function: Callable[..., Any] | None = None) -> str:
    """'build() raised ValueError at my.py:12: message': where in the user's own code it happened, when it did."""
    where = ""
    user_file = _source_file(function) if function is not None else None
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if user_file is not None and Path(frame.filename).resolve() == user_file:
            where = f" at {Path(frame.filename).name}:{frame.lineno}"
            break
    name = f"{getattr(function, '__name__', 'it')}() raised " if function is not None else ""
    message = str(error).strip().splitlines()[0] if str(error).strip() else "(no message)"
    if file := _compressed_file(error):
        message += f" (reading {file}: truncated or corrupt)"
    return f"{name}{type(error).__name__}{where}: {message}"


def _compressed_file(error: BaseException) -> str | None:
    """The gzip / bz2 / lzma file being read when `error` was raised, when one was: a truncated download raises an
    EOFError that does not name its file."""
    import bz2
    import gzip
    import lzma

    files = [v for v in raised_with(error) if isinstance(v, gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile)]
    found = (
        (getattr(files[-1], "name", None) or getattr(getattr(files[-1], "_fp", None), "name", None)) if files else None
    )
    return str(found) if found else None


def _source_file(function: Callable[..., Any]) -> Path | None:
    try:
        return Path(inspect.getfile(function)).resolve()
    except TypeError:
        return None


def accepted_keywords(function: Callable[..., Any]) -> set[str]:
    """The keyword arguments `function` accepts (every name when it takes **kwargs)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return {"*"}
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
