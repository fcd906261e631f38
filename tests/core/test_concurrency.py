"""Several processes share one embedded store and lose no update."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from modelbook import Model, OutputModel, Task
from modelbook.config import configure, get_backend

WORKERS, ROUNDS = 4, 25


def _worker(home: str, model_id: str, task_id: str, worker: int, weights_dir: str) -> None:
    configure(home=home)
    backend = get_backend()
    for i in range(ROUNDS):
        Model(model_id).set_metadata(f"w{worker}-{i}", i, "int")
        backend.update_task(task_id, hyperparams={f"worker{worker}": {f"p{i}": i}})
        backend.set_task_model(task_id, "input", f"w{worker}-{i}", model_id)
    task = Task.get_task(task_id=task_id)
    out = OutputModel(task=task, name=f"from-worker-{worker}")
    for i in range(5):
        path = Path(weights_dir) / f"w{worker}-{i}.pt"
        path.write_bytes(bytes([worker, i]) * 1000)
        out.update_weights(weights_filename=str(path), iteration=i, async_enable=False)


def test_processes_sharing_a_home_lose_nothing(tmp_path: Path) -> None:
    home = tmp_path / "shared-home"
    configure(home=home)
    task = Task.init(project_name="proj", task_name="shared")
    target = OutputModel(task=task, name="target")
    target.set_metadata("created", "yes")
    context = mp.get_context("spawn")
    procs = [
        context.Process(target=_worker, args=(str(home), target.id, task.id, w, str(tmp_path)))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    metadata = Model(target.id).get_all_metadata()
    assert len(metadata) == 1 + WORKERS * ROUNDS
    record = get_backend().get_task(task.id)
    assert sum(len(v) for v in record.hyperparams.values()) == WORKERS * ROUNDS
    assert len(record.input_models) == WORKERS * ROUNDS
    for w in range(WORKERS):
        (model,) = Model.query_models(project_name="proj", model_name=f"from-worker-{w}")
        assert [v.iteration for v in model.versions] == list(range(5))
        assert Path(model.get_local_copy()).read_bytes() == bytes([w, 4]) * 1000
