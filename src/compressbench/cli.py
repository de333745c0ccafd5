"""The `compressbench` command: a thin typer layer over the Python API; nothing below this file sees typer."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import compressbench as cb
from compressbench import CompressbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Get datasets that are not bundled.")
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)


def friendly(command):
    """Bad input ends in one red line and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CompressbenchError as error:
            err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


class Listable(StrEnum):
    datasets = "datasets"
    models = "models"
    techniques = "techniques"
    recipes = "recipes"
    runtimes = "runtimes"


@app.command("list")
@friendly
def list_(what: Annotated[Listable, typer.Argument(help="what to list")]) -> None:
    """List the registered datasets, models, techniques, recipes or runtimes."""
    for name in cb.names(what.value):
        line = (
            f"{name:22} {cb.describe(what.value, name)}" if what.value in ("models", "techniques", "runtimes") else name
        )
        out.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)


class Serving(StrEnum):
    latency = "latency"
    throughput = "throughput"


ServingOption = Annotated[
    Serving,
    typer.Option(help="latency: one request at a time on one thread; throughput: batches served concurrently on "
                 "every core (or --threads), each runtime's session settings tuned"),
]  # fmt: skip


@app.command()
@friendly
def run(
    dataset: Annotated[str, typer.Option(help="registered dataset, or module:function / file.py:function")],
    model: Annotated[str, typer.Option(help="zoo model, or module:function / file.py:function")],
    recipe: Annotated[str, typer.Option(help="technique name, built-in recipe name, or recipe YAML file")] = "none",
    seed: Annotated[int, typer.Option(help="seed of the data split and training")] = 0,
    epochs: Annotated[int | None, typer.Option(help="baseline epochs (default: the model's own)")] = None,
    width: Annotated[float, typer.Option(help="width multiplier of the model")] = 1.0,
    weights: Annotated[
        Path | None, typer.Option(help="your model's trained weights (never retrained; data taken as given)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="runtime threads (default: 1 for latency, every core for throughput)")
    ] = None,
    serving: ServingOption = Serving.latency,
    footprint: Annotated[
        bool, typer.Option(help="also measure peak memory, load time and the first call in a fresh process")
    ] = False,
    tune: Annotated[
        bool, typer.Option(help="try each runtime's session settings and keep the fastest (always with throughput)")
    ] = False,
    runtime: Annotated[
        str, typer.Option(help="onnxruntime, openvino, torch, or auto (fastest installed)")
    ] = "onnxruntime",
    batch: Annotated[int, typer.Option(help="the batch size that matters: decides the runtime with auto")] = 256,
    batch_sizes: Annotated[
        list[int] | None, typer.Option("--batch-sizes", help="batch sizes timed (repeat the option; default 1 and 256)")
    ] = None,
    warmup: Annotated[float, typer.Option(help="seconds of warm-up per session and batch size")] = 1.0,
    repeats: Annotated[int, typer.Option(help="timed blocks per session, interleaved")] = 15,
    out_dir: Annotated[Path, typer.Option("--out", help="folder of the results database")] = Path("runs/cli"),
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
    retrain_baselines: Annotated[
        bool, typer.Option(help="train the baseline afresh, not from the cache or the shipped ones")
    ] = False,
) -> None:
    """Train (or reuse) a baseline, apply one recipe, and measure both side by side."""
    if runtime != "auto":
        cb.describe("runtimes", runtime)  # an unknown name is answered with the close matches
    training = cb.default_training(model)
    if epochs is not None:
        training = training.model_copy(update={"epochs": epochs, "min_steps": 0})  # exactly those epochs
    timing: dict[str, Any] = {"warmup_s": warmup, "blocks": repeats}
    if batch_sizes or serving == Serving.latency:  # throughput times the large batch alone unless told
        timing["batch_sizes"] = tuple(sorted({*(batch_sizes or (1, 256)), batch}))
    if threads is not None:
        timing["threads"] = threads
    latency = cb.LatencySettings(**timing)
    result = cb.compress(
        dataset,
        cb.ModelConfig(name=model, width=width, weights=str(weights) if weights else None),
        recipe,
        seed=seed,
        training=training,
        measure=cb.MeasureSettings(
            runtime=runtime,
            latency=latency,
            target_batch=batch,
            serving=serving.value,
            footprint=footprint,
            tune=tune,
        ),
        store=out_dir / "results.db",
        retrain_baselines=retrain_baselines,
    )
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=1) + "\n")
    else:
        out.print(side_by_side(result))
        for runtime, figures in (result.candidate.runtimes or {}).items():
            if "skipped" in figures:
                out.print(f"  {runtime}: skipped ({figures['skipped']})", highlight=False)
            else:
                timing = ", ".join(f"b{b} {ms:.3f} ms" for b, ms in figures["latency_ms"].items())
                out.print(f"  {runtime} ({figures['runtime']['precision']}): {timing}, "
                          f"accuracy {figures['accuracy'] * 100:.2f}%", highlight=False)  # fmt: skip
        if control := result.control:
            lo, hi = control.accuracy_ci
            gain = (result.candidate.accuracy - control.accuracy) * 100
            out.print(
                f"control (the same student trained alone): accuracy {control.accuracy * 100:.2f}% "
                f"[{lo * 100:.1f}, {hi * 100:.1f}]; candidate - control {gain:+.2f} pt",
                highlight=False,
            )
        for flag in result.flags:
            out.print(f"[yellow]flag:[/yellow] {flag}", highlight=False)


