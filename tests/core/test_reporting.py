"""Reporting (ClearML's Logger and the models' report_*): values are sent in the background,
kept by every backend, read back the way ClearML reads them, and spooled while offline."""

from __future__ import annotations

import json
import logging
import math

import pytest

from modelbook import Model, OutputModel, Task
from modelbook.errors import InvalidArgumentError
from modelbook.reporting import Logger
from modelbook.sync import sync


def test_reported_values_read_back(registry: str) -> None:
    task = Task.init(project_name="reports", task_name="curves")
    logger = task.get_logger()
    assert Logger.current_logger() is not None
    for step, (loss, acc) in enumerate([(0.9, 0.5), (0.4, 0.7), (0.6, 0.8)]):
        logger.report_scalar("loss", "train", loss, iteration=step)
        logger.report_scalar("accuracy", "validation", acc, iteration=step)
    logger.report_scalar("loss", "train", 0.45, iteration=2)  # reported again: replaces
    logger.report_scalar("loss", "train", math.nan, iteration=3)  # not finite: skipped
    logger.report_single_value("test_accuracy", 0.81)
    logger.report_histogram("weights", "layer1", values=[1, 2, 3], iteration=0)
    logger.report_text("epoch %d done", logging.INFO, True, 1)
    model = OutputModel(task=task, name="reported")
    model.report_scalar("calibration", "ece", 0.03, iteration=1)
    model.report_single_value("params", 1234)
    model.report_confusion_matrix("confusion", "val", [[5, 1], [2, 7]], iteration=1,
                                  xlabels=["cat", "dog"])  # fmt: skip
    assert task.flush()

    again = Task.get_task(task_id=task.id)
    assert again.get_reported_scalars() == {
        "loss": {"train": {"x": [0, 1, 2], "y": [0.9, 0.4, 0.45]}},
        "accuracy": {"validation": {"x": [0, 1, 2], "y": [0.5, 0.7, 0.8]}},
    }
    assert again.get_reported_single_value("test_accuracy") == 0.81
    last = again.get_last_scalar_metrics()
    assert last["accuracy"]["validation"] == {"last": 0.8, "min": 0.5, "max": 0.8}
    assert last["loss"]["train"]["last"] == 0.45
    stored = Model(model.id)
    assert stored.get_reported_scalars() == {"calibration": {"ece": {"x": [1], "y": [0.03]}}}
    assert stored.get_reported_single_values() == {"params": 1234.0}
    (plot,) = again.get_reported_plots()
    assert (plot["metric"], plot["variant"], plot["iter"]) == ("weights", "layer1", 0)
    assert json.loads(plot["plot_str"])["data"] == [
        {"type": "bar", "name": "layer1", "x": [0, 1, 2], "y": [1, 2, 3]}
    ]
    (matrix,) = stored.get_reported_plots()
    assert json.loads(matrix["plot_str"])["data"][0] == {
        "type": "heatmap", "name": "val", "z": [[5, 1], [2, 7]], "x": ["cat", "dog"]
    }
    assert again.get_reported_console_output() == ["epoch 1 done"]
    task.close()


@pytest.mark.parametrize(
    ("method", "args", "trace"),
    [("report_vector", {"values": [[1, 2], [3, 4]], "labels": ["a", "b"]}, "bar"),
     ("report_scatter2d", {"scatter": [[0, 1], [1, 3]], "mode": "markers"}, "scatter"),
     ("report_scatter3d", {"scatter": [[0, 1, 2]]}, "scatter3d"),
     ("report_matrix", {"matrix": [[1, 0], [0, 1]]}, "heatmap"),
     ("report_surface", {"matrix": [[1, 0], [0, 1]]}, "surface"),
     ("report_table", {"table_plot": [["k", "v"], ["lr", 0.1]]}, "table")],
)  # fmt: skip
def test_every_plot_kind_is_kept_as_a_plotly_figure(method: str, args: dict, trace: str) -> None:
    np = pytest.importorskip("numpy")
    task = Task.init(project_name="reports", task_name="plots")
    arrays = {k: np.array(v, dtype=object if k == "table_plot" else None)
              if isinstance(v, list) else v for k, v in args.items()}  # fmt: skip
    getattr(task.get_logger(), method)("title", "series", iteration=4, **arrays)
    (plot,) = task.get_reported_plots()
    figure = json.loads(plot["plot_str"])
    assert figure["data"][0]["type"] == trace and figure["layout"]["title"] == "title"
    assert plot["iter"] == 4


def test_bad_reports_are_clear_errors() -> None:
    logger = Task.init(project_name="reports", task_name="bad").get_logger()
    with pytest.raises(InvalidArgumentError, match="value of loss/train must be a number"):
        logger.report_scalar("loss", "train", "high", iteration=0)
    with pytest.raises(InvalidArgumentError, match="iteration must be an int"):
        logger.report_scalar("loss", "train", 0.1, iteration="3")
    with pytest.raises(InvalidArgumentError, match="title must be a string"):
        logger.report_scalar(5, "train", 0.1, iteration=0)


def test_offline_reports_wait_in_the_spool_and_sync_sends_them(registry: str) -> None:
    Task.set_offline(True)
    try:
        task = Task.init(project_name="reports", task_name="offline")
        task.get_logger().report_scalar("loss", "train", 0.3, iteration=7)
        task.close()
        local_id = task.id
    finally:
        Task.set_offline(False)
    report = sync(timeout=60)
    assert not report.failed and not report.left
    sent = Task.get_task(task_id=local_id)
    assert sent.get_reported_scalars() == {"loss": {"train": {"x": [7], "y": [0.3]}}}
