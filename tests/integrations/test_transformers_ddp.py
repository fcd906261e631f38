"""transformers, two processes: ``torch.distributed.run`` launches ``transformers_ddp_run.py``
(CPU, gloo) with a shared ``MODELBOOK_HOME``; only rank zero talks to the registry."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("needs torch.distributed with gloo", allow_module_level=True)

from transformers import BertForSequenceClassification  # noqa: E402

from modelbook import Model, Task, config  # noqa: E402

SCRIPT = Path(__file__).with_name("transformers_ddp_run.py")
RANK0 = [3.0, 2.0, 2.5, 1.0]  # the scores each rank reports (as in the script)
RANK1 = [1.0, 5.0, 0.5, 9.0]  # on its own, rank 1 would register 1.0 and 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def meta(version) -> dict[str, str]:
    return {k: v["value"] for k, v in version.metadata.items()}


@pytest.mark.slow
def test_torchrun_two_processes_register_once_per_improvement(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    # MODELBOOK_HOME (set by conftest) is inherited: both ranks see the same registry
    env = {
        **os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false",
    }  # fmt: skip
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(SCRIPT), str(root),
    ]  # fmt: skip
    # its own session, so a hang kills the workers too, not only the launcher
    run = subprocess.Popen(command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        _, stderr = run.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail("the two-process run did not finish in 150 s (ranks out of step?)")
    assert run.returncode == 0, stderr[-4000:]

    ranks = [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["scores"] for r in ranks] == [RANK0, RANK1]  # the ranks disagree
    # rank zero's three improvements, one model
    models = Model.query_models()
    assert len(models) == 1
    model = models[0]
    assert [float(meta(v)["monitor_value"]) for v in model.versions] == [3.0, 2.0, 1.0]
    steps_per_epoch = 2  # 32 samples, 2 ranks, batches of 8
    assert [v.iteration for v in model.versions] == [steps_per_epoch * e for e in (1, 2, 4)]
    assert {meta(v)["monitor"] for v in model.versions} == {"eval_score"}

    # both ranks followed rank zero's decisions; only rank zero created anything
    assert ranks[0]["monitor"] == ranks[1]["monitor"]
    assert ranks[0]["monitor"]["best"] == 1.0 and ranks[0]["monitor"]["best_step"] == 8
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 4 * steps_per_epoch
    assert ranks[0]["registrar"] == {"task_id": ranks[0]["task"], "model_id": model.id}
    assert ranks[1]["registrar"] == {"task_id": None, "model_id": None}
    assert ranks[1]["task"] is None
    backend = config.get_backend()
    assert [p.name for p in backend.list_projects()] == ["hf-ddp"]
    project = backend.find_project("hf-ddp")
    assert [t.id for t in backend.find_tasks(project=project.id, name="torchrun")] == [
        ranks[0]["task"]
    ]
    task = Task.get_task(task_id=ranks[0]["task"])
    assert len(task.models["output"]) == 1
    assert float(task.get_parameters()["TrainingArguments/learning_rate"]) == 0.01

    # the registered weights load, and are rank zero's model at the last improvement
    fresh = BertForSequenceClassification.from_pretrained(Model(model.id).get_local_copy())
    with torch.no_grad():
        logits = fresh(input_ids=torch.arange(24).reshape(3, 8) % 32).logits
    assert torch.equal(logits, torch.tensor(ranks[0]["logits"][3]))