class Objective(StrEnum):
    latency = "latency"
    size = "size"
    memory = "memory"


# Where jobs run: the same options on study, search and compress.
ExecutorOption = Annotated[str, typer.Option("--executor", help="local (this process), or ray")]
AddressOption = Annotated[
    str | None, typer.Option(help="ray: 'auto' (a running cluster) or ray://host:port; default: start one here")
]
RetriesOption = Annotated[int, typer.Option(help="ray: runs again of a task whose worker process died")]
MeasureOnOption = Annotated[
    str | None, typer.Option(help="ray: time only on nodes advertising this custom resource (ray start --resources)")
]
CpusOption = Annotated[int, typer.Option(help="ray: CPUs and torch threads of each job's compress phase")]


def _executor(kind: str, address: str | None, max_retries: int, measure_on: str | None, cpus: int):
    if kind not in ("local", "ray"):
        raise CompressbenchError(f"--executor: {kind!r} is not local or ray")
    if kind == "local" and (address or measure_on):
        raise CompressbenchError("--address and --measure-on: only with --executor ray")
    return cb.ExecutorSettings(kind=kind, address=address, max_retries=max_retries, measure_on=measure_on,
                               cpus_per_job=cpus)  # fmt: skip


@app.command("compress")
@friendly
def compress_(
    model: Annotated[
        str,
        typer.Option(
            help="your factory (file.py:function), a .onnx file, a Hugging Face model "
            "folder, or timm:ARCHITECTURE (with --weights)"
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            help="your loader (file.py:function), a CSV / JSONL / Parquet file, a .npz "
            "file, or an image folder (one subfolder per class)"
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="a new folder for the artifact, manifest and reports")],
    weights: Annotated[
        Path | None, typer.Option(help="the factory's trained weights: .safetensors or a torch state dict")
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="a table's column of texts (default: text)")] = None,
    label_column: Annotated[str | None, typer.Option(help="a table's column of labels (default: label)")] = None,
    sequence_length: Annotated[
        int | None, typer.Option(help="tokens per text for a model folder's tokenizer (default: 128 or fewer)")
    ] = None,
    image_size: Annotated[
        tuple[int, int] | None, typer.Option(help="image folder: HEIGHT WIDTH the model takes (ONNX: from its graph)")
    ] = None,
    mean: Annotated[
        str | None, typer.Option(help="image folder: per-channel mean after scaling, e.g. 0.485,0.456,0.406")
    ] = None,
    std: Annotated[str | None, typer.Option(help="image folder: per-channel std, e.g. 0.229,0.224,0.225")] = None,
    layout: Annotated[str | None, typer.Option(help="image folder: NCHW (channels first) or NHWC")] = None,
    recipes: Annotated[
        str, typer.Option(help="auto, R1,R2,... (names), a YAML file with a recipes: list, or search (Optuna)")
    ] = "auto",
    max_accuracy_drop: Annotated[float, typer.Option(help="accuracy budget in points")] = 1.0,
    objective: Annotated[Objective, typer.Option(help="what the winner minimises")] = Objective.latency,
    batch: Annotated[int, typer.Option(help="the batch size your service runs: decides latency and runtime")] = 1,
    batch_sizes: Annotated[
        list[int] | None,
        typer.Option("--batch-sizes", help="batch sizes timed besides --batch (repeat the option; default 1)"),
    ] = None,
    runtime: Annotated[str, typer.Option(help="onnxruntime, openvino, or auto (fastest installed)")] = "auto",
    fine_tune_epochs: Annotated[
        int | None, typer.Option(help="fine-tuning epochs of every pruning / distillation step")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="runtime threads (default: 1 for latency, every core for throughput)")
    ] = None,
    serving: ServingOption = Serving.latency,
    footprint: Annotated[
        bool, typer.Option(help="probe each candidate's peak memory, load time and first call in a fresh process")
    ] = True,
    tune: Annotated[
        bool,
        typer.Option(
            help="try each runtime's session settings per candidate and write the fastest's into the "
            "manifest (always with throughput)"
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="seed of the held-out split and fine-tuning")] = 0,
    search_trials: Annotated[int, typer.Option(help="with --recipes search: trials in all")] = 20,
    search_timeout: Annotated[str | None, typer.Option(help="with --recipes search: stop after 90s, 30m, 2h")] = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    max_retries: RetriesOption = 2,
    measure_on: MeasureOnOption = None,
    cpus_per_job: CpusOption = 1,
) -> None:
    """Compress your trained model: try the recipes, hand back the winner with its manifest and reports."""
    outcome = cb.compress_model(
        model,
        data,
        weights=weights,
        out=out_dir,
        recipes=recipes,
        max_accuracy_drop=max_accuracy_drop,
        objective=objective.value,
        batch=batch,
        batch_sizes=tuple(batch_sizes or (1,)),
        runtime=runtime,
        fine_tune_epochs=fine_tune_epochs,
        seed=seed,
        latency=cb.LatencySettings(**({"threads": threads} if threads else {})),
        serving=serving.value,
        footprint=footprint,
        tune=tune,
        search_trials=search_trials,
        search_timeout_s=_seconds(search_timeout, "--search-timeout") if search_timeout else None,
        executor=_executor(executor, address, max_retries, measure_on, cpus_per_job),
        text_column=text_column,
        label_column=label_column,
        sequence_length=sequence_length,
        image=_image_options(image_size, mean, std, layout),
    )
    manifest = outcome.manifest
    choice = manifest["choice"]
    out.print(
        f"chosen: {_chosen(choice)} on {choice['runtime']}: {choice['why']}",
        highlight=False,
        soft_wrap=True,
    )
    if choice["runner_up"]:
        out.print(f"runner-up: {choice['runner_up']['recipe']} on {choice['runner_up']['runtime']}", highlight=False)
    for name, failure in manifest["failed"].items():
        out.print(f"[yellow]failed:[/yellow] {name}: {failure}", highlight=False, soft_wrap=True)
    files = ", ".join(manifest["artifact"]["files"])
    out.print(f"wrote {outcome.out}: {files}, manifest.json, report.html, report.md, results.db", highlight=False)
    if searched := manifest.get("search"):
        out.print(f"search: {searched['trials']} trials ({searched['stopped']}), {searched['within_budget']} within "
                  f"the budget; its report: {outcome.out / searched['report']}", highlight=False)  # fmt: skip


