import multiprocessing

import pytest

from compressbench.errors import CompressbenchError
from compressbench.store import Store


def config(i: int) -> dict:
    return {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "recipe": {"name": f"r{i}"}, "seed": 0}


def result(accuracy: float) -> dict:
    return {
        "baseline": {"accuracy": 0.9, "latency_ms": {"1": 2.0}},
        "candidate": {"accuracy": accuracy},
        "speedup": {"1": 1.5},
        "size_ratio": 2.0,
        "compression_ratio": 3.0,
        "accuracy_drop_pt": 0.1,
        "flags": [],
    }


def test_put_get_and_failed_runs_do_not_count_as_done(tmp_path):
    store = Store(tmp_path / "results.db")
    store.put("a", config(1), result=result(0.8))
    store.put("b", config(2), error="ValueError: boom")
    assert store.has("a") and not store.has("b") and store.has("b", include_failed=True)
    assert store.get("a").result["candidate"]["accuracy"] == 0.8 and store.get("b").status == "failed"
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


def test_a_failed_write_leaves_no_row(tmp_path):
    store = Store(tmp_path / "results.db")
    with pytest.raises(TypeError):
        store.put("x", config(1), result={"not": object()})  # not JSON-serialisable: fails before the insert
    assert store.runs() == []


def test_a_corrupt_database_is_named_in_the_error(tmp_path):
    path = tmp_path / "results.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CompressbenchError, match=str(path)):
        Store(path).runs()
