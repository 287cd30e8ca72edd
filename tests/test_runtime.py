"""Device selection: CUDA runs in full fp32 (no TF32), so GPU results are the model's own."""

import pytest
import torch

from adaptive.core.errors import ToolkitError
from adaptive.core.runtime import environment_info, full_fp32_on_cuda, resolve_device


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_full_fp32_turns_tf32_off(tf32_flags):
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions
    torch.backends.cuda.matmul.allow_tf32 = True
    full_fp32_on_cuda()
    assert not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ToolkitError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_device_runs_full_fp32(tf32_flags):
    torch.backends.cudnn.allow_tf32 = True
    assert resolve_device("auto").type == "cuda"
    assert not torch.backends.cudnn.allow_tf32
    assert environment_info()["cudnn_tf32"] is False


@pytest.fixture
def threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def test_threads_from_flag_env_or_capped_default(threads, monkeypatch):
    from adaptive.core.runtime import THREADS_ENV, cpu_budget, set_threads

    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert cpu_budget() >= 1
    assert set_threads(None) == torch.get_num_threads() <= cpu_budget()
    assert set_threads(1) == torch.get_num_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "2")
    assert set_threads(None) == torch.get_num_threads() == 2
    assert set_threads(1) == 1  # the flag wins over the variable
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ToolkitError, match="ADAPTIVE_THREADS"):
        set_threads(None)


def test_cli_threads_flag(threads, capsys):
    from adaptive.cli.main import main

    assert main(["--threads", "1", "zoo", "list"]) == 0
    assert torch.get_num_threads() == 1
    assert main(["--threads", "0", "zoo", "list"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_attack_batch_size_and_model_device():
    from adaptive.core.runtime import ATTACK_BATCH, attack_batch_size, model_device

    assert attack_batch_size("cpu") == ATTACK_BATCH["cpu"]
    assert attack_batch_size(torch.device("cuda", 0)) == ATTACK_BATCH["cuda"]
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(lambda x: x) == torch.device("cpu")  # a plain function


def test_tune_cpu_allocator_keeps_a_users_own_setting(monkeypatch):
    import sys

    from adaptive.core.runtime import tune_cpu_allocator

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert tune_cpu_allocator() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    expected = sys.platform.startswith("linux")  # glibc here; elsewhere it does nothing
    assert tune_cpu_allocator() is expected
    assert tune_cpu_allocator() is expected  # and again: idempotent
