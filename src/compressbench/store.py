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
from compressbench.results import Metrics, RunResult

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
    config: dict[str, Any]  # the job's identity: dataset, model, canonical recipe (each step with its family), ...
    result: RunResult | None
    error: str | None

    @property
    def families(self) -> set[str]:
        """The technique families the run's recipe uses (Huffman coding alone does not make a recipe a hybrid)."""
        return {step["family"] for step in self.config.get("recipe", {}).get("steps", [])} - {"coding"}


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

    def put(self, key: str, config: dict[str, Any], result: RunResult | None = None, error: str | None = None) -> None:
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
            json.dumps(result.to_json(), sort_keys=True) if result is not None else None,
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


__all__ = ["Metrics", "Run", "RunResult", "Store", "flatten"]

# Runs stored before each step carried its family: the built-in techniques of that time, by name. A technique added
# since needs no entry: its runs carry their family (tests/test_store.py checks this agrees with the registry).
LEGACY_FAMILIES = {
    "prune.magnitude": "pruning",
    "prune.channels": "pruning",
    "prune.nm": "pruning",
    "prune.heads": "pruning",
    "quant.dynamic": "quantization",
    "quant.static": "quantization",
    "quant.qat": "quantization",
    "quant.nncf": "quantization",
    "quant.weight_sharing": "weight sharing",
    "precision.bf16": "reduced precision",
    "precision.fp16": "reduced precision",
    "encode.huffman": "coding",
    "distill.kd": "distillation",
}


def _run(row: tuple) -> Run:
    key, status, dataset, model, recipe, seed, created, config, result, error = row
    config = json.loads(config)
    for step in config.get("recipe", {}).get("steps", []):
        step.setdefault("family", LEGACY_FAMILIES.get(step["technique"], "other"))
    return Run(
        key,
        status,
        dataset,
        model,
        recipe,
        seed,
        created,
        config,
        RunResult.model_validate_json(result) if result else None,
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
    result = run.result
    roles: dict[str, Metrics | None] = {
        "baseline": result.baseline if result else None,
        "candidate": result.candidate if result else None,
    }
    if result and result.control:  # the distillation student trained alone
        roles["control"] = result.control
    for role, metrics in roles.items():
        for field in ("accuracy", "size_bytes", "stored_bytes", "params", "nonzero_params", "macs"):
            row[f"{role}_{field}"] = getattr(metrics, field) if metrics else None
        for batch, ms in (metrics.latency_ms if metrics else {}).items():
            row[f"{role}_latency_ms_b{batch}"] = ms
    for batch, ratio in (result.speedup if result else {}).items():
        row[f"speedup_b{batch}"] = ratio
    for field in ("size_ratio", "compression_ratio", "accuracy_drop_pt"):
        row[field] = getattr(result, field) if result else None
    embedding = result.candidate.embedding if result else None
    if embedding and embedding.get("comparable", True):  # a text encoder: fidelity to the fp32 sentence embeddings
        row["embedding_cosine"] = embedding["cosine_mean"]
        row["embedding_top_k_agreement"] = embedding["top_k_agreement"]
    row["flags"] = ";".join(result.flags if result else [])
    return row
