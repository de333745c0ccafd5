import json
import multiprocessing
import sqlite3

import pytest

from compressbench.errors import CompressbenchError
from compressbench.store import RunResult, Store


def config(i: int) -> dict:
    return {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "recipe": {"name": f"r{i}"}, "seed": 0}


def metrics(accuracy: float, latency_ms: float) -> dict:
    return {"accuracy": accuracy, "accuracy_ci": [accuracy - 0.01, accuracy + 0.01], "latency_ms": {"1": latency_ms},
            "runtime": {"runtime": "onnxruntime"}, "size_bytes": 100, "stored_bytes": 90, "params": 25,
            "nonzero_params": 25, "macs": 10}  # fmt: skip


def result(accuracy: float) -> RunResult:
    return RunResult(
        dataset="digits",
        model="mlp",
        recipe="r",
        seed=0,
        baseline=metrics(0.9, 2.0),
        candidate=metrics(accuracy, 2.0 / 1.5),
        speedup={"1": 1.5},
        size_ratio=2.0,
        compression_ratio=3.0,
        accuracy_drop_pt=0.1,
    )


def test_put_get_and_failed_runs_do_not_count_as_done(tmp_path):
    store = Store(tmp_path / "results.db")
    store.put("a", config(1), result=result(0.8))
    store.put("b", config(2), error="ValueError: boom")
    assert store.has("a") and not store.has("b") and store.has("b", include_failed=True)
    assert store.get("a").result.candidate.accuracy == 0.8 and store.get("b").status == "failed"
    store.put("b", config(2), result=result(0.7))  # a retry replaces the failed row
    assert store.has("b") and len(store.runs()) == 2
    frame = store.dataframe()
    assert list(frame["recipe"]) == ["r1", "r2"] and frame["speedup_b1"].tolist() == [1.5, 1.5]


def _writer(path: str, worker: int) -> None:
    store = Store(path)
    for i in range(40):
        store.put(f"{worker}-{i}", config(i), result=result(i / 40))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "results.db")
    processes = [multiprocessing.get_context("spawn").Process(target=_writer, args=(path, w)) for w in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert len(Store(path).runs()) == 120


def test_a_write_that_fails_inside_its_transaction_leaves_no_row(tmp_path, monkeypatch):
    store = Store(tmp_path / "results.db")
    store.put("kept", config(1), error="an earlier run")
    real_connect, inside = sqlite3.connect, []

    class FailsAtCommit(sqlite3.Connection):
        """The INSERT runs inside the open transaction; then the COMMIT fails (a full disk, an I/O error)."""

        def execute(self, sql, *args):
            if sql.strip().upper() == "COMMIT":
                inside.append(super().execute("SELECT key FROM runs ORDER BY key").fetchall())
                raise sqlite3.OperationalError("disk I/O error (injected at COMMIT)")
            return super().execute(sql, *args)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **k, factory=FailsAtCommit))
    with pytest.raises(CompressbenchError, match="injected at COMMIT"):
        store.put("new", config(2), error="boom")
    assert inside == [[("kept",), ("new",)]], "the row was written inside the transaction before it failed"
    monkeypatch.undo()
    assert [run.key for run in store.runs()] == ["kept"]  # rolled back: no partial row
    # A constraint that rejects the row inside the transaction (NOT NULL dataset) leaves nothing behind either.
    with pytest.raises(CompressbenchError, match="NOT NULL"):
        store.put("null", {**config(3), "dataset": {"name": None}}, error="boom")
    assert [run.key for run in store.runs()] == ["kept"]
    store.put("new", config(2), error="a later run")  # the database is not left locked or damaged
    assert [run.key for run in store.runs()] == ["kept", "new"] and store.get("new").error == "a later run"


def test_a_corrupt_database_is_named_in_the_error(tmp_path):
    path = tmp_path / "results.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CompressbenchError, match=str(path)):
        Store(path).runs()


def test_a_run_stored_by_an_earlier_version_loads_and_renders_as_it_was_written(tmp_path):
    """Rows written before results were typed (plain dicts, steps without a family) still load, unchanged."""
    written = result(0.8).to_json() | {"steps": [{"step": "quant.dynamic", "chosen": "MatMul"}], "extra": {"k": 1}}
    old_config = config(1) | {"recipe": {"name": "r1", "steps": [{"technique": "quant.dynamic"}]}}
    store = Store(tmp_path / "results.db")
    store.put("warm-up", config(0), error="creates the table")
    with sqlite3.connect(store.path) as connection:
        row = ("old", "ok", "digits", "mlp", "r1", 0, 0.0, json.dumps(old_config), json.dumps(written), None)
        connection.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?)", row)
    run = store.get("old")
    assert run.result.to_json() == written
    assert run.config["recipe"]["steps"][0]["family"] == "quantization" and run.families == {"quantization"}


def test_the_family_table_for_old_rows_agrees_with_the_techniques_themselves():
    """Old rows get their steps' families from a table in the store (which may not import techniques): each name it
    lists is a registered technique of that family. A technique added since needs no entry (its rows carry a family)."""
    from compressbench.store import LEGACY_FAMILIES
    from compressbench.techniques import techniques

    registered = {name: techniques.get(name).family for name in techniques.names()}
    assert LEGACY_FAMILIES.items() <= registered.items()


def test_a_shipped_baseline_is_found_by_the_key_a_local_training_would_use(tmp_path):
    """Ship a trained baseline, then ask for it from an empty cache: same key -> the shipped weights, untrained; a
    changed training config -> trained here; retrain_baselines -> trained here; a tampered file -> refused."""
    import torch

    import compressbench as cb
    from compressbench.cache import Cache

    quick = cb.TrainConfig(epochs=1)
    trained = cb.baseline("digits", "mlp", training=quick, cache=Cache(tmp_path / "a", shipped=None))
    shipped_dir = tmp_path / "shipped"
    Cache(tmp_path / "a").ship(trained.meta["key"], shipped_dir, command="pytest")

    fresh = Cache(tmp_path / "b", shipped=shipped_dir)
    found = cb.baseline("digits", "mlp", training=quick, cache=fresh)
    assert found.meta["origin"] == "shipped" and found.meta["command"] == "pytest"
    pairs = zip(found.module.state_dict().values(), trained.module.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not (tmp_path / "b" / "baselines").exists()  # nothing was trained

    other = cb.baseline("digits", "mlp", training=cb.TrainConfig(epochs=2), cache=fresh)
    assert other.meta["origin"] == "trained here" and other.meta["key"] != trained.meta["key"]
    again = cb.baseline(
        "digits", "mlp", training=quick, cache=Cache(tmp_path / "c", shipped=shipped_dir), retrain_baselines=True
    )
    assert again.meta["origin"] == "trained here" and not again.meta["cached"]

    weights = shipped_dir / f"{trained.meta['key']}.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(cb.CompressbenchError, match="does not match its metadata .* refused"):
        cb.baseline("digits", "mlp", training=quick, cache=Cache(tmp_path / "d", shipped=shipped_dir))