def _image_options(size: tuple[int, int] | None, mean: str | None, std: str | None, layout: str | None):
    """The image preprocessing the user declares (over the model's own: timm's data config, an ONNX graph's size)."""
    declared: dict[str, Any] = {}
    if size:
        declared["size"] = list(size)
    for name, text in (("mean", mean), ("std", std)):
        if text:
            try:
                declared[name] = [float(v) for v in text.split(",")]
            except ValueError:
                raise CompressbenchError(f"--{name} {text!r}: numbers separated by commas") from None
    if layout:
        if layout.upper() not in ("NCHW", "NHWC"):
            raise CompressbenchError(f"--layout {layout!r}: NCHW or NHWC")
        declared["layout"] = layout.upper()
    return declared or None


def _chosen(choice: dict[str, Any]) -> str:
    if choice.get("runtime_only"):
        return "your model unchanged (runtime only)"
    return choice["recipe"] or "the baseline (nothing met the budget)"


@app.command("search")
@friendly
def search_(
    dataset: Annotated[str, typer.Option(help="registered dataset, or module:function / file.py:function")],
    model: Annotated[str, typer.Option(help="zoo model, your factory (with --weights), or a .onnx file")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder of the search (search.db, results.db)")],
    weights: Annotated[Path | None, typer.Option(help="your model's trained weights")] = None,
    max_accuracy_drop: Annotated[float, typer.Option(help="accuracy budget in points: a constraint")] = 1.0,
    objective: Annotated[Objective, typer.Option(help="what the best trial maximises")] = Objective.latency,
    batch: Annotated[int, typer.Option(help="the batch size whose latency counts")] = 256,
    trials: Annotated[int, typer.Option(help="trials in all (a resumed search counts the earlier ones)")] = 20,
    timeout: Annotated[str | None, typer.Option(help="stop after this long: 90s, 30m, 2h")] = None,
    goal_speedup: Annotated[float | None, typer.Option(help="stop at a feasible trial this much faster")] = None,
    goal_size: Annotated[float | None, typer.Option(help="stop at a feasible trial this much smaller")] = None,
    sampler: Annotated[str, typer.Option(help="nsga2 (objective and accuracy) or tpe (objective alone)")] = "nsga2",
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default: sqlite in --out)")] = None,
    workers: Annotated[int, typer.Option(help="worker processes on this machine, sharing its cores")] = 1,
    plans: Annotated[
        str | None, typer.Option(help="only these plans, e.g. quant,prune+quant (default: every plan of the objective)")
    ] = None,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    max_retries: RetriesOption = 2,
    measure_on: MeasureOnOption = None,
    cpus_per_job: CpusOption = 1,
    serving: ServingOption = Serving.latency,
) -> None:
    """Search recipes and their settings for the fastest (or smallest) model within the accuracy budget."""
    if sampler not in ("nsga2", "tpe"):
        raise CompressbenchError(f"--sampler: {sampler!r} is not nsga2 or tpe")
    if goal_speedup is not None and goal_size is not None:
        raise CompressbenchError("--goal-speedup and --goal-size: give one (the objective's)")
    outcome = cb.search_workers(
        workers,
        dataset=dataset,
        model=model,
        out=out_dir,
        weights=str(weights) if weights else None,
        max_accuracy_drop=max_accuracy_drop,
        objective=objective.value,
        batch=batch,
        trials=trials,
        timeout_s=_seconds(timeout, "--timeout") if timeout else None,
        goal=goal_speedup if goal_speedup is not None else goal_size,
        sampler=sampler,
        storage=storage,
        plans=[plan.strip() for plan in plans.split(",") if plan.strip()] if plans else None,
        executor=_executor(executor, address, max_retries, measure_on, cpus_per_job),
        serving=serving.value,
    )
    out.print(f"{outcome.trials} trials ({outcome.stopped}), {outcome.feasible} within the budget", highlight=False)
    if outcome.best:
        best = outcome.best
        out.print(
            f"best: trial {best['trial']} {best['recipe']} on {best['runtime']}: {best['speedup']:.2f}x at batch "
            f"{batch}, {best['size_ratio']:.1f}x smaller, drop {best['accuracy_drop_pt']:+.2f} pt",
            highlight=False,
        )
    else:
        out.print("no trial stayed within the budget: keep the baseline", highlight=False)
    if outcome.best and (fixed := outcome.best_fixed):
        figure = "speedup" if objective == Objective.latency else "size_ratio"
        out.print(
            f"best fixed recipe: {fixed['fixed']} ({fixed[figure]:.2f}x, drop {fixed['accuracy_drop_pt']:+.2f} pt); "
            f"the search's best is {outcome.best[figure] / fixed[figure]:.2f}x it on the objective",
            highlight=False,
        )
    out.print(f"report: {outcome.out / 'search.html'} and search.md", highlight=False)


