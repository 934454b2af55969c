"""What a model is trained to do: the loss, the validation metrics, and which
metric a search maximises.

A task is a small object with five members (subclass :class:`Task`):

- ``name``: ``"classification"``, ``"regression"``, ...
- ``metric_name``: the key of the search metric in the validation dict, e.g.
  ``"val_accuracy"`` or ``"val_ic"`` (always the ``val_`` prefix plus a key of
  ``metrics``).
- ``maximize``: whether a larger ``metric_name`` is better.
- ``loss(outputs, targets, label_smoothing=0.0)``: the training loss, a scalar
  tensor. Tasks without a notion of smoothing ignore ``label_smoothing``.
- ``metrics(outputs, targets)``: a dict of plain floats computed over the
  *whole* evaluation set at once (so set-level metrics such as a rank
  correlation are exact), with unprefixed keys (``{"accuracy": .., "loss": ..}``).

``hybridnas.training.evaluate`` prefixes the keys (``val_``/``test_``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Task", "ClassificationTask"]


class Task:
    """Base class of training tasks; see the module docstring for the protocol."""

    name: str = "task"
    metric_name: str = "val_loss"
    maximize: bool = False

    def loss(self, outputs: Any, targets: Any, label_smoothing: float = 0.0) -> Any:
        raise NotImplementedError

    def metrics(self, outputs: Any, targets: Any) -> dict[str, float]:
        raise NotImplementedError

    @property
    def metric_key(self) -> str:
        """``metric_name`` without its ``val_`` prefix (the key in ``metrics``)."""
        return self.metric_name.split("_", 1)[1] if "_" in self.metric_name else self.metric_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(metric_name={self.metric_name!r}, maximize={self.maximize})"


class ClassificationTask(Task):
    """Single-label classification: cross-entropy (with optional label smoothing
    during training); metrics ``accuracy`` and ``loss`` (plain cross-entropy)."""

    name = "classification"
    metric_name = "val_accuracy"
    maximize = True

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def loss(self, outputs, targets, label_smoothing: float = 0.0):
        import torch.nn.functional as F

        return F.cross_entropy(outputs.float(), targets, label_smoothing=label_smoothing)

    def metrics(self, outputs, targets) -> dict[str, float]:
        import torch.nn.functional as F

        outputs = outputs.float()
        if len(targets) == 0:
            return {"accuracy": float("nan"), "loss": float("nan")}
        correct = (outputs.argmax(dim=1) == targets).float().mean()
        loss = F.cross_entropy(outputs, targets)
        return {"accuracy": float(correct), "loss": float(loss)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassificationTask) and other.num_classes == self.num_classes

    def __hash__(self) -> int:
        return hash(("classification", self.num_classes))
