"""On-disk cache of trained models (baselines, students), keyed by a hash of everything that made them.

Weights are stored as safetensors and loaded only that way, never through pickle. The package ships the zoo's
baselines for the default study (`SHIPPED`): a baseline missing from the local cache is taken from there when its key
(the same hash a local training would have) is among them, after its SHA-256 is checked against its metadata.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from safetensors.torch import load_file, save_file
from torch import nn

from compressbench.errors import CompressbenchError
from compressbench.hashing import config_hash

SHIPPED = Path(__file__).parent / "baselines"
BASELINES = "baselines"


@functools.cache
def shipped_accuracies(folder: Path = SHIPPED) -> dict[tuple[str, str], float]:
    """Test accuracy of each shipped baseline by (dataset, model): the reference a baseline of that zoo model on that
    data should reach with the family's own training."""
    references = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        meta = json.loads(path.read_text())
        if "dataset" in meta and "model" in meta and "test_accuracy_torch" in meta:
            references[(meta["dataset"], meta["model"])] = float(meta["test_accuracy_torch"])
    return references


def default_cache_dir() -> Path:
    return Path(os.environ.get("COMPRESSBENCH_CACHE") or platformdirs.user_cache_dir("compressbench"))


@dataclass(frozen=True)
class Cache:
    root: Path
    shipped: Path | None = SHIPPED  # read-only baselines that come with the package; None: never use them
    # Train every baseline afresh once in this process (replacing the cache entry), ignoring cached and shipped ones.
    retrain_baselines: bool = False
    _retrained: set[str] = field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # Cache("folder") works as Cache(Path("folder"))

    def model(
        self,
        kind: str,
        identity: dict[str, Any],
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], dict],
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Return the trained model for `identity`: from the local cache, else (baselines) from the shipped ones,
        else trained here and stored. `origin` in the metadata says which baselines were shipped."""
        key = config_hash(identity)
        folder = self.root / kind
        weights, meta_path = folder / f"{key}.safetensors", folder / f"{key}.json"
        model = build()
        fresh = kind == BASELINES and self.retrain_baselines and key not in self._retrained
        if weights.is_file() and meta_path.is_file() and not fresh:
            model.load_state_dict(load_file(weights))
            model.eval()
            meta = json.loads(meta_path.read_text())
            return model, {"origin": "trained here", **meta, "cached": True}
        if kind == BASELINES and not fresh and (shipped := self.shipped_baseline(key)) is not None:
            state, meta = shipped
            model.load_state_dict(state)
            model.eval()
            return model, {**meta, "origin": "shipped", "cached": True}
        self._retrained.add(key)
        meta = {"identity": identity, "key": key, "origin": "trained here", **train(model)}
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        # Write to temporary names and rename, so a crash never leaves a half-written cache entry.
        tmp_weights = weights.with_suffix(f".{os.getpid()}.tmp")
        tmp_meta = meta_path.with_suffix(f".{os.getpid()}.jtmp")
        save_file(state, tmp_weights)
        tmp_meta.write_text(json.dumps(meta, indent=1, default=str))
        tmp_weights.replace(weights)
        tmp_meta.replace(meta_path)
        model.eval()
        return model, {**meta, "cached": False}

    def shipped_baseline(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The shipped baseline with this key (state dict, metadata), or None; one whose bytes do not match the
        SHA-256 in its metadata is refused."""
        if self.shipped is None:
            return None
        weights, meta_path = self.shipped / f"{key}.safetensors", self.shipped / f"{key}.json"
        if not (weights.is_file() and meta_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != meta.get("sha256"):
            raise CompressbenchError(
                f"shipped baseline {weights}: its SHA-256 {digest[:16]}... does not match its metadata "
                f"({str(meta.get('sha256'))[:16]}...); refused: reinstall compressbench, or pass --retrain-baselines"
            )
        return load_file(weights), meta

    def ship(self, key: str, destination: Path, **notes: Any) -> Path:
        """Copy the cached baseline `key` into `destination` (the package's `baselines/` folder) as a shipped one:
        its weights unchanged, its metadata with the weights' SHA-256 and `notes` (command, machine, accuracy)."""
        weights = self.root / BASELINES / f"{key}.safetensors"
        meta = json.loads((self.root / BASELINES / f"{key}.json").read_text())
        destination.mkdir(parents=True, exist_ok=True)
        payload = weights.read_bytes()
        (destination / weights.name).write_bytes(payload)
        shipped = {**meta, **notes, "origin": "shipped", "sha256": hashlib.sha256(payload).hexdigest()}
        (destination / f"{key}.json").write_text(json.dumps(shipped, indent=1, sort_keys=True, default=str) + "\n")
        return destination / weights.name

    def array_path(self, kind: str, identity: dict[str, Any]) -> Path:
        """Where a cached array (teacher logits, sensitivity curves) for `identity` lives."""
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{config_hash(identity)}.npy"
