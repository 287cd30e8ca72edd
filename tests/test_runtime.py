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