def _seconds(text: str, option: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except ValueError:
        raise CompressbenchError(f"{option}: {text!r} is not a duration like 90s, 30m or 2h") from None


@app.command()
@friendly
def decode(
    path: Annotated[Path, typer.Argument(help="a compress --objective size folder, or a .cbw / .onnx.zst file")],
    out_path: Annotated[Path | None, typer.Option("--out", help="where model.onnx goes (default: beside it)")] = None,
) -> None:
    """Turn a stored form (compressbench's encoding, or zstd) back into the model.onnx a runtime loads."""
    written = cb.decode(path, out_path)
    out.print(f"{written}: {written.stat().st_size:,} bytes, every tensor as it was stored", highlight=False)


@app.command("verify")
@friendly
def verify_(
    folder: Annotated[Path, typer.Argument(help="a compress output folder")],
    data: Annotated[str | None, typer.Option(help="the loader (default: the one in the manifest)")] = None,
    threads: Annotated[int | None, typer.Option(help="intra-op threads (default: the manifest's)")] = None,
) -> None:
    """Check the artifact against its manifest and measure it again on this machine."""
    checked = cb.verify(folder, data=data, threads=threads)
    cpu = checked["cpu"]
    where = (
        "the same CPU model" if cpu["same_cpu"] else f"another CPU ({cpu['here']}; the manifest's: {cpu['manifest']})"
    )
    out.print(f"sha256: {checked['sha256']}; measured here on {checked['runtime']}, {where}", highlight=False)
    accuracy = checked["accuracy"]
    out.print(
        f"accuracy: here {accuracy['here'] * 100:.2f}% on {accuracy['test_samples']} samples, "
        f"manifest {accuracy['manifest'] * 100:.2f}%",
        highlight=False,
    )
    for b, figures in checked["latency_ms"].items():
        manifest_ms = figures["manifest"]
        shown = f"{manifest_ms:.3f} ms" if manifest_ms is not None else "not measured"
        out.print(f"latency batch {b}: here {figures['here']:.3f} ms, manifest {shown}", highlight=False)


def _speed_change(speedup: float) -> str:
    if round(speedup, 2) == 1:
        return f"{speedup:.2f}x"
    return f"{speedup:.2f}x faster" if speedup > 1 else f"{1 / speedup:.2f}x slower"


def side_by_side(result: cb.RunResult) -> Table:
    base, cand = result.baseline, result.candidate
    runtime = cand.runtime
    table = Table(
        title=f"{result.dataset} / {result.model} / {result.recipe} (seed {result.seed})",
        caption=f"{runtime['runtime']} {runtime['version']}, {runtime['threads']} thread(s); latency = "
        "median per call over interleaved timed blocks",
    )
    for column in ("", "baseline", "candidate", "ratio"):
        table.add_column(column, justify="right" if column else "left")

    def pct(m: cb.Metrics) -> str:
        lo, hi = m.accuracy_ci
        return f"{m.accuracy * 100:.2f}% [{lo * 100:.1f}, {hi * 100:.1f}]"

    table.add_row("accuracy (95% CI)", pct(base), pct(cand), f"{-result.accuracy_drop_pt:+.2f} pt")
    for batch, speedup in result.speedup.items():
        before, after = base.latency_ms[batch], cand.latency_ms[batch]
        low, high = result.speedup_ci.get(batch, (None, None))
        table.add_row(
            f"latency batch {batch}",
            f"{before:.4g} ms",
            f"{after:.4g} ms",
            _speed_change(speedup) + (f" [{low:.2f}, {high:.2f}]" if low is not None else ""),
        )
    table.add_row("speed mechanism", "", "", "; ".join(result.speed_mechanism) or cb.NO_MECHANISM)
    table.add_row("file size", _bytes(base.size_bytes), _bytes(cand.size_bytes), result.size_change)
    table.add_row(
        "stored size",
        _bytes(base.stored_bytes),
        _bytes(cand.stored_bytes),
        f"{result.compression_ratio:.1f}x vs fp32 params",
    )
    table.add_row(
        "params (non-zero)",
        f"{base.params:,} ({base.nonzero_params:,})",
        f"{cand.params:,} ({cand.nonzero_params:,})",
        "",
    )
    table.add_row("MACs", f"{base.macs:,}", f"{cand.macs:,}", f"{base.macs / max(cand.macs, 1):.2f}x")
    if base.footprint and cand.footprint and "peak_rss_mb" in base.footprint and "peak_rss_mb" in cand.footprint:
        before, after = base.footprint, cand.footprint
        table.add_row("peak memory (fresh process)", f"{before['peak_rss_mb']:.0f} MB",
                      f"{after['peak_rss_mb']:.0f} MB",
                      f"model {before['model_rss_mb']:.0f} → {after['model_rss_mb']:.0f} MB")  # fmt: skip
        table.add_row("load / first call", f"{before['load_s']:.3f} s / {before['first_inference_ms']:.3g} ms",
                      f"{after['load_s']:.3f} s / {after['first_inference_ms']:.3g} ms", "")  # fmt: skip
    if result.measurement.get("serving") == "throughput":
        for batch in result.speedup:
            rate = int(batch) * 1000 / cand.latency_ms[batch]
            table.add_row(f"throughput batch {batch}", f"{int(batch) * 1000 / base.latency_ms[batch]:,.0f}/s",
                          f"{rate:,.0f}/s", f"{runtime.get('options', {})}")  # fmt: skip
    return table


def _bytes(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.2f} MiB"


@app.command()
@friendly
def study(
    spec: Annotated[Path, typer.Argument(help="study YAML file")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="results folder (default runs/<study name>)")] = None,
    retrain_baselines: Annotated[
        bool, typer.Option(help="train baselines afresh, not from the cache or the shipped ones")
    ] = False,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    max_retries: RetriesOption = 2,
    measure_on: MeasureOnOption = None,
    cpus_per_job: CpusOption = 1,
    serving: Annotated[
        Serving | None, typer.Option(help="measure every job for this serving profile (default: the study's own)")
    ] = None,
) -> None:
    """Run every job of a study; stored runs are skipped, so re-running resumes."""
    parsed = cb.load_study(spec)
    if serving is not None:
        parsed = parsed.for_serving(serving.value)
    folder = out_dir or Path("runs") / parsed.name
    settings = _executor(executor, address, max_retries, measure_on, cpus_per_job)
    counts = cb.run_study(parsed, folder, retrain_baselines=retrain_baselines, executor=settings)
    out.print(
        f"study {parsed.name}: {counts['planned']} jobs, {counts['stored_before']} already stored, "
        f"{counts['ok']} ran, {counts['failed']} failed -> {folder / 'results.db'}",
        highlight=False,
    )
    if counts["failed"]:
        raise typer.Exit(1)


