"""The built-in image datasets. Nothing here downloads: each loader reads local
files (or library-bundled data) and says where it looked when they are missing.

| name | source |
|---|---|
| ``fashion-mnist`` | IDX files (optionally .gz): ``--data-dir``, then ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``) |
| ``mnist`` | IDX files: ``--data-dir``, then ``/usr/share/datasets/mnist`` |
| ``cifar10`` | the python pickle batches (``cifar-10-batches-py``) in ``--data-dir`` |
| ``imagefolder`` | ``--data-dir`` with class sub-folders (``train/`` and optional ``val/``/``test/``) |
| ``digits`` | scikit-learn's bundled 8x8 digits (for tests and smoke runs) |
| ``synthetic`` | random images with a class-dependent signal (any size and class count) |
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct

from ..errors import UserError
from .registry import ImageArrays, register_dataset

__all__ = ["read_idx", "DEBIAN_DIR"]

DEBIAN_DIR = "/usr/share/datasets"

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str):
    """An IDX file (plain or .gz) as a numpy array; UserError if it is not one."""
    import numpy as np

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(f"{path}: IDX shape {shape} needs {expected} bytes of data, "
                        f"found {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _candidates(data_dir: str | None, subdirs: tuple[str, ...], system: str | None) -> list[str]:
    dirs = []
    if data_dir:
        dirs.append(data_dir)
        dirs += [os.path.join(data_dir, s) for s in subdirs]
    if system:
        dirs.append(system)
    return dirs


def _find_idx(dirs: list[str], stem: str) -> str | None:
    for d in dirs:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx") , stem.replace("-idx", ".idx") + ".gz"):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                return p
    return None


def _load_idx_dataset(name: str, data_dir: str | None, subdirs: tuple[str, ...], system: str,
                      how: str, class_names: tuple[str, ...], description: str) -> ImageArrays:
    import torch

    dirs = _candidates(data_dir, subdirs, system)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find_idx(dirs, s) for s in stems]
    if not all(paths):
        missing = stems[[p is None for p in paths].index(True)]
        raise UserError(f"{name} not found: no {missing}[.gz] in {', '.join(dirs)}; {how}")
    xtr, ytr, xte, yte = (read_idx(p) for p in paths)
    for x, y, p in ((xtr, ytr, paths[0]), (xte, yte, paths[2])):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"{p}: expected N x H x W images matching {len(y)} labels, "
                            f"got shape {x.shape}")
    return ImageArrays(
        x_train=torch.from_numpy(xtr.copy()).unsqueeze(1), y_train=torch.from_numpy(ytr.astype("int64")),
        x_test=torch.from_numpy(xte.copy()).unsqueeze(1), y_test=torch.from_numpy(yte.astype("int64")),
        class_names=class_names, description=description, source=os.path.dirname(paths[0]),
    )


@register_dataset("fashion-mnist")
def fashion_mnist(data_dir: str | None = None) -> ImageArrays:
    """Zalando's Fashion-MNIST: 60k/10k 28x28 grey images of 10 clothing classes."""
    return _load_idx_dataset(
        "fashion-mnist", data_dir, ("fashion-mnist", "FashionMNIST/raw", "FashionMNIST"),
        os.path.join(DEBIAN_DIR, "fashion-mnist"),
        "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir DIR "
        "holding the four IDX files",
        FASHION_CLASSES, "Fashion-MNIST, 28x28 grey, 10 classes")


