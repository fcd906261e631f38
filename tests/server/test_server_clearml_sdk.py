"""The unmodified clearml 2.1.12 SDK against ``modelbook server``, and modelbook alongside it.

Every flow runs in a subprocess with a temporary HOME, an empty ``clearml.conf`` and the
server given by ``CLEARML_*`` environment variables only; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

pytest.importorskip("clearml", reason="the SDK tests need: pip install clearml==2.1.12")

from modelbook.errors import ModelNotFoundError
from modelbook.records import ModelQuery

FLOWS = Path(__file__).with_name("clearml_flows.py")
FLOW_TIMEOUT = 180

def run_flow(env: dict[str, str], cwd: Path, *args: str, flows: Path = FLOWS) -> dict:
    """Run one flow of ``flows``; return its FLOW_RESULT, failing with its output if it has
    none.

    The script is copied out of this repository first: the SDK analyses the git repository
    and the imports of the script's folder, which inside this checkout (with its .venv)
    takes minutes.
    """
    script = cwd / "flow_script.py"
    shutil.copyfile(flows, script)
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=FLOW_TIMEOUT,
    )
    output = proc.stdout + proc.stderr
    results = [line for line in proc.stdout.splitlines() if line.startswith("FLOW_RESULT ")]
    assert proc.returncode == 0 and results, f"flow {args} failed ({proc.returncode}):\n{output}"
    for bad in ("Action failed", "Failed parsing response", "Traceback"):
        assert bad not in output, f"flow {args} logged {bad!r}:\n{output}"
    return json.loads(results[-1][len("FLOW_RESULT ") :])


@pytest.fixture(scope="module")
def trained(sdk_env, backend, tmp_path_factory) -> dict:
    """Flow (b): an OutputModel with labels and uploaded weights, by the clearml SDK."""
    work = tmp_path_factory.mktemp("train")
    weights = work / "m.pth"
    weights.write_bytes(os.urandom(1500))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()  # the SDK deletes the file
    return {**run_flow(sdk_env, work, "output_model", str(weights)), "sha256": digest}


def test_task_init_and_close(sdk_env, backend, tmp_path) -> None:
    result = run_flow(sdk_env, tmp_path, "init_close")
    task = backend.get_task(result["task"])
    assert result["status_while_running"] == "in_progress"
    assert task.status == "completed"
    assert task.name == "t" and "development" in task.system_tags
    assert backend.get_project(task.project).name == "examples"


def test_output_model_uploads_to_the_files_server(trained, backend, server) -> None:
    task = backend.get_task(trained["task"])
    model = backend.get_model(trained["model"])
    path = f"examples/train.{task.id}/models/m.pth"
    assert model.uri == f"{server.files_host}/{quote(path)}"
    assert trained["returned"] == f"{server.files_host}/{path}"
    stored = server.files_root / path
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == trained["sha256"]
    assert model.labels == {"cat": 1, "dog": 2}
    assert model.framework == "PyTorch"
    assert model.task == task.id and model.project == task.project
    assert model.iteration == 3 and task.last_iteration >= 3
    assert [e.model for e in task.output_models] == [model.id]
    assert task.labels == {"cat": 1, "dog": 2}
    assert task.status == "completed"
    # the server knew the upload's sha256 and recorded the edit as a version
    assert model.sha256 == trained["sha256"] and model.size == 1500 and model.version == 1
    versions = backend.list_model_versions(model.id)
    assert [(v.version, v.uri, v.sha256, v.iteration) for v in versions] == [
        (1, model.uri, trained["sha256"], 3)
    ]


def test_sdk_models_are_visible_through_modelbook(trained, backend, tmp_path) -> None:
    model = backend.get_model(trained["model"])
    found = backend.query_models(ModelQuery(task=trained["task"]))
    assert [m.id for m in found] == [model.id]
    dest = tmp_path / "copy.pth"
    backend.driver_for(model.uri).get(model.uri, dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == trained["sha256"]


def test_input_model_connect_and_local_copy(trained, sdk_env, backend, tmp_path) -> None:
    result = run_flow(sdk_env, tmp_path, "input_model", trained["model"])
    assert result["sha256"] == trained["sha256"]
    assert result["labels"] == {"cat": 1, "dog": 2}
    task = backend.get_task(result["task"])
    assert [e.model for e in task.input_models] == [trained["model"]]


def test_modelbook_models_are_visible_through_the_sdk(sdk_env, backend, server, tmp_path) -> None:
    project = backend.get_or_create_project("examples")
    weights = tmp_path / "mb.pt"
    weights.write_bytes(os.urandom(4096))
    model = backend.create_model(name="from modelbook", project=project.id, labels={"x": 7})
    uri = f"{server.files_host}/examples/modelbook/mb.pt"
    stored = backend.driver_for(uri).put(weights, uri)
    backend.add_model_version(
        model.id, uri=stored.uri, sha256=stored.sha256, size=stored.size, iteration=1
    )
    result = run_flow(sdk_env, tmp_path, "input_model", model.id)
    assert result["sha256"] == stored.sha256
    assert result["name"] == "from modelbook" and result["labels"] == {"x": 7}


def test_import_model_reuses_the_url(sdk_env, backend, tmp_path) -> None:
    url = "https://127.0.0.1:39443/models/model.pth"  # never contacted by the SDK
    result = run_flow(sdk_env, tmp_path, "import_model", url)
    assert result["first"] == result["second"]
    model = backend.get_model(result["first"])
    assert model.uri == url and model.labels == {"a": 1} and model.framework == "PyTorch"
    assert len(backend.query_models(ModelQuery(uri=[url]))) == 1


def test_query_models_with_tag_filters(sdk_env, backend, tmp_path) -> None:
    project = backend.get_or_create_project("examples")
    created = {}
    for name, tags, system_tags in [
        ("q-demo", ["demo"], []),
        ("q-demo-tf", ["demo", "TF"], []),
        ("q-other", ["other"], []),
        ("q-demo-archived", ["demo"], ["archived"]),
    ]:
        created[name] = backend.create_model(
            name=name, project=project.id, tags=tags, system_tags=system_tags
        ).id
    result = run_flow(sdk_env, tmp_path, "query")
    assert result["names"][:2] == ["q-demo-archived", "q-demo"]
    assert "q-demo-tf" not in result["names"] and "q-other" not in result["names"]
    assert len(result["ids"]) <= 5


@pytest.fixture
def modelbook_on_server(server, tmp_path):
    """The public modelbook API configured for the live server (reset afterwards)."""
    import modelbook

    modelbook.configure(
        home=tmp_path / "home",
        api_host=server.api_host,
        files_host=server.files_host,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )
    yield modelbook
    modelbook.configure()


def test_sdk_model_through_the_modelbook_api(trained, modelbook_on_server) -> None:
    model = modelbook_on_server.Model(trained["model"])
    assert model.labels == {"cat": 1, "dog": 2} and model.framework == "PyTorch"
    local = model.get_local_copy()
    assert hashlib.sha256(Path(local).read_bytes()).hexdigest() == trained["sha256"]
    found = modelbook_on_server.Model.query_models(project_name="examples", model_name=model.name)
    assert trained["model"] in [m.id for m in found]


def test_modelbook_output_model_through_the_sdk(modelbook_on_server, sdk_env, tmp_path) -> None:
    mb = modelbook_on_server
    task = mb.Task.init(project_name="examples", task_name="mb-train")
    model = mb.OutputModel(task=task, framework="PyTorch", label_enumeration={"y": 3})
    weights = tmp_path / "best.pt"
    weights.write_bytes(os.urandom(2048))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    model.update_weights(str(weights), iteration=4)
    task.close()
    result = run_flow(sdk_env, tmp_path, "input_model", model.id)
    assert result["sha256"] == digest and result["labels"] == {"y": 3}


def test_get_tasks_by_project_name_pattern_and_tags(sdk_env, backend, tmp_path) -> None:
    project = backend.get_or_create_project("listing").id
    for name, tags in (("run-1", ["keep"]), ("run-10", ["keep", "drop"]), ("run-2", []),
                       ("other", ["keep"])):  # fmt: skip
        backend.create_task(name=name, project=project, tags=tags)
    found = run_flow(sdk_env, tmp_path, "get_tasks")
    assert found["project"] == ["other", "run-1", "run-10", "run-2"]
    assert found["pattern"] == ["run-1", "run-10"]
    assert found["tags"] == ["other", "run-1"]


def test_parameters_and_user_properties_set_read_and_deleted(sdk_env, backend, tmp_path) -> None:
    found = run_flow(sdk_env, tmp_path, "parameters")
    assert found["params"].get("Args/lr") == "0.1" and "Args/wd" not in found["params"]
    assert found["props"] == {"owner": "me"}
    stored = backend.get_task(found["task"]).hyperparams
    assert stored["Args"] == {"lr": "0.1"} and stored["properties"]["owner"] == "me"


@pytest.fixture(scope="module")
def records(sdk_env, tmp_path_factory) -> dict:
    """Flow ``records`` (a task writing configurations, typed parameters, artifacts, scalars
    and an output model), then flow ``read_back`` in a new process (it also clones)."""
    work = tmp_path_factory.mktemp("records")
    weights = work / "best.pt"
    weights.write_bytes(os.urandom(700))
    written = run_flow(sdk_env, work, "records", str(work), str(weights))
    return {**written, **run_flow(sdk_env, work, "read_back", written["task"])}


def test_configurations_parameters_and_script_read_back(records, backend) -> None:
    assert records["train"] == {"lr": 0.1, "layers": [64, 32]}
    assert records["data"] == {"path": "/data", "shuffle": True}
    assert records["notes"] == "free text\nline 2\n"
    assert records["design"] == "layers: 3"
    assert records["params"] == {"Args/lr": 0.25, "Args/epochs": 3, "Args/arch": "resnet"}
    assert records["entry_point"] == "flow_script.py" and records["requirements"]
    assert records["runtime"]["CLEARML VERSION"] == "clearml-2.1.12"
    assert records["status"] == "completed"
    task = backend.get_task(records["task"])  # modelbook's view of the same task
    assert task.model_config == "layers: 3" and task.status == "completed"
    assert task.hyperparams["Args"] == {"lr": "0.25", "epochs": "3", "arch": "resnet"}
    assert [e.model for e in task.output_models] == [records["model"]]


def test_artifacts_round_trip_through_the_files_server(records, server) -> None:
    assert records["stats"] == {"a": 1, "b": [2, 3]}
    assert records["blob"] == bytes(range(256)).hex()
    stored = list((server.files_root / "records").glob("write.*/artifacts/blob/blob.bin"))
    assert [p.read_bytes() for p in stored] == [bytes(range(256))]


def test_reported_scalars_and_last_metrics_read_back(records, api) -> None:
    train, val = [0.9, 0.4, 0.6, 0.2], [1.9, 1.4, 1.6, 1.2]
    assert records["scalars"] == {"loss": {
        "train": {"name": "train", "x": [0, 1, 2, 3], "y": train},
        "val": {"name": "val", "x": [0, 1, 2, 3], "y": val},
    }}  # fmt: skip
    assert records["last"] == {"loss": {"train": {"last": 0.2, "min": 0.2, "max": 0.9},
                                        "val": {"last": 1.2, "min": 1.2, "max": 1.9}}}
    body = {"id": [records["task"]], "only_fields": ["last_metrics", "last_iteration"]}
    (doc,) = api("tasks.get_all", body).json()["data"]["tasks"]
    assert doc["last_iteration"] == 3
    (series,) = [v for m in doc["last_metrics"].values() for v in m.values()
                 if v["variant"] == "train"]  # fmt: skip
    assert series["first_value"] == 0.9 and series["count"] == 4
    assert series["min_value_iteration"] == 3 and series["max_value_iteration"] == 0


def test_what_the_sdk_reported_reads_the_same_through_modelbook(
    records, modelbook_on_server
) -> None:
    task = modelbook_on_server.Task.get_task(task_id=records["task"])
    sdk_view = {m: {v: {"x": s["x"], "y": s["y"]} for v, s in series.items()}
                for m, series in records["scalars"].items()}  # fmt: skip
    assert task.get_reported_scalars() == sdk_view
    assert task.get_last_scalar_metrics() == records["last"]
    ours = [{k: p[k] for k in ("metric", "variant", "iter", "plot_str")}
            for p in task.get_reported_plots()]  # fmt: skip
    assert ours == records["plots"] and len(ours) == 1
    assert json.loads(ours[0]["plot_str"])["data"][0]["y"] == [3, 1, 2]
    assert "training done" in " ".join(records["console"])
    assert any("training done" in line for line in task.get_reported_console_output(50))


def test_clone_copies_the_task_but_not_its_outputs(records, backend) -> None:
    clone = records["clone"]
    assert clone["name"] == "cloned" and clone["status"] == "created"
    assert clone["project"] == records["project"] and clone["comment"] == records["comment"]
    assert clone["tags"] == ["keep"] and "development" not in clone["system_tags"]
    assert clone["parent"] == records["task"]
    assert clone["train"] == records["train"] and clone["design"] == "layers: 3"
    assert clone["params"] == records["params"]
    assert clone["entry_point"] == "flow_script.py"
    assert clone["artifacts"] == [] and clone["output_models"] == [] and clone["scalars"] == {}
    task = backend.get_task(clone["id"])
    assert task.last_iteration == 0 and task.output_models == []


def test_model_remove_with_and_without_force(sdk_env, backend, server, tmp_path) -> None:
    project = backend.get_or_create_project("remove")
    published_task = backend.create_task(name="published run", project=project.id)
    of_published_task = backend.create_model(name="of published", project=project.id,
                                             task=published_task.id)  # fmt: skip
    backend.update_task(published_task.id, status="published")
    weights = tmp_path / "draft.pt"
    weights.write_bytes(os.urandom(900))
    found = run_flow(sdk_env, tmp_path, "remove_models", str(weights), of_published_task.id)
    assert found["removed"] == {"draft": True, "used": False, "published": False,
                                "of_published_task": False}  # fmt: skip
    assert found["refused"] == ["of_published_task", "published", "used"]
    assert found["forced"] == dict.fromkeys(found["refused"], True)
    assert found["left"] == [] and found["inputs"] == []
    for model_id in found["ids"].values():
        with pytest.raises(ModelNotFoundError):
            backend.get_model(model_id)
    # the draft's weights were the registry's (uploaded to its files server): deleted with it
    assert found["url"].startswith(f"{server.files_host}/remove/models.")
    assert not (server.files_root / unquote(found["url"][len(server.files_host) + 1 :])).exists()
