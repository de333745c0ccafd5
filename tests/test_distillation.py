"""`distill.kd`: the loss, the student, the teacher-logit cache, the control, and bad input."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import FAST_LATENCY, QUICK_TRAINING
from torch import nn
from typer.testing import CliRunner

from compressbench.cache import Cache
from compressbench.cli import app
from compressbench.data import load_dataset
from compressbench.errors import CompressbenchError
from compressbench.models import ModelConfig, build_model
from compressbench.recipes import load_recipe
from compressbench.techniques import Candidate, Context
from compressbench.techniques.distill import KDConfig, KnowledgeDistillation, kd_loss
from compressbench.training import Batch, cross_entropy, train


@pytest.fixture(scope="module")
def digits_teacher():
    data = load_dataset("digits")
    teacher = build_model("mlp", data.spec, seed=0)
    train(teacher, data, QUICK_TRAINING, seed=0)
    return data, teacher


def context_for(data, teacher, cache, model="mlp", seed=0) -> Context:
    return Context(data=data, baseline=teacher, model=ModelConfig(name=model), train_config=QUICK_TRAINING,
                   seed=seed, cache=cache, latency=FAST_LATENCY)  # fmt: skip


def distill(context: Context, **options) -> Candidate:
    return KnowledgeDistillation(KDConfig(**options)).apply(Candidate(module=copy.deepcopy(context.baseline)), context)


def test_loss_matches_a_hand_computation():
    student = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = np.array([[2.0, 1.0, 0.0], [1.0, 1.5, -2.0]])
    labels = np.array([1, 2])
    t, alpha = 2.0, 0.3

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p_teacher, p_student = softmax(teacher / t), softmax(student / t)
    kl = (p_teacher * np.log(p_teacher / p_student)).sum(1).mean()
    ce = -np.log(softmax(student)[np.arange(2), labels]).mean()
    expected = alpha * t * t * kl + (1 - alpha) * ce
    got = kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t, alpha)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # alpha = 1 is the soft term alone, alpha = 0 the labels alone.
    assert kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t, 1.0).item() == (
        pytest.approx(t * t * kl, rel=1e-10)
    )
    assert kd_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), 1.0, 0.0).item() == (
        pytest.approx(ce, rel=1e-10)
    )


def test_temperature_one_alpha_zero_is_plain_training(digits_teacher, cache):
    data, teacher = digits_teacher
    context = context_for(data, teacher, cache)
    candidate = distill(context, temperature=1.0, alpha=0.0)
    control = candidate.companions["control"].module
    # Same initial weights, seed and optimiser: the "distilled" student is the control, weight for weight ...
    for (name, a), b in zip(candidate.module.state_dict().items(), control.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # ... and both are what plain cross-entropy training of that student gives.
    plain = build_model(ModelConfig(name="mlp", width=0.5), data.spec, seed=0)
    train(plain, data, QUICK_TRAINING.model_copy(update={"epochs": 2 * QUICK_TRAINING.epochs}), seed=0)
    for (name, a), b in zip(candidate.module.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert candidate.records[-1]["teacher_logits"].startswith("not needed")

    x = torch.randn(5, 10)
    batch = Batch(x, torch.tensor([0, 1, 2, 3, 4]), torch.arange(5))
    assert torch.equal(kd_loss(x, torch.randn(5, 10), batch.y, 1.0, 0.0), cross_entropy(nn.Identity(), x, batch))


def test_student_shape_follows_the_multiplier(digits_teacher, cache, tmp_path):
    data, teacher = digits_teacher
    context = context_for(data, teacher, cache)

    def linear_widths(options):
        technique = KnowledgeDistillation(KDConfig(**options))
        model = technique.build_student(technique.student_config(context), context)
        return [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]

    assert linear_widths({}) == [150, 50, 10]  # LeNet-300-100 at the default width 0.5
    assert linear_widths({"width": 0.25}) == [75, 25, 10]
    assert linear_widths({"width": 0.25, "depth": 1}) == [75, 10]

    resnet_context = context_for(load_dataset("synthetic"), teacher, cache, model="resnet")
    technique = KnowledgeDistillation(KDConfig(width=0.5))
    student = technique.build_student(technique.student_config(resnet_context), resnet_context)
    assert [m.out_channels for m in student.stem if isinstance(m, nn.Conv2d)] == [8]
    assert student.classifier.in_features == 32

    # Any zoo model or user factory by name.
    technique = KnowledgeDistillation(KDConfig(student="lenet5", width=0.5))
    lenet = technique.build_student(technique.student_config(context), context)
    assert lenet.features[0].out_channels == 3
    factory = tmp_path / "students.py"
    factory.write_text(
        "from torch import nn\ndef tiny(spec):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
    )
    technique = KnowledgeDistillation(KDConfig(student=f"{factory}:tiny"))
    assert isinstance(technique.build_student(technique.student_config(context), context), nn.Sequential)


def test_teacher_logits_are_cached_across_runs(digits_teacher, tmp_path):
    data, teacher = digits_teacher
    cache = Cache(tmp_path)
    first = distill(context_for(data, teacher, cache), temperature=4.0, epochs=2)
    assert first.records[-1]["teacher_logits"] == "computed"
    assert first.records[-1]["control"]["cached"] is False
    assert len(list((tmp_path / "teacher_logits").glob("*.npy"))) == 1
    # Another temperature trains another student, from the logits on disk; the control is reused.
    second = distill(context_for(data, teacher, cache), temperature=2.0, epochs=2)
    assert second.records[-1]["teacher_logits"] == "cached"
    assert second.records[-1]["control"]["cached"] is True
    assert second.records[-1]["distilled"]["cached"] is False
    step = second.records[-1]
    helped = step["distilled"]["val_accuracy"] >= step["control"]["val_accuracy"]
    assert helped != any("distillation did not help" in flag for flag in second.flags)
    # A changed teacher has other logits.
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        other.classifier.bias += 1
    third = distill(context_for(data, other, cache), temperature=2.0, epochs=2)
    assert third.records[-1]["teacher_logits"] == "computed"
    assert len(list((tmp_path / "teacher_logits").glob("*.npy"))) == 2


def test_augmented_training_runs_the_teacher_on_each_batch(tmp_path):
    data = load_dataset("synthetic")
    teacher = build_model("lenet5", data.spec, seed=0)
    calls = []
    teacher.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    context = context_for(data, teacher, Cache(tmp_path), model="lenet5")
    context = Context(**{**context.__dict__, "train_config": QUICK_TRAINING.model_copy(update={"augment": True})})
    calls.clear()
    candidate = distill(context, epochs=1)
    assert candidate.records[-1]["teacher_logits"] == "per batch (augmentation on)"
    assert not list(tmp_path.glob("teacher_logits/*.npy"))
    # The technique's copy of the teacher (hook included) ran once on each augmented batch, not on the split.
    assert sum(calls) == len(data.train) and len(calls) == -(-len(data.train) // QUICK_TRAINING.batch_size)


def test_the_control_is_stored_and_measured(tmp_path):
    runner = CliRunner()
    args = ["run", "--dataset", "digits", "--model", "mlp", "--recipe", "distill.kd", "--json", "--out", str(tmp_path),
            "--epochs", "3", "--warmup", "0.02", "--repeats", "2", "--batch", "1", "--batch", "64"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"baseline", "candidate", "control"} <= payload.keys()
    assert payload["control"].keys() == payload["candidate"].keys()
    assert payload["control"]["params"] == payload["candidate"]["params"] < payload["baseline"]["params"] / 2
    step = payload["steps"][-1]
    assert step["step"] == "distill.kd" and step["student"]["width"] == 0.5 and step["epochs"] == 6
    stored = json.loads(runner.invoke(app, ["results", str(tmp_path), "--format", "json"]).stdout)
    assert stored[0]["result"]["control"]["accuracy"] == payload["control"]["accuracy"]
    table = runner.invoke(app, ["results", str(tmp_path), "--format", "csv"]).stdout
    assert "control_accuracy" in table.splitlines()[0]
    # The table output says it too (the run is stored: no retraining).
    shown = runner.invoke(app, [a for a in args if a != "--json"])
    assert shown.exit_code == 0 and "control (the same student trained alone)" in shown.stdout


@pytest.mark.parametrize(
    ("options", "field"),
    [({"temperature": 0}, "temperature"), ({"temperature": -1}, "temperature"), ({"alpha": 1.5}, "alpha"),
     ({"alpha": -0.1}, "alpha"), ({"width": 0}, "width"), ({"temprature": 2}, "temprature")],
)  # fmt: skip
def test_bad_config_names_the_field(options, field):
    with pytest.raises(CompressbenchError, match=rf"step 1 \(distill.kd\): field '{field}'"):
        load_recipe({"name": "x", "steps": [{"technique": "distill.kd", **options}]})


def test_student_with_other_classes_is_an_error(digits_teacher, cache, tmp_path):
    data, teacher = digits_teacher
    factory = tmp_path / "bad_student.py"
    factory.write_text(
        "from torch import nn\ndef three(spec):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))\n"
    )
    with pytest.raises(CompressbenchError, match=r"distill.kd: field 'student': .*expected \(2, 10\)"):
        distill(context_for(data, teacher, cache), student=f"{factory}:three")


def test_larger_student_is_flagged_and_earlier_steps_are_refused(digits_teacher, cache):
    data, teacher = digits_teacher
    candidate = distill(context_for(data, teacher, cache), width=1.5, epochs=1)
    assert any("larger than the teacher" in flag for flag in candidate.flags)
    context = context_for(data, teacher, cache)
    with pytest.raises(CompressbenchError, match="put distill.kd first"):
        KnowledgeDistillation().apply(Candidate(module=copy.deepcopy(teacher), records=[{"step": "x"}]), context)


def test_without_the_control_only_the_distilled_student_is_trained(digits_teacher, tmp_path):
    data, teacher = digits_teacher
    cache = Cache(tmp_path)
    alone = distill(context_for(data, teacher, cache), control=False)
    assert "control" not in alone.companions and alone.records[-1]["control"] is None
    assert len(list(tmp_path.glob("students/*.safetensors"))) == 1  # the distilled student only
    with_control = distill(context_for(data, teacher, cache))
    assert "control" in with_control.companions and len(list(tmp_path.glob("students/*.safetensors"))) == 2
    # The same distilled student either way: the control changes what is shown, not what is trained.
    for a, b in zip(alone.module.state_dict().values(), with_control.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
