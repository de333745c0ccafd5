"""The results store: SQLite, one row per run, written whole in one transaction, keyed by the job's config hash.

WAL mode and a busy timeout let several processes (a process pool, Ray workers, two studies) write at once
without losing a row; a crashed job leaves nothing behind, so re-running a study redoes exactly the missing runs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressbench.errors import CompressbenchError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    seed INTEGER NOT NULL,
    created REAL NOT NULL,
    config TEXT NOT NULL,
    result TEXT,
    error TEXT
)
"""


@dataclass(frozen=True)
class Run:
    key: str
    status: str
    dataset: str
    model: str
    recipe: str
    seed: int
    created: float
    config: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as error:
            raise CompressbenchError(f"results store {self.path}: {error}") from error
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=60000")
            connection.execute(SCHEMA)
            yield connection
        except sqlite3.DatabaseError as error:
            raise CompressbenchError(f"results store {self.path}: {error}") from error
        finally:
            connection.close()

    def put(
        self, key: str, config: dict[str, Any], result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """Write one run in one transaction; a later successful run replaces a failed one with the same key."""
        status = "failed" if error is not None else "ok"
        row = (
            key,
            status,
            config["dataset"]["name"],
            config["model"]["name"],
            config["recipe"]["name"],
            int(config["seed"]),
            time.time(),
            json.dumps(config, sort_keys=True),
            json.dumps(result, sort_keys=True) if result is not None else None,
            error,
        )
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)", row)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def get(self, key: str) -> Run | None:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return _run(row) if row else None

    def has(self, key: str, include_failed: bool = False) -> bool:
        run = self.get(key)
        return run is not None and (include_failed or run.status == "ok")

    def runs(self) -> list[Run]:
        if not self.path.exists():
            return []
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM runs ORDER BY created").fetchall()
        return [_run(row) for row in rows]

    def dataframe(self):
        """One row per run with the headline figures as columns, for pandas users."""
        import pandas as pd

        return pd.DataFrame([flatten(run) for run in self.runs()])


def _run(row: tuple) -> Run:
    key, status, dataset, model, recipe, seed, created, config, result, error = row
    return Run(
        key,
        status,
        dataset,
        model,
        recipe,
        seed,
        created,
        json.loads(config),
        json.loads(result) if result else None,
        error,
    )


def flatten(run: Run) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": run.key,
        "status": run.status,
        "dataset": run.dataset,
        "model": run.model,
        "recipe": run.recipe,
        "seed": run.seed,
        "error": run.error,
    }
    result = run.result or {}
    for role in ("baseline", "candidate", "control"):  # control: the distillation student trained alone
        if role == "control" and role not in result:
            continue
        metrics = result.get(role) or {}
        for field in ("accuracy", "size_bytes", "stored_bytes", "params", "nonzero_params", "macs"):
            row[f"{role}_{field}"] = metrics.get(field)
        for batch, ms in (metrics.get("latency_ms") or {}).items():
            row[f"{role}_latency_ms_b{batch}"] = ms
    for batch, ratio in (result.get("speedup") or {}).items():
        row[f"speedup_b{batch}"] = ratio
    for field in ("size_ratio", "compression_ratio", "accuracy_drop_pt"):
        row[field] = result.get(field)
    row["flags"] = ";".join(result.get("flags", []))
    return row
