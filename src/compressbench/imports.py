"""Resolve user plug-ins given as `package.module:function` or `path/to/file.py:function`."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressbench.errors import CompressbenchError


def is_user_reference(name: str) -> bool:
    return ":" in name


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
