"""Image data sets by name, offline first.

Names:

* ``mnist``: the original idx files in torchvision's layout, ``<root>/MNIST/raw/*-ubyte[.gz]``.
  They are read directly (nothing is unpacked next to them, so a read-only data folder works);
  when they are missing, torchvision downloads them into ``<root>`` if the network allows.
* ``mnist-bundled``: the first 2,000 MNIST test images, shipped inside the package
  (``core/assets``, made by ``scripts/make_bundled_mnist.py``), so the main job runs with no
  data folder at all. Test split only.
* ``cifar10``: torchvision's ``<root>/cifar-10-batches-py`` when present, otherwise the JPEG copy
  ``<root>/cifar10/jpeg.npz`` (lossy; decoded once and cached in the cache folder), otherwise a
  torchvision download when online.
* ``cifar10-genuine``: bit-exact CIFAR-10 pixels for exact-pixel evaluation: the 1,017 test
  (5,085 train) images of ``<root>/cifar10/genuine_subset.npz``, or the same indices from
  torchvision's files when those are present.
* ``npz:PATH`` or any path ending in ``.npz``: your own data, with ``x`` (uint8, NHWC or NHW)
  and ``y`` (integer labels); ``x_train``/``y_train`` and ``x_test``/``y_test`` are used for
  the matching split when present.

The data root comes from ``--data-root``, else ``$ADAPTIVE_DATA``, else ``~/.cache/adaptive/data``.
Images come back as uint8 NCHW tensors; ``ImageSet.x()`` gives float NCHW in [0, 1], the input
convention of every model in the toolkit.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adaptive.core.errors import ToolkitError

DATA_ENV = "ADAPTIVE_DATA"
CACHE_ENV = "ADAPTIVE_CACHE"
SPLITS = ("train", "test")
BUILTIN_DATASETS = ("mnist", "mnist-bundled", "cifar10", "cifar10-genuine")
BUNDLED_MNIST = Path(__file__).parent / "assets" / "mnist_test_2000.npz"

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# The genuine subset holds the first 1,017 images of each original CIFAR-10 batch file.
_GENUINE_PER_BATCH = 1017


def cache_dir() -> Path:
    """Where the toolkit may write derived files: ``$ADAPTIVE_CACHE`` or ``~/.cache/adaptive``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "adaptive"


def data_root(flag: str | os.PathLike | None = None) -> Path:
    """The data root: the ``--data-root`` flag, else ``$ADAPTIVE_DATA``, else the cache folder."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return cache_dir() / "data"


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, NCHW) with integer labels."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ToolkitError(f"{self.name}: images must be uint8 NCHW, got "
                               f"{self.images.dtype} with shape {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ToolkitError(f"{self.name}: {len(self.images)} images but labels of shape "
                               f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def sha256(self) -> str:
        """A hash of the images and labels themselves (not of the file they came from), so a
        resumed run can check that it runs on the same data."""
        h = hashlib.sha256()
        h.update(repr((tuple(self.images.shape), self.num_classes)).encode())
        h.update(self.images.contiguous().numpy().tobytes())
        h.update(self.labels.to(torch.int64).contiguous().numpy().tobytes())
        return h.hexdigest()

    def x(self) -> torch.Tensor:
        """All images as float32 NCHW in [0, 1]."""
        return self.images.float().div_(255)

    def subset(self, index) -> ImageSet:
        """The images at ``index`` (a slice, an index tensor or a list)."""
        if isinstance(index, slice):
            return ImageSet(self.name, self.split, self.images[index], self.labels[index],
                            self.num_classes)
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.name, self.split, self.images[index], self.labels[index],
                        self.num_classes)


def dataset_names() -> tuple[str, ...]:
    return BUILTIN_DATASETS


def is_npz_name(name: str) -> bool:
    return name.startswith("npz:") or name.endswith(".npz")


def check_dataset_name(name: str) -> str:
    """Raise the usual error for an unknown name, before any data is read."""
    if not (is_npz_name(name) or name in BUILTIN_DATASETS):
        raise ToolkitError(f"unknown dataset {name!r}; choose one of "
                           f"{', '.join(BUILTIN_DATASETS)}, or give a path to an .npz file "
                           "(npz:PATH)")
    return name


def load_dataset(name: str, split: str = "test", root: str | os.PathLike | None = None,
                 download: bool = True) -> ImageSet:
    """Load a data set by name (see the module docstring) as an :class:`ImageSet`."""
    check_dataset_name(name)
    if split not in SPLITS:
        raise ToolkitError(f"unknown split {split!r}; choose 'train' or 'test'")
    if is_npz_name(name):
        return load_npz(name[4:] if name.startswith("npz:") else name, split)
    if name == "mnist-bundled":
        if split != "test":
            raise ToolkitError("mnist-bundled holds test images only; use --dataset mnist "
                               "with a data root for the training split")
        return load_npz(BUNDLED_MNIST, "test", name="mnist-bundled")
    root = data_root(root)
    if name == "mnist":
        return _load_mnist(root, split, download)
    if name == "cifar10":
        return _load_cifar10(root, split, download)
    return _load_cifar10_genuine(root, split)


def dataset_family(name: str) -> str:
    """The data set a name draws from (``mnist-bundled`` -> ``mnist``), for matching models."""
    if name.startswith("mnist"):
        return "mnist"
    if name.startswith("cifar10"):
        return "cifar10"
    return name


def dataset_label(name: str) -> str:
    """A data set's family as a short, file-name-safe label for reports (``mnist``,
    ``cifar10``; a user's ``npz:PATH`` -> ``npz-STEM``)."""
    family = dataset_family(name)
    if family in ("mnist", "cifar10"):
        return family
    stem = Path(name[4:] if name.startswith("npz:") else name).stem
    return "npz-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)


