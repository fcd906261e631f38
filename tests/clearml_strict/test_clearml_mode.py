"""modelbook's HTTP backend in ClearML mode, through the strict harness: every request it
makes is one a real ClearML server takes as meant (the gate fails the test otherwise), and
what it reads back is only what such a server would answer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import modelbook
from modelbook import Model, OutputModel, Task, config
from modelbook.errors import InvalidArgumentError

from .conftest import StrictSite


@pytest.fixture
def clearml_mode(strict: StrictSite, tmp_path: Path) -> StrictSite:
    s = strict.server
    modelbook.configure(home=tmp_path / "home", api_host=strict.api_host,
                        files_host=s.files_host, access_key=s.access_key,
                        secret_key=s.secret_key)  # fmt: skip
    return strict


def test_a_model_registered_on_a_clearml_server_reads_back_whole(
    clearml_mode: StrictSite, weights
) -> None:
    task = Task.init(project_name="strict-mode", task_name="train")
    assert config.get_backend().dialect == "clearml"  # type: ignore[attr-defined]
    task.connect({"lr": 0.1, "layers": 2})
    task.connect({"batch": 32}, name="Data")  # merged, not replacing the first section
    model = OutputModel(task=task, name="net", framework="PyTorch")
    model.update_labels({"cat": 1, "dog": 2})
    saved = {}
    for step in (1, 2, 3):
        path = weights(content=bytes([step]) * 2000)
        saved[step] = hashlib.sha256(path.read_bytes()).hexdigest()
        model.update_weights(weights_filename=str(path), iteration=step,
                             metadata={"loss": 1 / step})  # fmt: skip
        assert OutputModel.wait_for_uploads(timeout=60) == []
    model.set_metadata("accuracy", 0.9, "float")
    task.close()

    stored = Model(model.id)
    assert [v.iteration for v in stored.versions] == [1, 2, 3]
    assert [v.sha256 for v in stored.versions] == [saved[1], saved[2], saved[3]]
    assert stored.versions[1].metadata["loss"]["value"] == "0.5"
    assert stored.iteration == 3 and stored.labels == {"cat": 1, "dog": 2}
    assert sorted(stored.get_all_metadata()) == ["accuracy", "loss"]  # no modelbook: keys
    local = Path(stored.get_local_copy(raise_on_error=True))  # verified against the hash
    assert hashlib.sha256(local.read_bytes()).hexdigest() == saved[3]
    assert not stored.published
    first_uri = stored.versions[0].uri
    report = stored.prune_versions(keep_last=1)
    assert (report.pruned, report.doomed) == ([1, 2], [])  # marked; nothing deleted there
    assert [v.pruned for v in Model(model.id).versions] == [True, True, False]
    assert config.get_backend().driver_for(first_uri).exists(first_uri)
    params = Task.get_task(task_id=task.id).get_parameters()
    assert params["General/lr"] == "0.1" and params["Data/batch"] == "32"
    assert [m.id for m in Model.query_models(project_name="strict-mode")] == [model.id]
    stored.publish()
    assert Model(model.id).published and "models.set_ready" in clearml_mode.gate.calls
    stored.archive()
    assert Model.query_models(project_name="strict-mode") == []
    assert [m.id for m in Model.query_models(project_name="strict-mode",
                                             include_archived=True)] == [model.id]  # fmt: skip


def test_names_a_clearml_server_refuses_are_refused_here_first(clearml_mode: StrictSite) -> None:
    with pytest.raises(InvalidArgumentError, match="at least 3 characters"):
        Task.init(project_name="ab", task_name="train")


def test_the_files_host_is_derived_as_the_clearml_sdk_does() -> None:
    from modelbook.backends.http import HttpBackend

    backend = HttpBackend(api_host="https://api.example.com", access_key="k", secret_key="s")
    assert backend.files_host == "https://api.example.com/files"  # a modelbook server's
    backend._dialect = "clearml"  # as server.info would tell
    assert backend.files_host == "https://files.example.com"
    given = HttpBackend(api_host="http://h:8008", files_host="http://f:9000", access_key="k",
                        secret_key="s")  # fmt: skip
    given._dialect = "clearml"
    assert given.files_host == "http://f:9000"
