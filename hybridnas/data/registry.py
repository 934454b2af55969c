"""The dataset registry and the one loading pipeline every dataset goes through.

    >>> from hybridnas.data import load_dataset
    >>> bundle = load_dataset("digits", resolution=16, subset=500, seed=0)
    >>> bundle.input_shape, bundle.num_outputs, bundle.task.metric_name
    ((1, 16, 16), 10, 'val_accuracy')

A dataset is a factory registered under a name::

    @register_dataset("my-images")
    def my_images(data_dir=None, **options) -> ImageArrays | DatasetBundle: ...

A factory that returns :class:`ImageArrays` (raw tensors, e.g. uint8 images)
gets the shared pipeline of :func:`load_dataset`: a seeded stratified
train/validation split of the training set, per-channel normalisation with
training statistics, one resize with ``F.interpolate`` at load time, and an
optional stratified ``subset`` of the training part for proxy training. A
factory that returns a :class:`DatasetBundle` (e.g. a chronological split of
a time series) is used as it is. The factory receives only the keyword
arguments it declares (``data_dir``, ``resolution``, ``subset``, ``seed``,
``val_fraction`` and any ``**options``), so a simple factory stays simple.

Loaded bundles are cached per process: a search worker that runs many trials
decodes and resizes a dataset once.
"""
from __future__ import annotations

import inspect
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UserError
from ..spec import check_input_size
from .tasks import ClassificationTask, Task

__all__ = [
    "ArrayDataset", "DatasetBundle", "ImageArrays", "register_dataset", "load_dataset",
    "list_datasets", "clear_cache", "DATASETS", "stratified_split", "stratified_subset",
]

DATASETS: dict[str, Callable[..., Any]] = {}
# per-process caches, least recently used first; a few entries are enough for
# a search (one dataset, maybe a few proxy settings) and bound the memory
_BUNDLES: OrderedDict[tuple, "DatasetBundle"] = OrderedDict()
_RAW: OrderedDict[tuple, "ImageArrays"] = OrderedDict()
_CACHE_SIZE = 4

# Above this many bytes of float32 images a split is kept as uint8 and
# normalised per batch instead (a 224px CIFAR-10 would need 30 GB as float).
_FLOAT_LIMIT_BYTES = 3 * 2**30


class ArrayDataset:
    """A map-style dataset over in-memory tensors ``x`` (N, ...) and ``y`` (N, ...).

    If ``mean``/``std`` are given, ``x`` holds raw uint8 values and items are
    normalised when fetched (``(x / 255 - mean) / std``); otherwise ``x`` is
    already float and normalised. ``batch(idx)`` fetches many items with one
    indexing operation (what ``hybridnas.training`` uses instead of a
    per-item DataLoader).
    """

    def __init__(self, x, y, mean=None, std=None):
        if len(x) != len(y):
            raise ValueError(f"ArrayDataset: {len(x)} inputs but {len(y)} targets")
        self.x, self.y = x, y
        self.mean, self.std = mean, std
        self._on_device: dict[str, ArrayDataset] = {}

    def __len__(self) -> int:
        return len(self.x)

    def _norm(self, x):
        if self.mean is None:
            return x
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x.float() / 255.0 - self.mean.to(x.device).view(shape)) / self.std.to(x.device).view(shape)

    def __getitem__(self, i):
        if isinstance(i, int):
            return self._norm(self.x[i:i + 1])[0], self.y[i]
        return self._norm(self.x[i]), self.y[i]

    def batch(self, idx):
        """Inputs and targets for a 1-D index tensor (on this dataset's device)."""
        return self._norm(self.x[idx]), self.y[idx]

    @property
    def device(self):
        return self.x.device

    def to(self, device) -> "ArrayDataset":
        """This dataset on ``device`` (memoised, so a trial worker copies it once)."""
        import torch

        device = torch.device(device)
        if self.x.device == device:
            return self
        key = str(device)
        if key not in self._on_device:
            mean = None if self.mean is None else self.mean.to(device)
            std = None if self.std is None else self.std.to(device)
            self._on_device[key] = ArrayDataset(self.x.to(device), self.y.to(device), mean, std)
        return self._on_device[key]

    def __repr__(self) -> str:
        return f"ArrayDataset(n={len(self)}, x={tuple(self.x.shape)}, dtype={self.x.dtype})"


