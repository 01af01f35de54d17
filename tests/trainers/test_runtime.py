"""trainers.runtime: the device a cell trains on, refused in one line where it is missing."""

from __future__ import annotations

import pytest
import torch

from trainers import runtime
from trainers.errors import GridError


def test_auto_is_cuda_where_there_is_one_else_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    assert runtime.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("count", "name", "message"),
    [
        (0, "cuda", "train.device cuda: this machine has no CUDA GPU that torch can use"),
        (1, "cuda:1", "train.device cuda:1: this machine has 1 CUDA GPU(s), cuda:0 to cuda:0"),
    ],
)
def test_a_cuda_device_this_machine_lacks_is_a_grid_error(monkeypatch, count, name, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(GridError) as raised:
        runtime.resolve_device(name)
    assert str(raised.value).startswith(message)


def test_a_cuda_device_this_machine_has_is_that_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.resolve_device("cuda:1", "--device") == torch.device("cuda", 1)
