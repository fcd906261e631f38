"""Every code snippet of the seed document (ClearML's Model API page) runs unchanged,
except for the import line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import modelbook
from modelbook import InputModel, Model

SEED = Path(__file__).parents[1] / "seed" / "model-api.md"
SHARED_SEED = Path(__file__).parents[3] / "shared" / "seed" / "model-api.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", SEED.read_text(), flags=re.S)


IMPORT_LINE = "from modelbook import Task, Model, InputModel, OutputModel"


def _modelbook(code: str) -> str:
    """The snippet with its import line changed; the page's later snippets rely on the
    classes imported once at the top, as a user's script would."""
    return re.sub(r"^from clearml import .*$", IMPORT_LINE, code, flags=re.M)


def test_vendored_seed_matches_shared() -> None:
    if not SHARED_SEED.is_file():
        pytest.skip("shared/ is not beside this checkout")
    assert SEED.read_text() == SHARED_SEED.read_text()


def test_seed_has_the_snippets_we_run() -> None:
    assert len(SNIPPETS) == 6
    assert all("clearml" not in _modelbook(s).replace("ClearML", "") for s in SNIPPETS)


@pytest.fixture
def seed_env(registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """What the snippets assume exists: a weights file, a destination, a registered model."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pth").write_bytes(b"\x00weights" * 512)
    if registry == "clearml":
        pytest.skip("a ClearML server assigns ids: the spec's fixed model id cannot be seeded")
    backend = modelbook.config.get_backend()
    backend.create_model(
        id="fd8b402e874549d6944eebd49e37eb7b", name="registered", uri="https://s3/models/resnet.pth"
    )
    return {
        "models_upload_destination": str(tmp_path / "destination"),
        "val_log": {"iou": 0.71},
        "best_iou": 0.5,
    }


def _run_script(snippets: list[str], env: dict) -> dict:
    """Run snippets as one user script would: one namespace, the task closed at the end."""
    namespace = dict(env)
    exec(IMPORT_LINE, namespace)
    for snippet in snippets:
        exec(compile(_modelbook(snippet), str(SEED), "exec"), namespace)
    namespace["task"].close() if "task" in namespace else None
    return namespace


def test_all_snippets_in_order(seed_env: dict, tmp_path: Path) -> None:
    # The page holds three scripts: output models (0-3), an import (4), a query (5).
    namespace = _run_script(SNIPPETS[:4], seed_env)
    namespace.update(_run_script(SNIPPETS[4:5], seed_env))
    namespace["model_list"] = _run_script(SNIPPETS[5:], seed_env)["model_list"]

    output_model = namespace["output_model"]
    task = modelbook.Task.get_task(task_id=output_model.task)
    # Snippets 0-2: an OutputModel with labels and weights stored at the destination.
    assert output_model.framework == "PyTorch"
    assert output_model.labels == {"background": 0, "label": 255}
    assert output_model.url.startswith("file://" + str(tmp_path / "destination"))
    assert Model(output_model.id).get_local_copy() is not None
    # Snippet 3: the registered model is connected as the task's input.
    assert "fd8b402e874549d6944eebd49e37eb7b" in [m.id for m in task.models.input]
    # Snippet 4: the import registered the URL once with its labels.
    imported = namespace["input_model"]
    assert imported.url == "https://s3/models/model.pth"
    assert imported.labels["truck"] == 3 and imported.framework == "PyTorch"
    again = InputModel.import_model(weights_url="https://s3/models/model.pth", name="other")
    assert again.id == imported.id
    # Snippet 5: the query ran (no model has the "demo" tag here).
    assert namespace["model_list"] == []


def test_query_snippet_finds_tagged_models(seed_env: dict) -> None:
    _run_script(SNIPPETS[4:5], seed_env)  # creates the "examples" project
    InputModel.import_model(
        weights_url="https://s3/a.pt", name="a", tags=["demo"], project="examples"
    )
    InputModel.import_model(
        weights_url="https://s3/b.pt", name="b", tags=["demo", "TF"], project="examples"
    )
    InputModel.import_model(
        weights_url="https://s3/c.pt", name="c", tags=["other"], project="examples"
    )
    assert [m.name for m in _run_script(SNIPPETS[5:], seed_env)["model_list"]] == ["a"]


# not on PostgreSQL again: the spec's snippets; the store's SQL is tested elsewhere
pytestmark = pytest.mark.sql_agnostic
