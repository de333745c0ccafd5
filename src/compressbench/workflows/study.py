"""A study: datasets x models x recipes x seeds, planned into jobs, run with resume, every run stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compressbench import progress
from compressbench.cache import Cache, default_cache_dir
from compressbench.data import DatasetConfig, load_dataset
from compressbench.errors import CompressbenchError
from compressbench.files import read_yaml_mapping
from compressbench.measure.compare import MeasureSettings
from compressbench.models import ModelConfig, is_compatible
from compressbench.recipes import load_recipe
from compressbench.runner.drive import Policy, drive
from compressbench.runner.executors import ExecutorSettings
from compressbench.runner.job import JobConfig, make_job
from compressbench.store import Store
from compressbench.training import TrainConfig, default_train_config


class StudySpec(BaseModel):
    """The YAML study file. Models run on every dataset whose inputs they take (an MLP on all, LeNet-5 on images)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    datasets: list[DatasetConfig] = Field(min_length=1)
    models: list[ModelConfig] = Field(min_length=1)
    recipes: list[str | dict[str, Any]] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    model_seeds: dict[str, list[int]] = Field(
        default_factory=dict, description="per model: run only these seeds (e.g. one for the costliest model)"
    )
    baseline_seed: int | None = Field(
        None, ge=0, description="train every baseline (and split its data) with this seed, so that `seeds` vary the "
        "compression step only (calibration samples, fine-tuning order, a student's initialisation); None: each seed "
        "its own baseline",
    )  # fmt: skip
    training: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per model: TrainConfig overrides")
    model_recipes: dict[str, list[str]] = Field(
        default_factory=dict, description="per model: run only these of the recipes (by name); others run all"
    )
    model_datasets: dict[str, list[str]] = Field(
        default_factory=dict, description="per model: run only on these of the datasets (by name); others on all"
    )
    measure: MeasureSettings = MeasureSettings()
    model_measure: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per model: MeasureSettings overrides (e.g. runtime: auto for one model)"
    )
    traded_away: str = Field("", description="what this profile gives up for time, for the report")
    retrain_baselines: bool = Field(
        False, description="train the baselines afresh instead of taking cached or shipped ones"
    )

    def for_serving(self, serving: str) -> StudySpec:
        """This study measured for another serving profile (its defaults filled in afresh: every core and the large
        batch for throughput, unless the study sets them)."""
        measure = MeasureSettings.model_validate({**self.measure.model_dump(exclude_unset=True), "serving": serving})
        return self.model_copy(update={"measure": measure})


def load_study(path: Path | str) -> StudySpec:
    path = Path(path)
    document = read_yaml_mapping(path, "study")
    for key in ("datasets", "models"):  # allow plain names in lists
        document[key] = [{"name": item} if isinstance(item, str) else item for item in document.get(key) or []]
    try:
        return StudySpec(**document)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise CompressbenchError(f"study file {path}: field {field!r}: {first['msg']}") from None


