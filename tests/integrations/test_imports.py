"""Importing the integrations: no framework until an adapter is asked for, then a clear error."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

ADAPTERS = {
    "lightning": ["lightning", "pytorch_lightning"],
    "keras": ["keras"],
    "transformers": ["transformers"],
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_missing_framework_names_the_install_line(name, monkeypatch):
    for framework in ADAPTERS[name]:
        monkeypatch.setitem(sys.modules, framework, None)  # "not installed"
    monkeypatch.delitem(sys.modules, f"modelbook.integrations.{name}", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module(f"modelbook.integrations.{name}")
    assert f"pip install 'modelbook[{name}]'" in str(info.value)


def test_the_package_imports_no_adapter_and_no_framework():
    code = (
        "import sys, modelbook.integrations, modelbook.integrations.monitor\n"
        "loaded = [m for m in ('torch', 'keras', 'lightning', 'transformers',\n"
        "          'modelbook.integrations.lightning', 'modelbook.integrations.keras',\n"
        "          'modelbook.integrations.transformers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert modelbook.integrations.__all__ == ['RegistryArgs']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_adapter_exposes_modelbook_callback_with_the_same_parameters():
    import inspect

    signatures = {}
    for name in ADAPTERS:
        module = pytest.importorskip(f"modelbook.integrations.{name}")
        assert module.__all__ == ["ModelbookCallback"]
        signatures[name] = list(inspect.signature(module.ModelbookCallback).parameters)
    assert len({tuple(s) for s in signatures.values()}) == 1, signatures
    assert signatures["keras"] == ["monitor", "mode", "min_delta", "save_weights_only", "registry"]
    from modelbook.integrations import RegistryArgs

    assert list(RegistryArgs.__annotations__) == [
        "task", "project_name", "task_name", "model_name", "tags", "labels", "upload_uri",
        "keep_last", "publish_on_end", "snapshot_memory",
    ]  # fmt: skip


def test_an_unknown_registry_argument_is_a_clear_error():
    from modelbook.errors import InvalidArgumentError

    keras = pytest.importorskip("modelbook.integrations.keras")
    with pytest.raises(InvalidArgumentError, match=r"unknown argument\(s\) \['projet_name'\]"):
        keras.ModelbookCallback(projet_name="typo")  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["monitor", *sorted(ADAPTERS)])
def test_docstring_examples_run(name):
    import doctest

    if name != "monitor":
        pytest.importorskip(name)
    module = importlib.import_module(f"modelbook.integrations.{name}")
    result = doctest.testmod(module)
    assert result.attempted >= 1 and result.failed == 0
