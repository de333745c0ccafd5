"""On-disk cache of trained models (baselines, students), keyed by a hash of everything that made them.

Weights are stored as safetensors and loaded only that way, never through pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from safetensors.torch import load_file, save_file
from torch import nn

from compressbench.hashing import config_hash


def default_cache_dir() -> Path:
    return Path(os.environ.get("COMPRESSBENCH_CACHE") or platformdirs.user_cache_dir("compressbench"))


@dataclass(frozen=True)
class Cache:
    root: Path

    def model(
        self,
        kind: str,
        identity: dict[str, Any],
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], dict],
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Return the trained model for `identity`, training (and storing) it only if it is not cached yet."""
        key = config_hash(identity)
        folder = self.root / kind
        weights, meta_path = folder / f"{key}.safetensors", folder / f"{key}.json"
        model = build()
        if weights.is_file() and meta_path.is_file():
            model.load_state_dict(load_file(weights))
            model.eval()
            meta = json.loads(meta_path.read_text())
            return model, {**meta, "cached": True}
        meta = {"identity": identity, "key": key, **train(model)}
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

    def array_path(self, kind: str, identity: dict[str, Any]) -> Path:
        """Where a cached array (teacher logits, sensitivity curves) for `identity` lives."""
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{config_hash(identity)}.npy"
