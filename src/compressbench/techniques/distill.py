"""`distill.kd`: Hinton knowledge distillation into a smaller student, always beside the same student trained alone.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * cross-entropy(labels)

The teacher is the job's trained baseline. The student is the teacher's family at a width (and depth) multiplier,
or any zoo model or user factory named by `student`. Whether distillation helped is only known against the same
student trained alone with the same epochs, seed, initial weights and optimiser, so every run also trains (or
loads from the cache) that control and hands it to the runner as the companion `control`.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressbench.data import DataBundle
from compressbench.errors import CompressbenchError
from compressbench.imports import is_user_reference, reference_fingerprint
from compressbench.models import ModelConfig, build_model, is_zoo_model
from compressbench.techniques.base import (
    Candidate,
    Context,
    Need,
    Technique,
    TechniqueConfig,
    register_technique,
)
from compressbench.training import Batch, TrainConfig, predict_logits, train


class KDConfig(TechniqueConfig):
    # Defaults from the (T, alpha) table in benchmarks/results/distillation.json (benchmarks/README.md, "Distillation").
    temperature: float = Field(4.0, gt=0, description="softmax temperature T of the soft targets")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target term; 1 - alpha weighs the labels")
    student: str | None = Field(None, description="zoo model or user factory 'module:function'; default: teacher's")
    width: float = Field(
        0.5, gt=0, le=8, description="student width multiplier (zoo, or a user factory taking `width`)"
    )
    depth: int | None = Field(None, ge=1, description="student depth (zoo students only); default: the teacher's")
    # A student trained from scratch needs more than the teacher's budget (benchmarks/README.md, "Distillation").
    epochs: int | None = Field(None, ge=1, description="student and control epochs; default: twice the teacher's")
    hidden_weight: float = Field(
        0.0,
        ge=0,
        description="weight of a hidden-state term, 1 - cosine(student, teacher sentence embedding), added to the "
        "loss (models with an `embed` method, as the transformers have; student and teacher of one hidden size)",
    )
    control: bool = Field(
        True,
        description="also train the same student alone, to show what distillation added; false halves the time "
        "where only the distilled student is wanted (a search, compressing a model)",
    )


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, labels), averaged over the batch."""
    hard = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return hard
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * t * t * soft + (1 - alpha) * hard


