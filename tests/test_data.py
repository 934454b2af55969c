"""Dataset registry: every loader on files written at test time, splits,
subsets, normalisation, caching and the one-line missing-dataset errors."""
from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from hybridnas.data import (
    ArrayDataset, DatasetBundle, ImageArrays, ClassificationTask, clear_cache, list_datasets,
    load_dataset, register_dataset, stratified_split, stratified_subset,
)
from hybridnas.data import images as images_mod
from hybridnas.data.images import read_idx
from hybridnas.errors import UserError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors on a shared 2-core machine: a second thread only spins
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if gz else open)(str(path), "wb") as f:
        f.write(data)


def make_idx_dir(root, n_train=60, n_test=20, size=28, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    ext = ".gz" if gz else ""
    ytr = np.arange(n_train) % 10
    yte = np.arange(n_test) % 10
    write_idx(os.path.join(root, "train-images-idx3-ubyte" + ext), rng.integers(0, 256, (n_train, size, size)), gz)
    write_idx(os.path.join(root, "train-labels-idx1-ubyte" + ext), ytr, gz)
    write_idx(os.path.join(root, "t10k-images-idx3-ubyte" + ext), rng.integers(0, 256, (n_test, size, size)), gz)
    write_idx(os.path.join(root, "t10k-labels-idx1-ubyte" + ext), yte, gz)
    return ytr, yte


def test_registry_lists_builtin_datasets():
    assert {"fashion-mnist", "mnist", "cifar10", "imagefolder", "digits", "synthetic"} <= set(list_datasets())


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("a.idx" + (".gz" if gz else ""))
    write_idx(p, arr, gz)
    np.testing.assert_array_equal(read_idx(str(p)), arr)


def test_idx_bad_file_names_the_file(tmp_path):
    p = tmp_path / "bad-idx"
    p.write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(UserError, match="bad-idx.*not an IDX"):
        read_idx(str(p))
    write_idx(p, np.zeros((2, 3, 3)))
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(UserError, match="bytes of data"):
        read_idx(str(p))


@pytest.mark.parametrize("name,gz", [("mnist", False), ("fashion-mnist", True)])
def test_idx_datasets_load_from_data_dir(tmp_path, name, gz):
    make_idx_dir(tmp_path, gz=gz)
    b = load_dataset(name, data_dir=str(tmp_path), val_fraction=0.2)
    assert isinstance(b, DatasetBundle)
    assert b.input_shape == (1, 28, 28) and b.num_outputs == 10
    # stratified: round(0.2 * 6) = 1 image of each class held out
    assert (len(b.train), len(b.val), len(b.test)) == (50, 10, 20)
    assert b.task.metric_name == "val_accuracy" and b.task.maximize
    x = b.train.x
    assert x.dtype == torch.float32
    # normalised with the training set's statistics (train + validation parts)
    both = torch.cat([x, b.val.x])
    assert abs(float(both.mean())) < 1e-4 and abs(float(both.std()) - 1) < 1e-2
    assert torch.bincount(b.val.y, minlength=10).tolist() == [1] * 10


def test_idx_layout_of_torchvision_is_found(tmp_path):
    make_idx_dir(tmp_path / "FashionMNIST" / "raw", gz=True)
    b = load_dataset("fashion-mnist", data_dir=str(tmp_path), resolution=16)
    assert b.input_shape == (1, 16, 16)
    assert b.source.endswith(os.path.join("FashionMNIST", "raw"))


def test_missing_idx_dataset_is_one_line_naming_places_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "DEBIAN_DIR", str(tmp_path / "debian"))
    with pytest.raises(UserError) as e:
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path) in msg and os.path.join(str(tmp_path), "debian", "fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
    with pytest.raises(UserError, match="mnist not found.*--data-dir"):
        load_dataset("mnist", data_dir=str(tmp_path))


def _cifar_batch(path, n, seed, labels_key=b"labels"):
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     labels_key: [i % 10 for i in range(n)], b"batch_label": b"x"}, f)