class PruneKind(StrEnum):
    channels = "prune.channels"
    magnitude = "prune.magnitude"


@app.command()
@friendly
def sensitivity(
    dataset: Annotated[str, typer.Option(help="registered dataset, or module:function / file.py:function")],
    model: Annotated[str, typer.Option(help="zoo model, or module:function / file.py:function")],
    technique: Annotated[PruneKind, typer.Option(help="what is pruned one layer at a time")] = PruneKind.channels,
    ratio: Annotated[list[float] | None, typer.Option(help="pruning ratios tried (repeat the option)")] = None,
    importance: Annotated[str, typer.Option(help="prune.channels: l1, l2, bn_scale or taylor")] = "l2",
    samples: Annotated[int, typer.Option(help="validation samples scoring each variant")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the data split and training")] = 0,
    epochs: Annotated[int | None, typer.Option(help="baseline epochs (default: the model's own)")] = None,
    width: Annotated[float, typer.Option(help="width multiplier of the model")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the curves as one JSON object")] = False,
) -> None:
    """Prune one layer (channel group) at a time over a range of ratios; print validation accuracy; store curves."""
    if importance not in ("l1", "l2", "bn_scale", "taylor"):
        raise CompressbenchError(f"--importance: unknown importance {importance!r} (known: l1, l2, bn_scale, taylor)")
    curves = cb.sensitivity(
        dataset,
        model,
        technique=technique.value,
        ratios=tuple(ratio or (0.2, 0.4, 0.6, 0.8)),
        importance=importance,
        samples=samples,
        seed=seed,
        epochs=epochs,
        width=width,
    )
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(curves), indent=1) + "\n")
        return
    unit = "groups of coupled layers" if technique is PruneKind.channels else "layers"
    table = Table(
        title=f"{dataset} / {model}: val accuracy (%) with one of the {unit} pruned ({technique.value})",
        caption=f"baseline {curves.baseline_accuracy * 100:.1f}% on {curves.samples} val samples; "
        f"curves stored at {curves.path}",
    )
    table.add_column("layer")
    for r in curves.ratios:
        table.add_column(f"{r:g}", justify="right")
    table.add_column("MACs removed at max", justify="right")
    for row in curves.table_rows():
        table.add_row(*row)
    out.print(table)


class ResultFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
@friendly
def results(
    folder: Annotated[Path, typer.Argument(help="study folder or results.db")],
    fmt: Annotated[ResultFormat, typer.Option("--format")] = ResultFormat.table,
) -> None:
    """Print the stored runs as a table, CSV or JSON."""
    if fmt is ResultFormat.json:
        rows = [
            {
                "key": r.key,
                "status": r.status,
                "config": r.config,
                "result": r.result.to_json() if r.result else None,
                "error": r.error,
            }
            for r in cb.stored_runs(folder)
        ]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    frame = cb.load_results(folder)
    if fmt is ResultFormat.csv:
        sys.stdout.write(frame.to_csv(index=False))
        return
    table = Table(title=str(folder))
    columns = [
        "dataset",
        "model",
        "recipe",
        "seed",
        "status",
        "candidate_accuracy",
        "accuracy_drop_pt",
        *[c for c in frame.columns if c.startswith("speedup_")],
        "size_ratio",
        "compression_ratio",
    ]
    for column in columns:
        table.add_column(column)
    for _, row in frame.iterrows():
        table.add_row(*[_cell(row.get(c)) for c in columns])
    out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return "" if value is None else str(value)


class ReportFormat(StrEnum):
    html = "html"
    md = "md"


@app.command()
@friendly
def report(
    folder: Annotated[Path, typer.Argument(help="study folder holding results.db")],
    fmt: Annotated[list[ReportFormat] | None, typer.Option("--format", help="html and/or md (default both)")] = None,
    max_accuracy_drop: Annotated[float, typer.Option(help="accuracy budget of the recommendation, points")] = 1.0,
) -> None:
    """Write report.html (self-contained, offline) and report.md next to the study's results."""
    formats = tuple(f.value for f in fmt) if fmt else ("html", "md")
    for path in cb.report(folder, formats, max_accuracy_drop):
        out.print(f"wrote {path}", highlight=False)


