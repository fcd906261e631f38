"""modelbook: register the best model of every training run, with ClearML's Model API.

Example:
    >>> import tempfile
    >>> import modelbook
    >>> from modelbook import Task, OutputModel
    >>> modelbook.configure(home=tempfile.mkdtemp())
    >>> task = Task.init(project_name="examples", task_name="quickstart")
    >>> OutputModel(task=task, framework="PyTorch").framework
    'PyTorch'
    >>> task.close()
"""

from __future__ import annotations

from modelbook.config import configure
from modelbook.errors import ModelbookError
from modelbook.frameworks import Framework
from modelbook.input_model import InputModel
from modelbook.model import Model
from modelbook.output_model import OutputModel
from modelbook.task import Task

__version__ = "0.1.0"

__all__ = [
    "Framework",
    "InputModel",
    "Model",
    "ModelbookError",
    "OutputModel",
    "Task",
    "__version__",
    "configure",
]