def plan(spec: StudySpec) -> tuple[list[JobConfig], list[str]]:
    """Expand the spec into jobs (recipes validated first); return the jobs and the pairs skipped, with why."""
    recipes = [load_recipe(recipe) for recipe in spec.recipes]
    names = [recipe.name for recipe in recipes]
    models = [model.name for model in spec.models]
    for model, chosen in spec.model_recipes.items():
        if model not in models:
            raise CompressbenchError(f"study {spec.name}: model_recipes.{model}: not one of the models {models}")
        if unknown := [name for name in chosen if name not in names]:
            raise CompressbenchError(f"study {spec.name}: model_recipes.{model}: {unknown} not in the recipes {names}")
    for field in ("model_measure", "model_seeds", "model_datasets"):
        for model in getattr(spec, field):
            if model not in models:
                raise CompressbenchError(f"study {spec.name}: {field}.{model}: not one of the models {models}")
    datasets = [dataset.name for dataset in spec.datasets]
    for model, chosen in spec.model_datasets.items():
        if unknown := [name for name in chosen if name not in datasets]:
            raise CompressbenchError(
                f"study {spec.name}: model_datasets.{model}: {unknown} not in the datasets {datasets}"
            )
    jobs, skipped = [], []
    for dataset in spec.datasets:
        data_spec = load_dataset(dataset).spec
        for model in spec.models:
            if dataset.name not in spec.model_datasets.get(model.name, [dataset.name]):
                continue
            if not is_compatible(model.name, data_spec):
                skipped.append(f"{model.name} on {dataset.name}: takes other inputs than {data_spec.input_shape}")
                continue
            training = _training(spec, model.name)
            measure = _measure(spec, model.name)
            chosen = spec.model_recipes.get(model.name, names)
            seeds = spec.model_seeds.get(model.name, spec.seeds)
            for recipe in (r for r in recipes if r.name in chosen):
                # With one baseline for all seeds, an unseeded recipe makes the same model at every seed.
                if recipe.seeded or len(seeds) == 1 or spec.baseline_seed is None:
                    jobs += [make_job(dataset, model, recipe, seed=seed, baseline_seed=spec.baseline_seed,
                                      training=training, measure=measure) for seed in seeds]  # fmt: skip
                else:  # one run, timed as long as the seeds' runs together
                    jobs.append(make_job(dataset, model, recipe, seed=seeds[0], baseline_seed=spec.baseline_seed,
                                         training=training, measure=_timed_longer(measure, len(seeds))))  # fmt: skip
    return jobs, skipped


def _training(spec: StudySpec, model: str) -> TrainConfig:
    """The family's training with the study's overrides; epochs set there are exact (the family's step minimum, meant
    for its own epochs, is dropped unless the override sets one too)."""
    defaults = default_train_config(model).model_dump()
    if "epochs" in spec.training.get(model, {}):
        defaults.pop("min_steps", None)
    return _with_overrides(spec, "training", model, TrainConfig, defaults)


def _measure(spec: StudySpec, model: str) -> MeasureSettings:
    if model not in spec.model_measure:
        return spec.measure
    return _with_overrides(spec, "model_measure", model, MeasureSettings, spec.measure.model_dump())


def _timed_longer(measure: MeasureSettings, factor: int) -> MeasureSettings:
    """`measure` with `factor` times the timed blocks: an unseeded recipe's one run gets as many paired blocks as a
    seeded recipe's runs have together, so both summaries' speed-up intervals rest on as many."""
    latency = measure.latency.model_copy(update={"blocks": measure.latency.blocks * factor})
    return measure.model_copy(update={"latency": latency})


def _with_overrides(spec: StudySpec, section: str, model: str, settings: type[Any], defaults: dict[str, Any]) -> Any:
    """`defaults` with the study's per-model overrides from `section`; a bad field is named with its path."""
    try:
        return settings(**{**defaults, **getattr(spec, section).get(model, {})})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise CompressbenchError(f"study {spec.name}: {section}.{model}.{field}: {first['msg']}") from None


# A study re-runs the jobs that failed before and stores every failure beside the successes, for the report.
POLICY = Policy(rerun_failed=True, store_failures=True)


def run_study(
    spec: StudySpec | Path | str,
    out: Path | str,
    cache: Cache | None = None,
    executor: ExecutorSettings | None = None,
) -> dict[str, int]:
    """Run every job not yet stored in `out/results.db`, here or on Ray (`executor`); a failed job is stored with its
    error and the study goes on. Only this process writes the store, one transaction a job."""
    spec = spec if isinstance(spec, StudySpec) else load_study(spec)
    cache = cache or Cache(default_cache_dir())
    jobs, skipped = plan(spec)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "study.json").write_text(spec.model_dump_json(indent=1))  # what the report says about the study
    for line in skipped:
        progress.log(f"[dim]skip {line}[/dim]")
    outcomes = drive(jobs, Store(Path(out) / "results.db"), cache, POLICY, executor=executor,
                     title=f"study {spec.name}")  # fmt: skip
    ran = [outcome for outcome in outcomes if not outcome.stored]
    return {
        "planned": len(jobs),
        "stored_before": len(jobs) - len(ran),
        "ok": sum(outcome.result is not None for outcome in ran),
        "failed": sum(outcome.result is None for outcome in ran),
    }