def fingerprint_module(module: nn.Module) -> str:
    """A content hash of a model's weights and buffers: the teacher's identity in cache keys."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def fingerprint_data(data: DataBundle) -> str:
    """A content hash of the train split (inputs and labels), so cached logits and students follow the data."""
    digest = hashlib.sha256()
    digest.update(repr((data.spec.name, data.train.x.shape)).encode())
    digest.update(np.ascontiguousarray(data.train.x).tobytes())
    digest.update(np.ascontiguousarray(data.train.y).tobytes())
    return digest.hexdigest()[:16]


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@register_technique
class KnowledgeDistillation(Technique):
    name = "distill.kd"
    trains = True
    Config = KDConfig
    family = "distillation"
    summary = "Hinton knowledge distillation into a smaller student, measured beside the student trained alone"

    @classmethod
    def needs_for(cls, config: TechniqueConfig) -> frozenset[Need]:
        """Training's needs, and where the student is the teacher's own model rebuilt smaller (no `student` named),
        a factory that takes the width (width != 1) or the depth it is rebuilt at. A student of the teacher's width
        with fewer layers is layer dropping, a transformer's student (a CNN's depth is no such knob): it needs
        attention layers."""
        assert isinstance(config, KDConfig)
        needs = set(super().needs_for(config))
        if config.student is None and config.width != 1:
            needs.add(Need.WIDTH_FACTORY)
        if config.student is None and config.depth is not None:
            needs.add(Need.DEPTH_FACTORY)
            if config.width == 1:
                needs.add(Need.ATTENTION_LAYERS)
        return frozenset(needs)

    def apply(self, candidate: Candidate, context: Context) -> Candidate:
        config: KDConfig = self.config  # type: ignore[assignment]
        if candidate.records:
            done = ", ".join(str(r.get("step")) for r in candidate.records)
            raise CompressbenchError(
                f"{self.name}: trains a fresh student from the baseline teacher, which would discard the earlier "
                f"step(s) {done}; put {self.name} first in the recipe"
            )
        data = context.data
        student_config = self.student_config(context)
        teacher = copy.deepcopy(context.baseline).eval()  # the baseline itself is never touched
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        student = self.build_student(student_config, context)
        teacher_params, student_params = param_count(teacher), param_count(student)
        flags = []
        shrink_asked = student_config.name == context.model.name and student_config.width < context.model.width
        if shrink_asked and student_params >= teacher_params:
            raise CompressbenchError(
                f"{self.name}: asked for a student at width {student_config.width:g}, but "
                f"{student_config.name} built {student_params:,} params, as many as the teacher's {teacher_params:,}; "
                "its factory must scale its layers by the `width` it is given"
            )
        if student_params > teacher_params:
            flags.append(
                f"{self.name}: the student ({student_params:,} params) is larger than the teacher "
                f"({teacher_params:,} params)"
            )
        training = context.train_config
        epochs = config.epochs if config.epochs is not None else 2 * training.epochs
        training = training.model_copy(update={"epochs": epochs})
        data_key = fingerprint_data(data)
        student_identity = {
            "student": student_config.model_dump(mode="json"),
            "fingerprint": reference_fingerprint(student_config.name) if is_user_reference(student_config.name) else "",
            "data": data_key,
            "training": training.model_dump(mode="json"),
            "seed": context.seed,
        }

        # The control: the same student, same initial weights, epochs, seed and optimiser, trained on labels alone.
        control, control_meta = (
            context.cache.model(
                "students",
                {**student_identity, "role": "alone"},
                lambda: self.build_student(student_config, context),
                lambda model: _fit(model, data, training, context.seed, None, f"{self.name} control (alone)"),
            )
            if config.control or config.alpha == 0
            else (None, None)
        )

        teacher_key = fingerprint_module(teacher)
        logits_source = "not needed (alpha = 0)"

        def loss_fn() -> Any:
            nonlocal logits_source
            if config.alpha == 0:
                return None
            if training.augment:
                # Each batch is augmented afresh, so the teacher must see the same augmented images.
                logits_source = "per batch (augmentation on)"

                def on_batch(model: nn.Module, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
                    with torch.no_grad():
                        target = teacher(batch.x)
                    return kd_loss(logits, target, batch.y, config.temperature, config.alpha)

                return on_batch
            cached, logits_source = teacher_logits(teacher, teacher_key, data, data_key, context)
            table = torch.from_numpy(cached)
            if config.hidden_weight == 0:

                def from_cache(model: nn.Module, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
                    return kd_loss(logits, table[batch.index], batch.y, config.temperature, config.alpha)

                return from_cache
            embeddings = torch.from_numpy(teacher_embeddings(teacher, teacher_key, data, data_key, context))

            def with_hidden(model: nn.Module, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
                match = F.cosine_similarity(model.pooled, embeddings[batch.index], dim=1).mean()
                soft = kd_loss(logits, table[batch.index], batch.y, config.temperature, config.alpha)
                return soft + config.hidden_weight * (1 - match)

            return with_hidden

        if config.hidden_weight > 0:
            check_hidden(self.name, teacher, student, config.alpha)
        if config.alpha == 0:
            # Labels alone: the distilled student would be the control, weight for weight (tested); reuse it.
            distilled, distilled_meta = copy.deepcopy(control), control_meta
        else:
            distilled, distilled_meta = context.cache.model(
                "students",
                {
                    **student_identity,
                    "role": "distilled",
                    "teacher": teacher_key,
                    "temperature": config.temperature,
                    "alpha": config.alpha,
                    **({"hidden_weight": config.hidden_weight} if config.hidden_weight else {}),
                },  # fmt: skip
                lambda: student,
                lambda model: _fit(model, data, training, context.seed, loss_fn(), f"{self.name} student"),
            )
        if distilled_meta.get("cached") and config.alpha > 0:
            logits_source = "not needed (distilled student cached)"

        helped = control_meta is None or distilled_meta["val_accuracy"] >= control_meta["val_accuracy"]
        if config.alpha > 0 and not helped:
            flags.append(
                f"{self.name}: distillation did not help: val accuracy {distilled_meta['val_accuracy']:.4f} distilled "
                f"vs {control_meta['val_accuracy']:.4f} for the same student trained alone"
            )
        result = Candidate(module=distilled, records=[*candidate.records], flags=[*candidate.flags, *flags])
        control_companion = {"control": Candidate(module=control)} if config.control else {}
        result.companions = {**candidate.companions, **control_companion}
        result.records.append(
            {
                "step": self.name,
                "student": student_config.model_dump(mode="json"),
                "student_params": student_params,
                "teacher_params": teacher_params,
                "param_ratio": teacher_params / student_params,
                "temperature": config.temperature,
                "alpha": config.alpha,
                "hidden_weight": config.hidden_weight,
                "epochs": training.epochs,
                "teacher_logits": logits_source,
                "distilled": _summary(distilled_meta),
                "control": _summary(control_meta) if config.control else None,
            }
        )
        return result

    def student_config(self, context: Context) -> ModelConfig:
        config: KDConfig = self.config  # type: ignore[assignment]
        if config.student is None:
            return ModelConfig(name=context.model.name, width=config.width * context.model.width,
                               depth=config.depth if config.depth is not None else context.model.depth)  # fmt: skip
        if is_user_reference(config.student):
            return ModelConfig(name=config.student)
        return ModelConfig(name=config.student, width=config.width, depth=config.depth)

    def build_student(self, student_config: ModelConfig, context: Context) -> nn.Module:
        try:
            return build_model(student_config, context.data.spec, seed=context.seed)
        except CompressbenchError as error:
            raise CompressbenchError(f"{self.name}: field 'student': {error}") from None


def teacher_logits(
    teacher: nn.Module, teacher_key: str, data: DataBundle, data_key: str, context: Context
) -> tuple[np.ndarray, str]:
    """The teacher's logits on the train split, computed once and cached on disk across runs."""
    return _cached_array(
        context.cache.array_path("teacher_logits", {"teacher": teacher_key, "data": data_key, "split": "train"}),
        (len(data.train), data.spec.num_classes),
        lambda: predict_logits(teacher, data.train),
    )