class Objective(StrEnum):
    latency = "latency"
    size = "size"
    memory = "memory"


@app.command()
@friendly
def recommend(
    folder: Annotated[Path, typer.Argument(help="study folder or results.db")],
    max_accuracy_drop: Annotated[float, typer.Option(help="largest accepted accuracy drop, points")] = 1.0,
    objective: Annotated[Objective, typer.Option(help="what to minimise")] = Objective.latency,
    batch: Annotated[int, typer.Option(help="batch size that matters for latency")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """For each model: the recipe that best meets the objective within the accuracy budget, and the runner-up."""
    answers = cb.recommend(folder, max_accuracy_drop, objective.value, batch)
    if as_json:
        rows = [
            {
                "dataset": a.dataset,
                "model": a.model,
                "best": a.best.recipe if a.best else None,
                "best_runtime": a.best.runtime if a.best else None,
                "runner_up": a.runner_up.recipe if a.runner_up else None,
                "runner_up_runtime": a.runner_up.runtime if a.runner_up else None,
                "why": a.reason,
            }
            for a in answers
        ]
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    table = Table(
        title=f"best for {objective.value}"
        + (f" at batch {batch}" if objective is Objective.latency else "")
        + f", accuracy drop ≤ {max_accuracy_drop:g} pt"
    )
    for column in ("dataset", "model", "best", "runner-up", "why"):
        table.add_column(column)
    for answer in answers:
        table.add_row(
            answer.dataset,
            answer.model,
            answer.label(answer.best) or "keep the baseline",
            answer.label(answer.runner_up) or "—",
            answer.reason,
        )
    out.print(table)


@data_app.command("download")
@friendly
def download(name: Annotated[str, typer.Argument(help="fashion-mnist")]) -> None:
    """Download a dataset from its official mirror into the user cache, verifying checksums (needs network)."""
    out.print(f"{name} saved to {cb.download_dataset(name)}")


if __name__ == "__main__":
    app()
