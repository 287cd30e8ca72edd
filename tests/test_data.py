import gzip

import numpy as np
import pytest
import torch

from adaptive.core.data import BUNDLED_MNIST, ImageSet, dataset_family, load_dataset, load_npz
from adaptive.core.errors import ToolkitError


def test_mnist_from_shared_data(data_root):
    train = load_dataset("mnist", "train", data_root, download=False)
    test = load_dataset("mnist", "test", data_root, download=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.dtype == torch.uint8 and train.image_shape == (1, 28, 28)
    # Known class counts of the MNIST test set.
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958,
                                                    1028, 974, 1009]
    x = test.subset(slice(0, 5)).x()
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float(x.max()) == 1.0


def test_bundled_subset_is_the_first_test_images(data_root):
    bundled = load_dataset("mnist-bundled")
    test = load_dataset("mnist", "test", data_root, download=False)
    assert len(bundled) == 2000
    assert torch.equal(bundled.images, test.images[:2000])
    assert torch.equal(bundled.labels, test.labels[:2000])
    assert "t10k" in str(np.load(BUNDLED_MNIST)["source"])


def test_bundled_subset_has_no_training_split():
    with pytest.raises(ToolkitError, match="test images only"):
        load_dataset("mnist-bundled", "train")


def test_missing_mnist_names_the_expected_files(tmp_path):
    with pytest.raises(ToolkitError) as e:
        load_dataset("mnist", "test", tmp_path, download=False)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and str(tmp_path / "MNIST" / "raw") in msg


def test_truncated_mnist_file_is_reported(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = data_root / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (src / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data = gzip.decompress((src / "t10k-images-idx3-ubyte.gz").read_bytes())
    (raw / "t10k-images-idx3-ubyte").write_bytes(data[:5000])
    with pytest.raises(ToolkitError, match="truncated"):
        load_dataset("mnist", "test", tmp_path, download=False)


def test_cifar10_from_jpeg_copy_and_genuine_subset(data_root):
    if not (data_root / "cifar10" / "jpeg.npz").is_file():
        pytest.skip("no CIFAR-10 copy in the data root")
    test = load_dataset("cifar10", "test", data_root, download=False)
    genuine = load_dataset("cifar10-genuine", "test", data_root)
    assert len(test) == 10000 and test.image_shape == (3, 32, 32)
    assert len(genuine) == 1017
    assert torch.equal(genuine.labels, test.labels[:1017])
    # The JPEG copy is lossy (docs/data-and-models.md: MAE 5.8 of 255) but the same pictures
    # in the same order.
    mae = (genuine.images.float() - test.images[:1017].float()).abs().mean()
    assert 3 < float(mae) < 9
    # Decoded once, then read from the cache.
    again = load_dataset("cifar10", "test", data_root, download=False)
    assert torch.equal(again.images, test.images)


def test_npz_reader_round_trip(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (7, 5, 6, 3), dtype=np.uint8)
    y = np.arange(7) % 4
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    d = load_dataset(f"npz:{tmp_path / 'mine.npz'}")
    assert d.image_shape == (3, 5, 6) and d.num_classes == 4
    assert torch.equal(d.images.permute(0, 2, 3, 1), torch.from_numpy(x))
    assert d.labels.tolist() == y.tolist()
    # Split-specific arrays win over x/y; plain paths ending in .npz work too.
    np.savez(tmp_path / "split.npz", x_train=x[:3], y_train=y[:3], x_test=x[3:], y_test=y[3:])
    assert len(load_dataset(str(tmp_path / "split.npz"), "train")) == 3
    assert len(load_dataset(str(tmp_path / "split.npz"), "test")) == 4


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((2, 4, 4, 1), np.float32), y=np.zeros(2, int)), "uint8"),
    (dict(x=np.zeros((2, 4, 4, 2), np.uint8), y=np.zeros(2, int)), "1 or 3 channels"),
    (dict(x=np.zeros((2, 4, 4, 1), np.uint8), y=np.zeros(3, int)), "2 images but 3 labels"),
    (dict(x=np.zeros((2, 4, 4, 1), np.uint8), y=np.zeros(2, np.float32)), "integer"),
    (dict(x=np.zeros((2, 4, 4, 1), np.uint8), y=np.array([0, -1])), ">= 0"),
    (dict(images=np.zeros((2, 4, 4, 1), np.uint8)), "expected arrays 'x' and 'y'"),
    (dict(x=np.zeros((0, 4, 4, 1), np.uint8), y=np.zeros(0, int)), "empty"),
])
def test_npz_reader_rejects_bad_files(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ToolkitError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_npz_reader_rejects_corrupt_and_missing_files(tmp_path):
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ToolkitError, match="cannot read"):
        load_npz(tmp_path / "corrupt.npz")
    with pytest.raises(ToolkitError, match="no such file"):
        load_npz(tmp_path / "absent.npz")


def test_unknown_dataset_and_split():
    with pytest.raises(ToolkitError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ToolkitError, match="unknown split"):
        load_dataset("mnist-bundled", "validation")


def test_imageset_validates_its_arrays():
    with pytest.raises(ToolkitError, match="uint8 NCHW"):
        ImageSet("t", "test", torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 2)
    with pytest.raises(ToolkitError, match="labels"):
        ImageSet("t", "test", torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
                 torch.zeros(3, dtype=torch.long), 2)


def test_dataset_family():
    assert dataset_family("mnist-bundled") == "mnist"
    assert dataset_family("cifar10-genuine") == "cifar10"
