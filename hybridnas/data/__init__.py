"""Datasets for search and training: a registry of named datasets loaded as
in-memory tensors, and the Task (loss + metrics) each one is trained for.

    >>> from hybridnas.data import load_dataset, list_datasets
    >>> bundle = load_dataset("digits", resolution=16)
    >>> bundle.train, bundle.val, bundle.test      # the test set is never used by a search
    >>> bundle.task.metric_name
    'val_accuracy'

Other rooms add datasets with ``@register_dataset("name")``; see
:mod:`hybridnas.data.registry` for the factory protocol and
:mod:`hybridnas.data.tasks` for the Task protocol. Torch is imported only
when a dataset is loaded.
"""
from __future__ import annotations

from .registry import (
    DATASETS, ArrayDataset, DatasetBundle, ImageArrays, clear_cache, list_datasets, load_dataset,
    register_dataset, stratified_split, stratified_subset,
)
from .tasks import ClassificationTask, Task
from . import images  # noqa: F401  (registers the image datasets)

__all__ = [
    "load_dataset", "register_dataset", "list_datasets", "clear_cache", "DatasetBundle",
    "ImageArrays", "ArrayDataset", "Task", "ClassificationTask", "DATASETS",
    "stratified_split", "stratified_subset",
]
