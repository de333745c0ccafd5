import gzip
from pathlib import Path

import numpy as np
import pytest

from compressbench.data import DatasetConfig, load_dataset
from compressbench.data import fashion_mnist as fm
from compressbench.errors import CompressbenchError


def test_splits_are_deterministic_disjoint_and_normalised_on_train():
    a = load_dataset(DatasetConfig(name="digits", val_size=0.2), seed=3)
    b = load_dataset(DatasetConfig(name="digits", val_size=0.2), seed=3)
    other = load_dataset(DatasetConfig(name="digits", val_size=0.2), seed=4)
    assert np.array_equal(a.train.x, b.train.x) and not np.array_equal(a.train.x, other.train.x)
    assert a.spec.input_shape == (1, 8, 8) and a.spec.num_classes == 10
    assert len(a.val) == round(0.2 * (len(a.train) + len(a.val)))
    # Normalisation fitted on train: the train split has mean 0 and std 1, the others only roughly.
    assert abs(a.train.x.mean()) < 1e-4 and abs(a.train.x.std() - 1) < 1e-3
    train_rows = {row.tobytes() for row in a.train.x}
    assert not any(row.tobytes() in train_rows for row in a.val.x)
    assert all(row.tobytes() in train_rows for row in a.calibration.x)


def test_test_split_is_the_same_for_every_seed():
    assert np.array_equal(load_dataset("digits", seed=0).test.y, load_dataset("digits", seed=1).test.y)


def test_mnist1d_is_generated_locally_with_the_paper_sizes():
    bundle = load_dataset("mnist1d")
    assert bundle.spec.input_shape == (1, 40)
    assert len(bundle.train) + len(bundle.val) == 4000 and len(bundle.test) == 1000


def test_train_limit_and_calibration_size():
    bundle = load_dataset(DatasetConfig(name="synthetic", train_limit=100, calibration_size=32))
    assert len(bundle.train) == 100 and len(bundle.calibration) == 32


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_idx_reader_checks_magic_and_shape(tmp_path):
    images = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    _write_idx(tmp_path / "ok.gz", images, fm.IMAGE_MAGIC)
    assert np.array_equal(fm.read_idx(tmp_path / "ok.gz", fm.IMAGE_MAGIC), images)
    _write_idx(tmp_path / "labels.gz", np.arange(2), fm.LABEL_MAGIC)
    with pytest.raises(CompressbenchError, match="labels.gz: IDX magic number 2049, expected 2051"):
        fm.read_idx(tmp_path / "labels.gz", fm.IMAGE_MAGIC)
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(CompressbenchError, match="declares shape"):
        fm.read_idx(tmp_path / "short", fm.IMAGE_MAGIC)


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(fm, "search_dirs", lambda: [tmp_path / "nowhere"])
    with pytest.raises(CompressbenchError) as error:
        fm.load_fashion_mnist()
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "apt-get install dataset-fashion-mnist" in message
    assert "\n" not in message


def test_fashion_mnist_from_the_debian_package():
    if not (fm.DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail("make setup installs Debian's dataset-fashion-mnist; it is missing")
    bundle = load_dataset(DatasetConfig(name="fashion-mnist", test_limit=500))
    assert bundle.spec.input_shape == (1, 28, 28) and "hflip" in bundle.spec.augmentations
    assert len(bundle.train) + len(bundle.val) == 60_000 and len(bundle.test) == 500
    assert fm._sha256_of_content(fm.find_file("t10k-labels-idx1-ubyte")) == fm.SHA256["t10k-labels-idx1-ubyte"]


def test_user_data_from_a_file(tmp_path):
    module = tmp_path / "mydata.py"
    module.write_text(
        "import numpy as np\n"
        "def make():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x, y = rng.normal(size=(70, 6)), rng.integers(0, 3, 70)\n"
        "    return x[:50], y[:50], x[50:], y[50:]\n"
        "def broken():\n"
        "    return np.zeros((5, 6)), np.zeros(4, dtype=int), np.zeros((2, 6)), np.zeros(2, dtype=int)\n"
    )
    bundle = load_dataset(f"{module}:make")
    assert bundle.spec.input_shape == (1, 6) and bundle.spec.num_classes == 3
    with pytest.raises(CompressbenchError, match=r"mydata.py:broken train: labels must have shape \(5,\)"):
        load_dataset(f"{module}:broken")
    with pytest.raises(CompressbenchError, match="has no function 'nope'"):
        load_dataset(f"{module}:nope")


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(CompressbenchError, match="did you mean 'digits'"):
        load_dataset("digit")
