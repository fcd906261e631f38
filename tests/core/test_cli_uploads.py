"""``modelbook uploads``, ``uploads retry`` and ``uploads discard`` on a real spool.

A job fails for good the way it does in the field: its destination cannot be written (a
file stands where the project's folder goes), so the upload worker gives up on it and keeps
it in ``spool/failed``. Removing the file and ``retry`` then stores it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbook import InputModel, Model, OutputModel, Task, config, uploads
from modelbook.cli import main
from modelbook.storage.spool import Job, Spool

VIEW_KEYS = {"id", "state", "registry", "kind", "what", "attempts", "last_error", "iteration",
             "size", "created"}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> dict:
    got, out, err = run(capsys, *args, "--json")
    assert got == code, err
    return json.loads(out)


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A destination whose project folder cannot be made: a file has its name."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "uploads").write_text("in the way")
    return dest


def failing_upload(weights, dest: Path, name: str) -> tuple[OutputModel, str]:
    """Weights the worker gives up on; returns the model and the failed job's id."""
    task = Task.current_task() or Task.init(project_name="uploads", task_name="run")
    model = OutputModel(task=task, name=name)
    model.update_weights(str(weights()), upload_uri=str(dest), iteration=1)
    queue = uploads.queue_for(config.get_backend(), config.home())
    assert queue.wait(timeout=30) == []
    failed = [j.id for j in queue.spool.failed() if j.model_id == model.id]
    assert len(failed) == 1
    return model, failed[0]


def waiting_elsewhere(weights) -> tuple[Spool, Job]:
    """A job for another registry: it waits, and this process's worker leaves it alone."""
    spool = Spool(config.home() / "spool")
    job = Job(id=Job.new_id(), model_key="elsewhere", registry="http:other", iteration=7)
    return spool, spool.add(job, weights(), move=False)


def test_uploads_lists_then_retry_sends_a_failed_job(blocked: Path, weights, capsys) -> None:
    model, failed_id = failing_upload(weights, blocked, "retry")
    spool, pending = waiting_elsewhere(weights)

    listed = run_json(capsys, "uploads")
    assert listed["spool"] == str(config.home() / "spool") and listed["offline"] is False
    assert [(v["id"], v["state"]) for v in listed["waiting"]] == [(pending.id, "pending")]
    (failed,) = listed["failed"]
    assert set(failed) == VIEW_KEYS == set(listed["waiting"][0])
    assert failed["state"] == "failed" and failed["id"] == failed_id and failed["attempts"] == 1
    assert "Not a directory" in failed["last_error"] and model.id in failed["what"]
    with spool.claim(pending) as mine:
        assert mine
        assert run_json(capsys, "uploads")["waiting"][0]["state"] == "in_progress"
    code, out, _ = run(capsys, "uploads")
    assert code == 0 and f"failed       {failed_id}" in out and "Not a directory" in out
    assert "1 job(s) waiting (0 in progress), 1 failed" in out and "uploads retry ID" in out

    for args, code, message in (
        (("zzz",), 3, "no upload job 'zzz'"), (("0",), 3, "names 2 upload jobs"),
        (("--all", failed_id), 2, "not both or neither"), ((), 2, "not both or neither"),
    ):  # fmt: skip
        got, out, err = run(capsys, "uploads", "retry", *args)
        assert got == code and message in err and err.startswith("modelbook: error: "), err
    assert run_json(capsys, "uploads", "retry", pending.id[-8:]) == {
        "retried": [], "skipped": {pending.id: "already waiting in the queue"}, "not_found": {},
    }  # fmt: skip

    (blocked / "uploads").unlink()  # the problem is fixed: the job can succeed now
    retried = run_json(capsys, "uploads", "retry", failed_id[-8:], "zzz", code=1)
    assert retried["retried"] == [failed_id] and list(retried["not_found"]) == ["zzz"]
    assert main(["sync"]) == 0
    assert [v.iteration for v in Model(model.id).versions] == [1]
    assert Model(model.id).url.startswith(f"file://{blocked}/uploads/")  # type: ignore[union-attr]
    listed = run_json(capsys, "uploads")
    assert listed["failed"] == [] and [v["id"] for v in listed["waiting"]] == [pending.id]


def test_discard_deletes_failed_jobs_but_no_referenced_bytes(
    blocked: Path, weights, capsys
) -> None:
    _, first = failing_upload(weights, blocked, "first")
    _, second = failing_upload(weights, blocked, "second")
    spool, pending = waiting_elsewhere(weights)
    payload = spool.failed_dir / second / "payload"
    used = InputModel.import_model(weights_url=str(payload), name="points-into-the-spool")

    refused = run_json(capsys, "uploads", "discard", pending.id, code=4)
    assert "it has not failed" in refused["skipped"][pending.id]
    assert (spool.jobs_dir / pending.id / "payload").is_file()
    code, _, _ = run(capsys, "uploads", "discard", second[-8:])
    assert code == 4 and payload.is_file()

    held = sum(p.stat().st_size for p in (spool.failed_dir / first).iterdir())
    assert held > 4096  # the weights, and the job's own record
    done = run_json(capsys, "uploads", "discard", "--all-failed", code=1)
    assert done["discarded"] == [first] and done["freed_bytes"] == held
    assert done["skipped"] == {second: f"a registered version references {payload}"}
    assert sorted(p.name for p in spool.failed_dir.iterdir()) == [second]
    assert Path(InputModel(used.id).url.removeprefix("file://")).is_file()  # type: ignore[union-attr]

    code, out, err = run(capsys, "uploads", "discard", first)
    assert code == 3 and "no upload job" in err
    code, out, _ = run(capsys, "uploads", "discard", "--all-failed")
    assert code == 4 and f"skipped  {second}" in out and "0 failed job(s) discarded" in out


pytestmark = pytest.mark.embedded_only  # the subject is this machine's spool
