"""transformers: a tiny BERT built from a config (nothing downloaded) trains on CPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it

from scripted import every_version_reads_back, improvements, only_model  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from modelbook import Model, OutputModel, Task  # noqa: E402
from modelbook.errors import InvalidArgumentError  # noqa: E402
from modelbook.integrations.monitor import MetricNotFoundError, MonitorWarning  # noqa: E402
from modelbook.integrations.transformers import ModelbookCallback  # noqa: E402

PROBE = torch.arange(24).reshape(3, 8) % 32


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    return BertForSequenceClassification(config)


class Tokens(torch.utils.data.Dataset):
    """Random token ids; the label is whether the first token is in the upper half."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 32, (n, 8), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": (self.ids[i, 0] > 15).long()}


class Recorder(TrainerCallback):
    """The metrics each evaluation reported during train(), and the model's logits then."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=PROBE).logits.clone()
        model.train(was_training)
        self.seen.append({"step": state.global_step, "epoch": state.epoch,
                          "metrics": dict(metrics), "logits": logits})  # fmt: skip


class Drain(TrainerCallback):
    """Listed after ModelbookCallback: waits for each queued version to be stored, so no
    improvement is coalesced away by the upload queue and counts are exact."""

    def on_evaluate(self, args, state, control, **kwargs):
        assert OutputModel.wait_for_uploads(timeout=30) == []

    on_save = on_evaluate


def scripted(values: list[float]):
    """A compute_metrics returning the next scripted ``score`` at each evaluation."""
    it = iter(values)
    return lambda _prediction: {"score": next(it)}


def arguments(out: Path, epochs: int, **kwargs) -> TrainingArguments:
    options = {"save_strategy": "no", **kwargs}
    return TrainingArguments(
        output_dir=str(out), report_to="none", use_cpu=True, num_train_epochs=epochs,
        per_device_train_batch_size=16, per_device_eval_batch_size=32, eval_strategy="epoch",
        logging_strategy="no", learning_rate=1e-2, seed=0, disable_tqdm=True, **options,
    )  # fmt: skip


def train(args, callbacks, compute_metrics=None, eval_dataset=None, model=None, **kwargs):
    trainer = Trainer(
        model=model or tiny_bert(), args=args, train_dataset=Tokens(64, 1),
        eval_dataset=eval_dataset or Tokens(32, 2), compute_metrics=compute_metrics,
        callbacks=callbacks,
    )  # fmt: skip
    trainer.train(**kwargs)
    return trainer




def meta(version) -> dict[str, str]:
    return {k: v["value"] for k, v in version.metadata.items()}


def test_registers_each_improvement_with_metadata_and_loadable_weights(tmp_path, registry):
    recorder = Recorder()
    callback = ModelbookCallback(project_name="hf-runs", task_name="bert")
    train(arguments(tmp_path, epochs=3), [recorder, callback, Drain()])

    registered = only_model("hf-runs")
    losses = [seen["metrics"]["eval_loss"] for seen in recorder.seen]
    wanted = [recorder.seen[i] for i in improvements(losses)]
    assert len(registered.versions) == len(wanted) >= 2
    every_version_reads_back(registered)
    assert registered.labels == {"negative": 0, "positive": 1}  # from config.id2label
    curve = Task.get_task(task_id=registered.task).get_reported_scalars()["eval_loss"]
    assert curve["eval_loss"]["y"] == pytest.approx(losses)  # each evaluation's
    assert "package" in registered.system_tags
    for version, seen in zip(registered.versions, wanted, strict=True):
        m = meta(version)
        assert version.iteration == int(m["global_step"]) == seen["step"]
        assert (m["monitor"], m["monitor_mode"]) == ("eval_loss", "min")
        assert float(m["monitor_value"]) == seen["metrics"]["eval_loss"]
        assert {k: float(v) for k, v in m.items() if k.startswith("metrics/")} == {
            f"metrics/{k}": v for k, v in seen["metrics"].items()
        }
        assert float(m["epoch"]) == seen["epoch"]
        assert m["framework"] == "transformers"
        assert m["framework_version"] == transformers.__version__
    params = Task.current_task().get_parameters()
    assert float(params["TrainingArguments/learning_rate"]) == 0.01

    folder = Path(Model(registered.id).get_local_copy())
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    fresh = BertForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=PROBE).logits, wanted[-1]["logits"])
    assert fresh.config.id2label == {0: "negative", 1: "positive"}


def test_defaults_follow_metric_for_best_model_and_greater_is_better(tmp_path):
    args = arguments(tmp_path, epochs=4, metric_for_best_model="score", greater_is_better=True)
    callback = ModelbookCallback(project_name="hf-runs", task_name="score")
    train(args, [callback, Drain()], compute_metrics=scripted([0.5, 0.7, 0.6, 0.9]))
    versions = only_model("hf-runs").versions
    keys = {(meta(v)["monitor"], meta(v)["monitor_mode"]) for v in versions}
    assert keys == {("eval_score", "max")}
    assert [float(meta(v)["monitor_value"]) for v in versions] == [0.5, 0.7, 0.9]

    other = ModelbookCallback(monitor="accuracy", project_name="hf-runs", task_name="score")
    with pytest.raises(InvalidArgumentError, match="mode is required for monitor='eval_accuracy'"):
        train(args, [other], compute_metrics=scripted([0.5] * 4))


def test_full_checkpoint_is_saved_at_each_improvement(tmp_path):
    callback = ModelbookCallback("score", "min", project_name="hf-runs", task_name="full",
                                 save_weights_only=False)  # fmt: skip
    train(
        arguments(tmp_path, epochs=4),
        [callback, Drain()],
        compute_metrics=scripted([3.0, 4.0, 2.0, 2.0]),
    )
    registered = only_model("hf-runs")
    assert [v.iteration for v in registered.versions] == [4, 12]
    saved = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert saved == ["checkpoint-12", "checkpoint-4"]  # saved because the callback asked
    files = {p.name for p in Path(Model(registered.id).get_local_copy()).iterdir()}
    assert {"optimizer.pt", "trainer_state.json", "model.safetensors"} <= files


def test_missing_metric_warns_once_and_fails_at_the_end(tmp_path):
    callback = ModelbookCallback("f1", "max", project_name="hf-runs", task_name="missing")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(MetricNotFoundError, match="'eval_loss'"):
            train(arguments(tmp_path, epochs=2), [callback])
    missing = [w for w in caught if issubclass(w.category, MonitorWarning)]
    assert len(missing) == 1 and "'eval_f1' is not among the reported" in str(missing[0].message)


def test_several_eval_datasets_report_one_by_one(tmp_path):
    callback = ModelbookCallback("eval_b_loss", "min", project_name="hf-runs", task_name="multi")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorWarning)  # the "a" half of each step is no miss
        train(arguments(tmp_path, epochs=2), [callback],
              eval_dataset={"a": Tokens(16, 3), "b": Tokens(16, 4)})  # fmt: skip
    first = meta(only_model("hf-runs").versions[0])
    assert {"metrics/eval_a_loss", "metrics/eval_b_loss"} <= set(first)


@pytest.mark.parametrize("restore_callback_states", [False, True])
def test_resume_continues_the_model_and_never_registers_worse(tmp_path, restore_callback_states):
    def run(out, values, epochs, **kwargs):
        restore = {"restore_callback_states_from_checkpoint": restore_callback_states}
        args = arguments(out, epochs=epochs, save_strategy="epoch", **restore)
        callback = ModelbookCallback("score", "min", project_name="hf-runs", task_name="resume")
        trainer = train(args, [callback, Drain()], compute_metrics=scripted(values), **kwargs)
        callbacks = trainer.callback_handler.callbacks
        return next(c for c in callbacks if isinstance(c, ModelbookCallback))

    first = run(tmp_path / "run1", [3.0, 2.0, 1.0], epochs=3)
    task_id = Task.current_task().id
    Task.current_task().close()  # as if the process had ended
    # resume after epoch 1: the checkpoint says best=3, the registry says best=1
    second = run(tmp_path / "run2", [1.5, 1.2, 0.5, 0.7], epochs=5,
                 resume_from_checkpoint=str(tmp_path / "run1" / "checkpoint-4"))  # fmt: skip

    registered = only_model("hf-runs")
    assert [float(meta(v)["monitor_value"]) for v in registered.versions] == [3.0, 2.0, 1.0, 0.5]
    assert [v.iteration for v in registered.versions] == [4, 8, 12, 16]
    assert registered.task == task_id
    assert first.registrar.model_id == second.registrar.model_id == registered.id


# not on PostgreSQL again: the callback's logic, not the store's SQL
pytestmark = pytest.mark.sql_agnostic
