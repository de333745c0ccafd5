"""Fashion-MNIST from its IDX files, found locally (env var, user cache, Debian package); never fetched in tests."""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import platformdirs

from compressbench.data import RawDataset, datasets
from compressbench.errors import CompressbenchError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the *decompressed* files, so a re-gzipped copy (Debian's) verifies too.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def search_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("COMPRESSBENCH_DATA"):
        dirs += [Path(env) / "fashion-mnist", Path(env)]
    dirs += [Path(platformdirs.user_cache_dir("compressbench")) / "fashion-mnist", DEBIAN_DIR]
    return dirs


def find_file(stem: str) -> Path:
    for folder in search_dirs():
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(d) for d in search_dirs())
    raise CompressbenchError(
        f"fashion-mnist: {stem}[.gz] not found (looked in {looked}); install it with "
        "`apt-get install dataset-fashion-mnist`, run `compressbench data download fashion-mnist`, "
        "or set COMPRESSBENCH_DATA to a folder holding the four IDX files"
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (gzipped or not), checking its magic number and declared shape."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as error:  # a truncated or corrupt download, a bad copy
        raise CompressbenchError(
            f"{path}: cannot be read ({type(error).__name__}: {error}); the file is truncated or corrupt, "
            "so delete it and install or download it again"
        ) from error
    if len(raw) < 8:
        raise CompressbenchError(f"{path}: too short to be an IDX file")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise CompressbenchError(f"{path}: IDX magic number {found}, expected {magic}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise CompressbenchError(f"{path}: header declares shape {dims} but holds {body.size} values")
    return body.reshape(dims)


@datasets.register("fashion-mnist")
def load_fashion_mnist() -> RawDataset:
    arrays = {
        key: read_idx(find_file(stem), IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC)
        for key, stem in FILES.items()
    }
    for part, n in (("train", 60_000), ("test", 10_000)):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.shape != (n, 28, 28) or labels.shape != (n,):
            raise CompressbenchError(
                f"fashion-mnist {part}: shapes {images.shape}, {labels.shape}; expected ({n}, 28, 28)"
            )
        if labels.max() > 9:
            raise CompressbenchError(f"fashion-mnist {part}: label {labels.max()} outside 0..9")
    return RawDataset(
        arrays["train_images"].astype(np.float32) / 255.0,
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"].astype(np.float32) / 255.0,
        arrays["test_labels"].astype(np.int64),
        num_classes=10,
        augmentations=("crop", "hflip"),
    )


def download(dest: Path | None = None, base_url: str = OFFICIAL_URL) -> Path:
    """Fetch the four files from the official mirror into `dest` (the user cache) and verify their checksums."""
    dest = dest or Path(platformdirs.user_cache_dir("compressbench")) / "fashion-mnist"
    dest.mkdir(parents=True, exist_ok=True)
    for stem, digest in SHA256.items():
        target = dest / f"{stem}.gz"
        if target.is_file() and _sha256_of_content(target) == digest:
            continue
        with urllib.request.urlopen(f"{base_url}{stem}.gz", timeout=60) as response:  # noqa: S310 (fixed https/http URL)
            payload = response.read()
        partial = target.with_suffix(".part")
        partial.write_bytes(payload)
        if _sha256_of_content(partial) != digest:
            partial.unlink()
            raise CompressbenchError(f"fashion-mnist: {stem}.gz from {base_url} failed its checksum")
        partial.rename(target)
    return dest


def _sha256_of_content(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return hashlib.sha256(data).hexdigest()
