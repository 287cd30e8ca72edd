"""Shared fixtures: the data root (``$ADAPTIVE_DATA`` or ``../shared/data``) and a private cache.

Tests that need the shared data skip when it is absent on a developer's machine, but fail under
CI (``CI=true``), where it must be present.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path | None:
    env = os.environ.get("ADAPTIVE_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (candidate / "MNIST" / "raw").is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _shared_data()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs the shared data: set ADAPTIVE_DATA or put shared/ beside "
                        "the repository")
        pytest.skip("shared data not found (set ADAPTIVE_DATA)")
    return root


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep every test's cache writes (decoded CIFAR-10, downloads) out of the user's home."""
    old = os.environ.get("ADAPTIVE_CACHE")
    os.environ["ADAPTIVE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("ADAPTIVE_CACHE", None)
    else:
        os.environ["ADAPTIVE_CACHE"] = old


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray instance with 2 CPUs for every Ray test. Its workers inherit two variables
    set here: where a test may ask a worker to kill itself (``tests/plugin_crash.py``) and the
    pid of this process, which never does."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI installs Ray (.ci/run) so that the executor tests run")
        pytest.skip("ray not installed (pip install \".[ray]\")")
    os.environ["ADAPTIVE_TEST_KILL_DIR"] = str(tmp_path_factory.mktemp("kill"))
    os.environ["ADAPTIVE_TEST_DRIVER_PID"] = str(os.getpid())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield Path(os.environ["ADAPTIVE_TEST_KILL_DIR"])
    ray.shutdown()