@register_dataset("mnist")
def mnist(data_dir: str | None = None) -> ImageArrays:
    """LeCun's MNIST handwritten digits: 60k/10k 28x28 grey images."""
    return _load_idx_dataset(
        "mnist", data_dir, ("mnist", "MNIST/raw", "MNIST"), os.path.join(DEBIAN_DIR, "mnist"),
        "pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte, ...)",
        tuple(str(i) for i in range(10)), "MNIST, 28x28 grey, 10 classes")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the plain containers and numpy arrays of the CIFAR batches and
    nothing else, so a crafted file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not a CIFAR python batch ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a CIFAR python batch (a {type(data).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_batch(path: str):
    import numpy as np

    d = _unpickle(path)
    if "data" not in d or "labels" not in d:
        raise UserError(f"{path}: CIFAR batch without 'data' and 'labels' (keys: {sorted(d)})")
    x = np.asarray(d["data"], dtype=np.uint8)
    y = np.asarray(d["labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise UserError(f"{path}: expected N x 3072 uint8 data with N labels, got {x.shape}")
    return x.reshape(-1, 3, 32, 32), y


@register_dataset("cifar10")
def cifar10(data_dir: str | None = None) -> ImageArrays:
    """CIFAR-10 from the python batches (data_batch_1..5, test_batch, batches.meta)."""
    import numpy as np
    import torch

    dirs = _candidates(data_dir, ("cifar-10-batches-py", "cifar10", "cifar-10"),
                       os.path.join(DEBIAN_DIR, "cifar10"))
    for d in dirs:
        train = sorted(f for f in (os.listdir(d) if os.path.isdir(d) else ())
                       if f.startswith("data_batch_"))
        if train and os.path.isfile(os.path.join(d, "test_batch")):
            break
    else:
        raise UserError(f"cifar10 not found: no data_batch_* and test_batch in {', '.join(dirs)}; "
                        "pass --data-dir DIR holding the extracted cifar-10-python batches")
    parts = [_cifar_batch(os.path.join(d, f)) for f in train]
    xte, yte = _cifar_batch(os.path.join(d, "test_batch"))
    names = CIFAR10_CLASSES
    meta = os.path.join(d, "batches.meta")
    if os.path.isfile(meta):
        m = _unpickle(meta)
        if "label_names" in m:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in m["label_names"])
    return ImageArrays(
        x_train=torch.from_numpy(np.concatenate([p[0] for p in parts])),
        y_train=torch.from_numpy(np.concatenate([p[1] for p in parts])),
        x_test=torch.from_numpy(xte), y_test=torch.from_numpy(yte),
        class_names=names, description="CIFAR-10, 32x32 colour, 10 classes", source=d,
    )


def _list_images(folder: str, classes: list[str] | None):
    """(paths, labels, classes) of ``folder/<class>/*.<image ext>``."""
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise UserError(f"{folder}: class folder {extra[0]!r} does not exist in the training set")
    paths, labels = [], []
    for label, c in enumerate(classes):
        d = os.path.join(folder, c)
        if not os.path.isdir(d):
            continue
        for root, _, files in sorted(os.walk(d)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(root, f))
                    labels.append(label)
    return paths, labels, classes


def _read_images(paths: list[str], size: tuple[int, int], mode: str):
    import numpy as np
    from PIL import Image

    out = np.empty((len(paths), size[1], size[0], 3 if mode == "RGB" else 1), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert(mode)
                if im.size != size:
                    im = im.resize(size, Image.BILINEAR)
                out[i] = np.asarray(im).reshape(out.shape[1:])
        except OSError as e:
            raise UserError(f"{p}: cannot read image ({e})") from None
    return out.transpose(0, 3, 1, 2)


@register_dataset("imagefolder")
def imagefolder(data_dir: str | None = None, resolution: int | None = None,
                channels: int | None = None) -> ImageArrays:
    """Any local folder of class sub-folders, read with Pillow.

    Layout: ``DIR/train/<class>/*.png`` with optional ``DIR/val/`` (validation
    set) and ``DIR/test/``; with only ``val/`` it serves as the test set (the
    ImageNet convention) and validation is split from ``train/``; without
    ``train/``, ``DIR/<class>/`` is split into train/val/test. Images are
    resized to ``resolution`` (default: the first image's size) and read as
    RGB, or grey when every image is grey (``channels`` forces 1 or 3).
    """
    import torch
    from PIL import Image

    if not data_dir:
        raise UserError("imagefolder needs --data-dir DIR (a folder of class sub-folders)")
    if not os.path.isdir(data_dir):
        raise UserError(f"imagefolder: {data_dir} is not a folder")
    has = {s: os.path.isdir(os.path.join(data_dir, s)) for s in ("train", "val", "test")}
    train_dir = os.path.join(data_dir, "train") if has["train"] else data_dir
    paths, labels, classes = _list_images(train_dir, None)
    if not paths:
        raise UserError(f"imagefolder: no images ({', '.join(IMAGE_EXTENSIONS)}) in class "
                        f"sub-folders of {train_dir}")
    splits = {"train": (paths, labels)}
    if has["train"]:
        if has["val"] and has["test"]:
            splits["val"] = _list_images(os.path.join(data_dir, "val"), classes)[:2]
            splits["test"] = _list_images(os.path.join(data_dir, "test"), classes)[:2]
        elif has["val"] or has["test"]:
            splits["test"] = _list_images(os.path.join(data_dir, "val" if has["val"] else "test"),
                                          classes)[:2]
    with Image.open(paths[0]) as first:
        size = (resolution, resolution) if resolution else first.size
    if channels is None:
        grey = True
        for p in paths[:64]:  # sample: colour datasets show it in the first images
            with Image.open(p) as im:
                grey = grey and im.mode in ("L", "1", "I;16", "I")
        channels = 1 if grey else 3
    if channels not in (1, 3):
        raise UserError(f"imagefolder: channels must be 1 or 3, got {channels!r}")
    mode = "L" if channels == 1 else "RGB"
    arrays = {k: (torch.from_numpy(_read_images(p, size, mode)), torch.tensor(lab, dtype=torch.long))
              for k, (p, lab) in splits.items()}
    val = arrays.get("val", (None, None))
    test = arrays.get("test", (None, None))
    return ImageArrays(arrays["train"][0], arrays["train"][1], test[0], test[1], val[0], val[1],
                       class_names=tuple(classes), source=data_dir,
                       description=f"image folder {data_dir}, {len(classes)} classes")


@register_dataset("digits")
def digits() -> ImageArrays:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes);
    a fixed 20% is the test set. Upsampled by ``resolution``."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype("float32") / 16.0).unsqueeze(1)
    return ImageArrays(x, torch.from_numpy(d.target.astype("int64")),
                       class_names=tuple(str(i) for i in range(10)),
                       description="scikit-learn digits, 8x8 grey, 10 classes", source="sklearn")


@register_dataset("synthetic")
def synthetic(resolution: int | None = None, num_classes: int = 10, size: int | None = None,
              channels: int = 3, n_train: int = 2000, n_test: int = 500, noise: float = 0.5,
              data_seed: int = 0) -> ImageArrays:
    """Random images with a learnable signal: each class has a smooth random
    template, each image is its class template plus Gaussian noise. The data
    depend only on ``data_seed`` (``seed`` still picks the validation split).
    ``size`` defaults to ``resolution`` (else 32)."""
    import torch
    import torch.nn.functional as F

    size = int(size or resolution or 32)
    if num_classes < 2 or size < 1 or channels < 1 or n_train < num_classes:
        raise UserError(f"synthetic: need num_classes >= 2, size >= 1, channels >= 1 and "
                        f"n_train >= num_classes (got {num_classes}, {size}, {channels}, {n_train})")
    g = torch.Generator().manual_seed(data_seed)
    coarse = torch.randn(num_classes, channels, 4, 4, generator=g)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def make(n):
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = templates[y] + noise * torch.randn(n, channels, size, size, generator=g)
        return (0.5 + 0.2 * x).clamp_(0, 1), y

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return ImageArrays(xtr, ytr, xte, yte, class_names=tuple(f"class_{i}" for i in range(num_classes)),
                       description=f"synthetic {channels}x{size}x{size}, {num_classes} classes",
                       source=f"synthetic(data_seed={data_seed})")