def test_cifar10_from_python_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    _cifar_batch(d / "data_batch_1", 30, 0)
    _cifar_batch(d / "data_batch_2", 20, 1)
    _cifar_batch(d / "test_batch", 10, 2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    b = load_dataset("cifar10", data_dir=str(tmp_path), val_fraction=0.2)
    assert b.input_shape == (3, 32, 32)
    assert (len(b.train), len(b.val), len(b.test)) == (40, 10, 10)  # 5 a class, 1 held out
    assert b.class_names[3] == "c3"
    assert len(b.mean) == 3


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    _cifar_batch(tmp_path / "test_batch", 10, 0)
    with pytest.raises(UserError, match="data_batch_1.*not a CIFAR"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_cifar10_missing(tmp_path):
    with pytest.raises(UserError, match=r"cifar10 not found.*data_batch_.*--data-dir"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def _write_images(folder, classes, per_class, size=(12, 10), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        os.makedirs(folder / c, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / c / f"{i}.png")


def test_imagefolder_with_train_and_test(tmp_path):
    _write_images(tmp_path / "train", ["cat", "dog", "eel"], 10)
    _write_images(tmp_path / "test", ["cat", "dog", "eel"], 2)
    b = load_dataset("imagefolder", data_dir=str(tmp_path), resolution=8, val_fraction=0.2)
    assert b.class_names == ("cat", "dog", "eel")
    assert b.input_shape == (3, 8, 8)
    assert (len(b.train), len(b.val), len(b.test)) == (24, 6, 6)
    assert sorted(b.test.y.tolist()) == [0, 0, 1, 1, 2, 2]


def test_imagefolder_flat_grey_is_split_and_keeps_native_size(tmp_path):
    _write_images(tmp_path, ["a", "b"], 10, mode="L")
    b = load_dataset("imagefolder", data_dir=str(tmp_path), val_fraction=0.25)
    assert b.input_shape == (1, 10, 12)  # (C, H, W) of the first image
    assert len(b.train) + len(b.val) + len(b.test) == 20 and len(b.test) == 4


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UserError, match="needs --data-dir"):
        load_dataset("imagefolder")
    with pytest.raises(UserError, match="not a folder"):
        load_dataset("imagefolder", data_dir=str(tmp_path / "nope"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no images"):
        load_dataset("imagefolder", data_dir=str(tmp_path / "empty"))
    _write_images(tmp_path / "x" / "train", ["a"], 2)
    _write_images(tmp_path / "x" / "test", ["zebra"], 1)
    with pytest.raises(UserError, match="'zebra' does not exist"):
        load_dataset("imagefolder", data_dir=str(tmp_path / "x"))


def test_digits_resolution_and_fixed_test_set():
    b = load_dataset("digits", resolution=16)
    assert b.input_shape == (1, 16, 16) and b.num_outputs == 10
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    other = load_dataset("digits", resolution=16, seed=3)
    # the test set does not depend on the search seed, the validation split does
    assert torch.equal(b.test.y, other.test.y) and torch.equal(b.test.x, other.test.x)
    assert not torch.equal(b.val.y, other.val.y)


def test_split_is_deterministic_and_disjoint():
    a = load_dataset("synthetic", resolution=8, n_train=300, num_classes=5, seed=1)
    clear_cache()
    b = load_dataset("synthetic", resolution=8, n_train=300, num_classes=5, seed=1)
    assert a is not b
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.x, b.val.x)
    # no training image appears in validation (synthetic images are all distinct)
    rows_train = {tuple(r) for r in a.train.x.flatten(1).tolist()}
    assert not any(tuple(r) in rows_train for r in a.val.x.flatten(1).tolist())
    assert len(a.train) + len(a.val) == 300 and len(a.val) == 30

    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    keep, held = stratified_split(labels, 0.2, seed=7)
    assert not set(keep) & set(held) and len(keep) + len(held) == 100
    assert np.bincount(labels[held]).tolist() == [10, 6, 3, 1]
    k2, h2 = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(h2, held)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=8)[1], held)


def test_subset_is_stratified_and_leaves_validation_alone():
    labels = np.repeat(np.arange(3), [60, 30, 10])
    idx = stratified_subset(labels, 20, seed=0)
    assert len(idx) == 20 and np.bincount(labels[idx]).tolist() == [12, 6, 2]
    assert np.array_equal(idx, stratified_subset(labels, 20, seed=0))
    assert len(stratified_subset(labels, 0.5, seed=0)) == 50

    full = load_dataset("digits", resolution=8)
    small = load_dataset("digits", resolution=8, subset=200)
    assert len(small.train) == 200 and torch.equal(small.val.y, full.val.y)
    counts = torch.bincount(small.train.y, minlength=10)
    assert int(counts.min()) >= 18 and int(counts.max()) <= 22
    assert len(load_dataset("digits", subset=0.5).train) == round(0.5 * len(full.train))


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="unknown dataset 'fashion_mnist'.*fashion-mnist"):
        load_dataset("fashion_mnist")
    with pytest.raises(UserError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.5)
    with pytest.raises(UserError, match="subset"):
        load_dataset("digits", subset=-3)
    with pytest.raises(UserError, match="no option 'colour'"):
        load_dataset("digits", colour=True)


def test_loaded_bundles_are_cached_per_process():
    a = load_dataset("digits", resolution=12)
    assert load_dataset("digits", resolution=12) is a
    assert load_dataset("digits", resolution=12, seed=1) is not a


def test_synthetic_is_learnable_and_sized():
    b = load_dataset("synthetic", resolution=12, num_classes=3, channels=2, n_train=90, n_test=30)
    assert b.input_shape == (2, 12, 12) and b.num_outputs == 3 and len(b.test) == 30
    # nearest class mean on raw pixels is far above chance: the signal is there
    means = torch.stack([b.train.x[b.train.y == c].mean(0) for c in range(3)])
    pred = torch.cdist(b.test.x.flatten(1), means.flatten(1)).argmin(1)
    assert float((pred == b.test.y).float().mean()) > 0.6


def test_register_dataset_factories():
    @register_dataset("_test_arrays")
    def arrays(data_dir=None, **options):
        x = torch.rand(40, 1, 6, 6)
        return ImageArrays(x, torch.arange(40) % 2, x[:10], torch.arange(10) % 2)

    @register_dataset("_test_bundle")
    def bundle(seed=0):
        ds = ArrayDataset(torch.randn(8, 3), torch.randn(8))
        return DatasetBundle("_test_bundle", ds, ds, ds, (3,), 1, ClassificationTask(1))

    try:
        a = load_dataset("_test_arrays", resolution=3)
        assert a.input_shape == (1, 3, 3) and a.num_outputs == 2 and len(a.val) == 4
        b = load_dataset("_test_bundle")
        assert b.input_shape == (3,) and b.name == "_test_bundle"
        with pytest.raises(KeyError, match="registered twice"):
            register_dataset("_test_bundle")(lambda: None)
    finally:
        from hybridnas.data import DATASETS

        DATASETS.pop("_test_arrays", None)
        DATASETS.pop("_test_bundle", None)


def test_large_sets_stay_uint8_and_normalise_per_batch(monkeypatch):
    from hybridnas.data import registry

    monkeypatch.setattr(registry, "_FLOAT_LIMIT_BYTES", 1000)
    small = load_dataset("digits", resolution=8)
    assert small.train.x.dtype == torch.uint8
    x, _ = small.train.batch(torch.arange(len(small.train)))
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.02
    item, _ = small.train[0]
    assert torch.allclose(item, x[0])


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian_package():
    b = load_dataset("fashion-mnist", subset=1000)
    assert b.input_shape == (1, 28, 28) and len(b.test) == 10000 and len(b.val) == 6000
    assert b.class_names[0] == "T-shirt/top"