# --- generic npz -------------------------------------------------------------------------------

def images_from_array(x: np.ndarray, y: np.ndarray, name: str, split: str,
                      num_classes: int | None = None) -> ImageSet:
    """Validate uint8 NHWC (or NHW) images and integer labels and wrap them as an ImageSet."""
    if x.dtype != np.uint8:
        raise ToolkitError(f"{name}: images must be uint8 in 0..255 (NHWC), got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ToolkitError(f"{name}: images must be NHWC with 1 or 3 channels, got shape "
                           f"{x.shape}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ToolkitError(f"{name}: labels must be a 1-D integer array, got dtype {y.dtype} "
                           f"and shape {y.shape}")
    if len(x) != len(y):
        raise ToolkitError(f"{name}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise ToolkitError(f"{name}: the data set is empty")
    if y.min() < 0:
        raise ToolkitError(f"{name}: labels must be >= 0, found {int(y.min())}")
    classes = int(num_classes) if num_classes is not None else int(y.max()) + 1
    if y.max() >= classes:
        raise ToolkitError(f"{name}: label {int(y.max())} >= num_classes {classes}")
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if not nchw.flags.writeable:  # np.frombuffer views are read-only; torch wants its own copy
        nchw = nchw.copy()
    images = torch.from_numpy(nchw)
    return ImageSet(name, split, images, torch.from_numpy(y.astype(np.int64)), classes)


def load_npz(path: str | os.PathLike, split: str = "test", name: str | None = None) -> ImageSet:
    """Read ``x`` (uint8 NHWC) and ``y`` from an .npz file; ``x_<split>`` wins when present."""
    path = Path(path).expanduser()
    name = name or f"npz:{path}"
    if not path.is_file():
        raise ToolkitError(f"{name}: no such file {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # every .npz is a zip archive
        raise ToolkitError(f"{name}: {path} is not an .npz archive (it does not start like a "
                           "zip file); write it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as d:
            keys = set(d.files)
            xk, yk = (f"x_{split}", f"y_{split}") if f"x_{split}" in keys else ("x", "y")
            if xk not in keys or yk not in keys:
                raise ToolkitError(f"{name}: expected arrays 'x' and 'y' (or 'x_{split}' and "
                                   f"'y_{split}'); the file has {sorted(keys)}")
            x, y = d[xk], d[yk]
            num_classes = int(d["num_classes"]) if "num_classes" in keys else None
    except ToolkitError:
        raise
    except Exception as e:  # zip errors, truncated files, pickled object arrays
        raise ToolkitError(f"{name}: cannot read {path} as .npz ({type(e).__name__}: {e})") from e
    return images_from_array(x, y, name, split, num_classes)


# --- MNIST -------------------------------------------------------------------------------------

def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ToolkitError(f"cannot read {path} ({e}); the file looks damaged: delete it and "
                           "fetch it again") from e
    header = 4 * (1 + ndim)
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise ToolkitError(f"{path} is not an MNIST idx file (bad magic number)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) - header != int(np.prod(dims)):
        raise ToolkitError(f"{path} is truncated: expected {int(np.prod(dims))} bytes of data, "
                           f"found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _load_mnist(root: Path, split: str, download: bool) -> ImageSet:
    raw = root / "MNIST" / "raw"
    stems = _MNIST_FILES[split]
    paths = [_find(raw, s) for s in stems]
    if None in paths and download:
        _torchvision_download("MNIST", root)
        paths = [_find(raw, s) for s in stems]
    if None in paths:
        missing = [f"{s}.gz" for s, p in zip(stems, paths) if p is None]
        raise ToolkitError(
            f"MNIST {split} files not found: expected {', '.join(missing)} in {raw} "
            f"(torchvision's layout). Point --data-root or ${DATA_ENV} at a folder holding "
            "MNIST/raw/, or run once with network access to download it")
    x = _read_idx(paths[0], 2051, 3)
    y = _read_idx(paths[1], 2049, 1)
    return images_from_array(x, y.astype(np.int64), "mnist", split, 10)


def _torchvision_download(which: str, root: Path) -> None:
    """Try torchvision's downloader; stay silent on failure (the caller explains what's missing)."""
    try:
        import torchvision.datasets as tvd

        root.mkdir(parents=True, exist_ok=True)
        cls = tvd.MNIST if which == "MNIST" else tvd.CIFAR10
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception:  # offline, read-only root, partial download...
        pass


# --- CIFAR-10 ----------------------------------------------------------------------------------

def _torchvision_cifar(root: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not (root / "cifar-10-batches-py").is_dir():
        return None
    import torchvision.datasets as tvd

    try:
        ds = tvd.CIFAR10(str(root), train=split == "train", download=False)
    except Exception as e:
        raise ToolkitError(f"{root / 'cifar-10-batches-py'} exists but torchvision cannot read "
                           f"it ({e}); delete the folder or fix its files") from e
    return np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64)


def _load_cifar10(root: Path, split: str, download: bool) -> ImageSet:
    arrays = _torchvision_cifar(root, split)
    jpeg = root / "cifar10" / "jpeg.npz"
    if arrays is None and jpeg.is_file():
        arrays = _decode_cifar_jpeg(jpeg, split)
    if arrays is None and download:
        _torchvision_download("CIFAR10", root)
        arrays = _torchvision_cifar(root, split)
    if arrays is None:
        raise ToolkitError(
            f"CIFAR-10 not found under {root}: expected torchvision's cifar-10-batches-py/ or "
            f"cifar10/jpeg.npz. Point --data-root or ${DATA_ENV} at a folder holding one of them")
    return images_from_array(*arrays, "cifar10", split, 10)


def _decode_cifar_jpeg(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode the JPEG copy once and keep the uint8 array in the cache folder."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    cached = cache_dir() / f"cifar10-jpeg-{split}-{key[:16]}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as d:
                return d["x"], d["y"]
        except Exception:
            pass  # a damaged cache is rebuilt below
    from PIL import Image

    try:
        with np.load(path, allow_pickle=False) as d:
            data, offsets, y = d[f"{split}_bytes"], d[f"{split}_offsets"], d[f"{split}_y"]
    except Exception as e:
        raise ToolkitError(f"cannot read {path} as the CIFAR-10 JPEG archive ({e})") from e
    if offsets.ndim != 1 or len(offsets) != len(y) + 1:
        raise ToolkitError(f"{path}: {split}_offsets does not fit {split}_y; the archive is "
                           "damaged")
    images = []
    for i in range(len(offsets) - 1):
        try:
            img = Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes()))
            images.append(np.asarray(img.convert("RGB")))
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for broken images
            raise ToolkitError(f"{path}: {split} image {i} is not a readable JPEG ({e}); the "
                               "archive is damaged") from e
        if images[-1].shape != (32, 32, 3):
            raise ToolkitError(f"{path}: {split} image {i} is {images[-1].shape[:2]} pixels, "
                               "not CIFAR-10's 32 x 32; the archive is damaged")
    x = np.stack(images)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only cache only costs decoding again next time
    return x, y.astype(np.int64)


def _load_cifar10_genuine(root: Path, split: str) -> ImageSet:
    path = root / "cifar10" / "genuine_subset.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as d:
                x, y = d[f"x_{split}"], d[f"y_{split}"]
        except Exception as e:
            raise ToolkitError(f"cannot read {path} as the genuine CIFAR-10 subset ({e})") from e
        return images_from_array(x, y.astype(np.int64), "cifar10-genuine", split, 10)
    arrays = _torchvision_cifar(root, split)
    if arrays is None:
        raise ToolkitError(
            f"genuine CIFAR-10 not found under {root}: expected cifar10/genuine_subset.npz or "
            "torchvision's cifar-10-batches-py/")
    x, y = arrays
    per_file = 10000
    index = np.concatenate([np.arange(b * per_file, b * per_file + _GENUINE_PER_BATCH)
                            for b in range(len(x) // per_file)])
    return images_from_array(x[index], y[index], "cifar10-genuine", split, 10)
