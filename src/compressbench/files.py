"""Reading the user's YAML files (recipes, studies) with one error style: the file, then what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from compressbench.errors import CompressbenchError


def read_yaml_mapping(path: Path, what: str, expected: str = "a mapping") -> dict[str, Any]:
    """The YAML document at `path`, which must be a mapping; named with `name` = the file's stem unless it says."""
    if not path.is_file():
        raise CompressbenchError(f"{what} file {path} not found")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CompressbenchError(f"{what} file {path}: not valid YAML: {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise CompressbenchError(f"{what} file {path}: cannot be read: {error}") from error
    if not isinstance(document, dict):
        raise CompressbenchError(f"{what} file {path}: expected {expected}")
    document.setdefault("name", path.stem)
    return document
