"""An image folder: one subfolder per class (`cat/`, `dog/`; or class indices `0/`, `1/`), optionally under `train/`
and `test/` (or `val/`). Images are read with Pillow and preprocessed in batches, as the model declares:

`{"kind": "image", "size": [H, W], "resize": S, "interpolation": "bilinear", "mean": [...], "std": [...],
"scale": 1/255, "channels": "RGB", "layout": "NCHW"}` — the shorter side resized to S, a centre crop of H x W,
values scaled then standardised per channel, channels first (NCHW) or last (NHWC).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from compressbench.data import DatasetConfig, DataSource, data_sources
from compressbench.data.user import GivenData
from compressbench.errors import CompressbenchError
from compressbench.intake.stream import READ_BATCH, streamed

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
TEST_FOLDERS = ("test", "val", "validation")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


def is_image_folder(name: str) -> bool:
    folder = Path(name)
    return folder.is_dir() and not (folder / "config.json").is_file() and any(p.is_dir() for p in folder.iterdir())


def class_folders(root: Path) -> tuple[Path | None, Path]:
    """(train folder or None, test folder): `train/` + `test/` (or `val/`) when present, else the root alone."""
    test = next((root / name for name in TEST_FOLDERS if (root / name).is_dir()), None)
    if (root / "train").is_dir() and test is not None:
        return root / "train", test
    return None, root


def listed(folder: Path, classes: list[str] | None) -> tuple[list[Path], np.ndarray, list[str]]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if classes is not None and sorted(set(names) - set(classes)):
        raise CompressbenchError(f"data {folder}: classes {sorted(set(names) - set(classes))} are not in train/")
    classes = classes or names
    files, labels = [], []
    for name in names:
        images = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += images
        labels += [classes.index(name)] * len(images)
    if not files:
        raise CompressbenchError(f"data {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in class subfolders")
    return files, np.asarray(labels, np.int64), classes


def preprocess(paths: list[Path], preprocessing: dict[str, Any]) -> np.ndarray:
    """A batch of image files as the model takes them (see the module docstring)."""
    from PIL import Image

    height, width = preprocessing["size"]
    resize = preprocessing.get("resize") or max(height, width)
    method = getattr(Image.Resampling, preprocessing.get("interpolation", "bilinear").upper())
    mode = preprocessing.get("channels", "RGB")
    scale = float(preprocessing.get("scale", 1 / 255))
    mean = np.asarray(preprocessing.get("mean", 0.0), np.float32)
    std = np.asarray(preprocessing.get("std", 1.0), np.float32)
    out = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                ratio = resize / min(image.size)
                image = image.resize((max(width, round(image.width * ratio)), max(height, round(image.height * ratio))),
                                     method)  # fmt: skip
                left, top = (image.width - width) // 2, (image.height - height) // 2
                array = np.asarray(image.crop((left, top, left + width, top + height)), np.float32)
        except OSError as error:
            raise CompressbenchError(f"data {path}: not a readable image ({error})") from None
        array = array[..., None] if array.ndim == 2 else array
        array = (array * scale - mean) / std
        out.append(array if preprocessing.get("layout", "NCHW") == "NHWC" else array.transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def read_images(config: DatasetConfig) -> GivenData:
    root = Path(config.name)
    preprocessing = config.preprocessing
    if not preprocessing or preprocessing.get("kind") != "image":
        raise CompressbenchError(
            f"data {root}: an image folder needs the model's image preprocessing (a timm architecture declares it; "
            "for an ONNX file give --image-size, --mean and --std)"
        )
    if preprocessing.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise CompressbenchError(f"preprocessing interpolation {preprocessing['interpolation']!r}: one of "
                                 f"{', '.join(INTERPOLATIONS)}")  # fmt: skip
    train_folder, test_folder = class_folders(root)
    train = None
    classes = None
    if train_folder is not None:
        files, labels, classes = listed(train_folder, None)
        train = (_read(files, config, "train"), labels)
    files, labels, classes = listed(test_folder, classes)
    test = (_read(files, config, "test"), labels)
    num_classes = int(preprocessing.get("num_classes") or len(classes))
    if any(name.isdigit() for name in classes) and all(name.isdigit() for name in classes):
        mapping = np.asarray([int(name) for name in classes], np.int64)  # folders named by class index
        test = (test[0], mapping[test[1]])
        train = (train[0], mapping[train[1]]) if train else None
        num_classes = max(num_classes, int(mapping.max()) + 1)
    notes = {"classes": classes, "preprocessing": preprocessing}
    return GivenData(test, train, num_classes, notes=notes)


def _read(files: list[Path], config: DatasetConfig, part: str) -> np.ndarray:
    preprocessing = config.preprocessing or {}
    key = hashlib.sha256(json.dumps([fingerprint(config), part, preprocessing], sort_keys=True).encode()).hexdigest()
    height, width = preprocessing["size"]
    channels = 1 if preprocessing.get("channels") == "L" else 3
    shape = (height, width, channels) if preprocessing.get("layout") == "NHWC" else (channels, height, width)
    batches = (preprocess(files[i : i + READ_BATCH], preprocessing) for i in range(0, len(files), READ_BATCH))
    return streamed(
        key[:24], len(files), shape, "float32", batches, f"reading {part} images of {Path(config.name).name}"
    )


def fingerprint(config: DatasetConfig) -> str:
    """Every image's path and content: a changed, added or removed file changes the runs' keys (hashed once per
    process while no file's size or modification time changes)."""
    root = Path(config.name)
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return _content_hash(str(root), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths))


@functools.cache
def _content_hash(root: str, files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(str(Path(path).relative_to(root)).encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


data_sources.register("image-folder")(
    DataSource(
        "a folder of images, one subfolder per class (train/ and test/ optional)",
        is_image_folder,
        read_images,
        fingerprint,
    )  # fmt: skip
)
