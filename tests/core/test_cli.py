"""The command line's model commands, run in-process (``main([...])``) on each backend, their
``--json`` output, their errors and exit codes; one real subprocess as a user runs it.

Uploads (``modelbook uploads``, ``retry``, ``discard``): tests/core/test_cli_uploads.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelbook import InputModel, Model, OutputModel, Task
from modelbook.cli import build_parser, main

CLEAN_ERROR = "modelbook: error: "


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``modelbook ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    got, out, err = run(capsys, *args, "--json")
    assert got == code, err
    return json.loads(out)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def three_versions(weights, name: str = "resnet") -> tuple[OutputModel, list[Path]]:
    task = Task.init(project_name="vision", task_name=f"train {name}")
    model = OutputModel(task=task, name=name, tags=["cnn"], label_enumeration={"cat": 1})
    files = []
    for step, loss in ((1, 0.9), (2, 0.5), (3, 0.7)):
        files.append(weights(f"{name}.pt"))
        model.update_weights(str(files[-1]), iteration=step, async_enable=False,
                             metadata={"monitor": "val_loss", "monitor_value": loss,
                                       "metrics/val_loss": loss, "epoch": step})  # fmt: skip
    return model, files


def test_model_commands_on_each_backend(registry, weights, tmp_path: Path, capsys) -> None:
    model, files = three_versions(weights)
    other = InputModel.import_model(weights_url="https://example.com/w.pt", name="other",
                                    tags=["tf"])  # fmt: skip

    listed = run_json(capsys, "models", "ls")
    assert [m["name"] for m in listed] == ["other", "resnet"]
    assert [m["name"] for m in run_json(capsys, "models", "ls", "--tag=-tf")] == ["resnet"]
    shown = run_json(capsys, "models", "show", model.id)
    assert [v["iteration"] for v in shown["versions"]] == [1, 2, 3]

    # get: the current weights, a version, into a folder and onto a file name
    got = run_json(capsys, "models", "get", model.id)
    assert got["sha256"] == sha(files[2]) and got["verified"] is True
    assert Path(got["path"]).read_bytes() == files[2].read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    got = run_json(capsys, "models", "get", model.id, "--version", "1", "-o", str(out_dir))
    assert got["path"] == str(out_dir / "resnet.pt") and got["iteration"] == 1
    assert sha(out_dir / "resnet.pt") == sha(files[0]) == got["sha256"]
    code, out, _ = run(capsys, "models", "get", model.id, "--version", "2", "-o",
                       str(out_dir / "v2.pt"))  # fmt: skip
    assert code == 0 and out.strip() == str(out_dir / "v2.pt")
    assert (out_dir / "v2.pt").read_bytes() == files[1].read_bytes()
    assert sorted(os.listdir(out_dir)) == ["resnet.pt", "v2.pt"]  # no partial file left

    # compare: two versions of one model, then two models; differences marked
    compared = run_json(capsys, "models", "compare", f"{model.id}@1", f"{model.id}@2")
    items = compared["items"]
    assert [i["metrics"]["val_loss"] for i in items] == [0.9, 0.5]
    assert [i["metadata"]["epoch"] for i in items] == ["1", "2"]
    different = set(compared["different"])
    assert {"iteration", "sha256", "metrics/val_loss", "metadata/epoch"} <= different
    assert "name" not in different and "labels" not in different
    code, out, _ = run(capsys, "models", "compare", model.id, other.id)
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in out.splitlines()[1:-1]}  # fmt: skip
    assert rows["name"].startswith("*") and "resnet" in rows["name"] and "other" in rows["name"]
    assert rows["iteration"].startswith("*") and code == 0

    # tags, archive, publish, rm
    tagged = run_json(capsys, "models", "tag", "add", model.id, "best", "cnn")
    assert tagged["tags"] == ["cnn", "best"]
    assert run_json(capsys, "models", "tag", "rm", model.id, "cnn")["tags"] == ["best"]
    assert run_json(capsys, "models", "archive", other.id)["archived"] is True
    assert [m["name"] for m in run_json(capsys, "models", "ls")] == ["resnet"]
    assert run_json(capsys, "models", "unarchive", other.id)["archived"] is False
    code, out, _ = run(capsys, "models", "publish", model.id)
    assert code == 0 and out.startswith(f"published {model.id} (resnet): published")
    assert Model(model.id).published
    code, out, err = run(capsys, "models", "rm", model.id)
    assert code == 4 and err.startswith(CLEAN_ERROR) and "--force removes it anyway" in err
    code, out, err = run(capsys, "models", "prune", model.id, "--keep-last", "0")
    assert code == 4 and "published" in err
    removed = run_json(capsys, "models", "rm", model.id, "--force")
    assert removed["id"] == model.id and removed["failed"] == {}
    error = run_json(capsys, "models", "show", model.id, code=3)["error"]
    assert error["code"] == 3 and error["type"] == "ModelNotFoundError"


@pytest.mark.embedded_only  # a stored file is corrupted by hand
def test_missing_things_are_clear_errors(weights, tmp_path: Path, capsys) -> None:
    model, _ = three_versions(weights)
    bad = {
        ("models", "show", "nope"): (3, "no model with id 'nope'"),
        ("models", "get", "nope"): (3, "no model with id 'nope'"),
        ("models", "publish", "nope"): (3, "no model with id 'nope'"),
        ("models", "tag", "add", "nope", "x"): (3, "no model with id 'nope'"),
        ("models", "rm", "nope"): (3, "no model with id 'nope'"),
        ("models", "get", model.id, "--version", "7"): (3, "no version 7; its versions: 1, 2, 3"),
        ("models", "compare", f"{model.id}@9", model.id): (3, "has no version 9"),
        ("models", "compare", model.id): (2, "compare takes 2 to 4 models or versions"),
        ("models", "compare", *[model.id] * 5): (2, "compare takes 2 to 4 models or versions"),
        ("models", "compare", f"{model.id}@x", model.id): (2, "is not ID or ID@VERSION"),
        ("models", "ls", "--project", "missing"): (3, "No projects found"),
        ("models", "get", model.id, "-o", str(tmp_path / "no" / "such" / "w.pt")): (
            2, "the folder"),
        ("models", "get", model.id, "-o", str(tmp_path / ("x" * 300))): (2, "cannot write"),
        ("models", "get", InputModel.import_model(weights_url=str(tmp_path / "gone.pt")).id): (
            5, "does not exist"),
    }  # fmt: skip
    for args, (code, message) in bad.items():
        got, out, err = run(capsys, *args)
        assert (got, out) == (code, ""), (args, err)
        assert err.startswith(CLEAN_ERROR) and message in err and err.count("\n") == 1, err
    Model(model.id).prune_versions(keep_last=1)
    got, _, err = run(capsys, "models", "get", model.id, "--version", "1")
    assert got == 3 and "was pruned" in err
    blob = Path(Model(model.id).url.removeprefix("file://"))  # type: ignore[union-attr]
    blob.write_bytes(bytes(blob.stat().st_size))  # the stored weights, corrupted
    got, _, err = run(capsys, "models", "get", model.id, "-o", str(tmp_path / "c.pt"))
    assert got == 5 and "is corrupted" in err and not (tmp_path / "c.pt").exists()


def test_help_is_plain_text_and_names_the_exit_codes(capsys) -> None:
    def helps(parser: argparse.ArgumentParser, path: list[str]) -> list[list[str]]:
        found = [path]
        for action in parser._actions:  # argparse has no public walk of sub-parsers
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += helps(sub, [*path, name])
        return found

    paths = helps(build_parser(), [])
    assert ["models", "tag", "add"] in paths and ["uploads", "discard"] in paths
    texts = {}
    for path in paths:
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        text = texts[" ".join(path)] = capsys.readouterr().out
        assert done.value.code == 0 and "usage: modelbook" in text, path
        assert "`" not in text and ":func:" not in text and ":mod:" not in text, path
    main_help = texts[""]
    for line in ("0  done", "1  partly failed", "2  usage or bad input", "3  not found",
                 "4  refused", "5  the registry or the storage failed"):  # fmt: skip
        assert line in main_help


def test_server_commands_without_the_extra_say_how_to_install_it(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "modelbook.server.cli", None)  # import fails
    for argv in (["server", "--port", "9"], ["ui"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "", err
        assert "needs the server extra" in err and "pip install 'modelbook[server]'" in err


def test_a_user_runs_it(weights, tmp_path: Path) -> None:
    """One real process, as from a shell: the entry module, the exit code, no traceback."""
    model, files = three_versions(weights)
    target = tmp_path / "w.pt"
    done = subprocess.run(
        [sys.executable, "-m", "modelbook.cli", "models", "get", model.id, "-o", str(target)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target) and target.read_bytes() == files[2].read_bytes()


# not on PostgreSQL again: the command line uses the public API; the store's SQL is tested
# elsewhere
pytestmark = pytest.mark.sql_agnostic