@dataclass
class ImageArrays:
    """Raw arrays a dataset factory returns; :func:`load_dataset` does the rest.

    ``x_train``/``x_test``: tensors (N, C, H, W), uint8 (0..255) or float in
    [0, 1] (all images the same size); ``y_*``: int64 class indices. ``x_val``
    is an optional validation set that the dataset ships (used instead of a
    split of the training set). ``x_test`` may be None when the dataset has no
    test split: then a fixed 20% of the training set (independent of ``seed``)
    becomes the test set.
    """

    x_train: Any
    y_train: Any
    x_test: Any = None
    y_test: Any = None
    x_val: Any = None
    y_val: Any = None
    class_names: tuple[str, ...] = ()
    description: str = ""
    source: str = ""


@dataclass
class DatasetBundle:
    """What :func:`load_dataset` returns.

    ``train``/``val``/``test``: torch map-style Datasets (usually
    :class:`ArrayDataset`). The test set is for final reports only; a search
    sees ``train`` and ``val``. ``input_shape`` is one sample's shape
    ((C, H, W) for images); ``num_outputs`` the model's output size;
    ``mean``/``std`` the per-channel normalisation applied (None if none).
    """

    name: str
    train: Any
    val: Any
    test: Any
    input_shape: tuple[int, ...]
    num_outputs: int
    task: Task
    class_names: tuple[str, ...] = ()
    description: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def in_chans(self) -> int:
        return int(self.input_shape[0])

    @property
    def resolution(self) -> int | None:
        """R for square (C, R, R) images, else None (non-square or not images)."""
        shape = self.input_shape
        if self.task.name == "classification" and len(shape) == 3 and shape[1] == shape[2]:
            return int(shape[2])
        return None

    def summary(self) -> str:
        return (f"{self.name}: train {len(self.train)}, val {len(self.val)}, "
                f"test {len(self.test) if self.test is not None else 0}, "
                f"input {'x'.join(map(str, self.input_shape))}, {self.num_outputs} outputs")


