"""Training-loop integrations: register the best model while a framework trains.

One module per framework, each exposing ``ModelbookCallback``; importing a module needs its
framework (``pip install 'modelbook[lightning]'``, ``[keras]``, ``[transformers]``)::

    from modelbook.integrations.lightning import ModelbookCallback
    from modelbook.integrations.keras import ModelbookCallback
    from modelbook.integrations.transformers import ModelbookCallback

Hand-written loops (plain PyTorch, Lightning Fabric, Accelerate) use
``modelbook.integrations.pytorch.BestModel`` over the same rule and registry logic.

The framework-free improvement rule they share is :mod:`modelbook.integrations.monitor`;
the registry arguments they share are declared once in :class:`RegistryArgs`. This package
imports no adapter, so ``import modelbook.integrations`` loads no framework.
"""

from modelbook.integrations._callback import RegistryArgs

__all__ = ["RegistryArgs"]