def _cached_array(path: Path, shape: tuple[int, ...], compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, str]:
    """An array from the disk cache when it is there with the expected shape, else computed and written atomically."""
    if path.is_file():
        cached = np.load(path)
        if cached.shape == shape:
            return cached, "cached"
    array = compute().astype(np.float32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
    return array, "computed"


def check_hidden(step: str, teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """The hidden-state term compares sentence embeddings: both models must make them, of one size."""
    if alpha == 0:
        raise CompressbenchError(f"{step}: field 'hidden_weight' needs the teacher (alpha > 0)")
    for role, model in (("teacher", teacher), ("student", student)):
        if not hasattr(model, "embed"):
            raise CompressbenchError(
                f"{step}: field 'hidden_weight': the {role} {type(model).__name__} has no embed() method giving "
                "its sentence embedding (the zoo's transformer and minilm have one)"
            )
    sizes = [m.classifier.in_features for m in (teacher, student)]
    if sizes[0] != sizes[1]:
        raise CompressbenchError(
            f"{step}: field 'hidden_weight': teacher embeddings have {sizes[0]} values, the student's {sizes[1]}; "
            "match them with a student of the teacher's width (fewer layers: depth)"
        )


def teacher_embeddings(
    teacher: nn.Module, teacher_key: str, data: DataBundle, data_key: str, context: Context
) -> np.ndarray:
    """The teacher's sentence embeddings of the train split, computed once and cached on disk across runs."""

    def compute() -> np.ndarray:
        x = torch.from_numpy(data.train.x)
        with torch.no_grad():
            return torch.cat([teacher.embed(x[i : i + 256]) for i in range(0, len(x), 256)]).numpy()

    path = context.cache.array_path("teacher_embeddings", {"teacher": teacher_key, "data": data_key})
    return _cached_array(path, (len(data.train), teacher.classifier.in_features), compute)[0]


def _fit(model: nn.Module, data: DataBundle, training: TrainConfig, seed: int, loss: Any, description: str) -> dict:
    kwargs = {"loss": loss} if loss is not None else {}
    # A zoo student is a fresh, unpruned zoo model: channels-last is safe for it, as for a baseline.
    report = train(model, data, training, seed=seed, description=description, channels_last=is_zoo_model(model),
                   **kwargs)  # fmt: skip
    return {"val_accuracy": report.val_accuracy, "epochs_run": report.epochs_run,
            "best_epoch": report.best_epoch, "train_seconds": report.seconds}  # fmt: skip


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("val_accuracy", "epochs_run", "best_epoch", "train_seconds", "cached") if k in meta}