def register_dataset(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a dataset factory under ``name`` (see module doc)."""

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in DATASETS and DATASETS[name] is not factory:
            raise KeyError(f"dataset {name!r} registered twice")
        DATASETS[name] = factory
        return factory

    return deco


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    _load_builtin()
    return sorted(DATASETS)


def clear_cache() -> None:
    """Forget every loaded dataset of this process."""
    _BUNDLES.clear()
    _RAW.clear()


def _load_builtin() -> None:
    from ..plugins import load_plugins

    load_plugins()  # plug-ins (hybridnas.temporal) register their datasets


def load_dataset(name: str, data_dir: str | None = None, resolution: int | None = None,
                 subset: int | float | None = None, seed: int = 0, val_fraction: float = 0.1,
                 **options: Any) -> DatasetBundle:
    """Load a registered dataset as in-memory tensors.

    ``data_dir``: where to look first (default ``$HYBRIDNAS_DATA_DIR``);
    ``resolution``: resize images to R x R once at load time; ``subset``: keep
    a stratified subset of the training part (an int count or a fraction),
    the validation part is unaffected; ``seed``: seeds the train/validation
    split and the subset; ``val_fraction``: the share of the training set held
    out for validation. Extra ``options`` go to the dataset factory.
    Raises ``UserError`` for an unknown name, bad values or missing files.
    """
    _load_builtin()
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, DATASETS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown dataset {name!r}{hint} (known: {', '.join(sorted(DATASETS))})")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if resolution is not None and (int(resolution) != resolution or resolution < 1):
        raise UserError(f"resolution must be a positive integer, got {resolution!r}")
    if resolution is not None:
        check_input_size(int(resolution), error=UserError)  # before anything is resized or allocated
    if subset is not None and (subset <= 0 or (isinstance(subset, float) and subset > 1.0)):
        raise UserError(f"subset must be a count > 0 or a fraction in (0, 1], got {subset!r}")
    data_dir = data_dir or os.environ.get("HYBRIDNAS_DATA_DIR") or None
    data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else None
    key = (name, data_dir, resolution, subset, seed, val_fraction, tuple(sorted(options.items())))
    if key in _BUNDLES:
        _BUNDLES.move_to_end(key)
        return _BUNDLES[key]
    factory = DATASETS[name]
    given = dict(data_dir=data_dir, resolution=resolution, subset=subset, seed=seed,
                 val_fraction=val_fraction, **options)
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in options if k not in params]
        if unknown:
            raise UserError(f"dataset {name!r} has no option {unknown[0]!r} "
                            f"(it takes: {', '.join(k for k in params if k not in given or k in options)})")
        given = {k: v for k, v in given.items() if k in params}
    # the raw arrays depend only on what the factory reads (digits: nothing)
    raw_key = (name, tuple(sorted(given.items())))
    if raw_key in _RAW:
        _RAW.move_to_end(raw_key)
        raw = _RAW[raw_key]
    else:
        raw = factory(**given)
        if isinstance(raw, ImageArrays):
            _remember(_RAW, raw_key, raw)
    if isinstance(raw, DatasetBundle):
        bundle = raw
    elif isinstance(raw, ImageArrays):
        bundle = _bundle_from_arrays(name, raw, resolution, subset, seed, val_fraction)
    else:
        raise TypeError(f"dataset factory {name!r} returned {type(raw).__name__}, "
                        "expected ImageArrays or DatasetBundle")
    bundle.options = dict(options)
    _remember(_BUNDLES, key, bundle)
    return bundle


def _remember(cache: OrderedDict, key: tuple, value: Any) -> None:
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


# --- the shared pipeline -----------------------------------------------------------

def stratified_split(labels, fraction: float, seed: int):
    """Indices (keep, held_out) with ``fraction`` of every class held out,
    chosen by a seeded permutation; both sorted, disjoint, covering all."""
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_held = int(round(fraction * len(idx)))
        if len(idx) > 1:  # every class keeps at least one training example
            n_held = min(max(n_held, 1 if fraction > 0 else 0), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def stratified_subset(labels, size: int | float, seed: int):
    """Sorted indices of a class-balanced subset of ``size`` items (a count, or
    a fraction of ``len(labels)``), each class in proportion to its share."""
    import numpy as np

    labels = np.asarray(labels)
    n = len(labels)
    target = int(round(size * n)) if isinstance(size, float) else int(size)
    target = max(1, min(target, n))
    if target == n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * target / n
    take = np.floor(exact).astype(int)
    # largest remainders get the leftover places, so the total is exact
    for i in np.argsort(-(exact - take), kind="stable")[: target - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed + 7919)
    chosen = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        chosen.append(idx[rng.permutation(len(idx))[:k]])
    return np.sort(np.concatenate(chosen))


def _to_unit(x):
    """Float images in [0, 1] from uint8 (0..255) or float input."""
    import torch

    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _prepare(x, resolution: int | None, as_uint8: bool):
    """A new tensor of the images resized to ``resolution``: float in [0, 1],
    or uint8 0..255 when ``as_uint8`` (large sets). Works in chunks so that
    only the result is ever held in full; never a view of the cached raw
    arrays, so later steps may work in place."""
    import torch
    import torch.nn.functional as F

    size = tuple(x.shape[-2:]) if resolution is None else (resolution, resolution)
    out = torch.empty((x.shape[0], x.shape[1]) + size, dtype=torch.uint8 if as_uint8 else torch.float32)
    down = size[0] * size[1] < x.shape[-2] * x.shape[-1]
    step = max(1, 2**24 // max(1, x[0].numel() + out[0].numel()))
    for i in range(0, len(x), step):
        chunk = _to_unit(x[i:i + step])
        if size != tuple(x.shape[-2:]):
            chunk = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False,
                                  antialias=down).clamp_(0, 1)
        out[i:i + step] = chunk.mul_(255).round_() if as_uint8 else chunk
    return out


def _channel_stats(*parts):
    """Per-channel mean and std of the images in ``parts`` ((N, C, ...) tensors,
    uint8 or float), combined from chunk moments without concatenating."""
    import torch

    dims = (0,) + tuple(range(2, parts[0].ndim))
    counts, means, variances = [], [], []
    for x in parts:
        step = max(1, 2**24 // max(1, x[0].numel())) if len(x) else 1
        for i in range(0, len(x), step):
            var, mean = torch.var_mean(_to_unit(x[i:i + step]), dim=dims, correction=0)
            counts.append(x[i:i + step].numel() // x.shape[1])
            means.append(mean.double())
            variances.append(var.double())
    n = sum(counts)
    mean = sum(c * m for c, m in zip(counts, means)) / n
    var = sum(c * (v + (m - mean) ** 2) for c, v, m in zip(counts, variances, means)) / max(n - 1, 1)
    return mean.float(), var.sqrt().float().clamp_min(1e-6)


def _bundle_from_arrays(name: str, raw: ImageArrays, resolution: int | None,
                        subset: int | float | None, seed: int, val_fraction: float) -> DatasetBundle:
    import torch

    x_tr, y_tr = raw.x_train, torch.as_tensor(raw.y_train, dtype=torch.long)
    x_te, y_te = raw.x_test, raw.y_test
    if x_te is None:
        # a fixed test split, the same for every seed (never seen by a search)
        keep, held = stratified_split(y_tr.numpy(), 0.2, seed=12345)
        x_te, y_te = x_tr[held], y_tr[held]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    y_te = torch.as_tensor(y_te, dtype=torch.long)
    x_va, y_va = raw.x_val, raw.y_val
    shape = (x_tr.shape[1],) + ((resolution, resolution) if resolution else tuple(x_tr.shape[2:]))
    n_images = len(x_tr) + len(x_te) + (len(x_va) if x_va is not None else 0)
    # large sets (e.g. CIFAR-10 at 224 px) stay uint8 and are normalised per batch
    as_uint8 = n_images * 4 * int(torch.tensor(shape).prod()) > _FLOAT_LIMIT_BYTES
    x_tr, x_te = _prepare(x_tr, resolution, as_uint8), _prepare(x_te, resolution, as_uint8)
    # normalisation statistics of the whole training set (before the
    # validation split, never the test set): the same for every seed and subset
    mean, std = _channel_stats(x_tr)
    if x_va is not None:
        x_va, y_va = _prepare(x_va, resolution, as_uint8), torch.as_tensor(y_va, dtype=torch.long)
    else:
        keep, held = stratified_split(y_tr.numpy(), val_fraction, seed=seed)
        x_va, y_va = x_tr[held], y_tr[held]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if subset is not None:
        idx = stratified_subset(y_tr.numpy(), subset, seed=seed)
        x_tr, y_tr = x_tr[idx], y_tr[idx]

    def finish(x, y):
        if as_uint8:
            return ArrayDataset(x, y, mean, std)
        view = (1, -1) + (1,) * (x.ndim - 2)
        return ArrayDataset(x.sub_(mean.view(view)).div_(std.view(view)), y)

    num_classes = int(max(int(y_tr.max()), int(y_va.max()) if len(y_va) else 0,
                          int(y_te.max()) if len(y_te) else 0) + 1)
    class_names = tuple(raw.class_names) or tuple(str(i) for i in range(num_classes))
    num_classes = max(num_classes, len(class_names))
    return DatasetBundle(
        name=name, train=finish(x_tr, y_tr), val=finish(x_va, y_va), test=finish(x_te, y_te),
        input_shape=tuple(int(s) for s in x_tr.shape[1:]), num_outputs=num_classes,
        task=ClassificationTask(num_classes), class_names=class_names,
        description=raw.description, mean=tuple(mean.tolist()), std=tuple(std.tolist()),
        source=raw.source,
    )
