"""Tests for holocat._device: device resolution and the ASTRA CUDA probe."""

from __future__ import annotations

import logging
import sys

import pytest

torch = pytest.importorskip("torch")

from holocat._device import astra_cuda_available, resolve_device  # noqa: E402


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "FakeGPU")


def test_cpu_requests():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_without_cuda_picks_cpu_and_logs(no_cuda, caplog):
    with caplog.at_level(logging.INFO, logger="holocat._device"):
        dev = resolve_device("auto")
    assert dev == torch.device("cpu")
    assert "no CUDA" in caplog.text


def test_auto_with_cuda_picks_gpu_0_and_logs(two_gpus, caplog):
    with caplog.at_level(logging.INFO, logger="holocat._device"):
        dev = resolve_device("auto")
    assert dev == torch.device("cuda", 0)
    assert "FakeGPU" in caplog.text


def test_explicit_cuda_with_gpus(two_gpus):
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)


def test_explicit_cuda_without_gpu_raises(no_cuda):
    for request in ("cuda", "cuda:0", torch.device("cuda", 0)):
        with pytest.raises(RuntimeError, match="device: .*no CUDA"):
            resolve_device(request)


def test_missing_gpu_index_raises(two_gpus):
    with pytest.raises(RuntimeError, match="only 2 CUDA"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "", "cuda:-1", "mps"])
def test_unknown_device_string_raises_value_error(bad):
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu', 'cuda'"):
        resolve_device(bad)


def test_wrong_device_type_raises():
    with pytest.raises(TypeError, match="device"):
        resolve_device(0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device: expected a cpu or cuda"):
        resolve_device(torch.device("meta"))


def test_astra_cuda_available_matches_astra():
    astra = pytest.importorskip("astra")
    assert astra_cuda_available() is bool(astra.use_cuda())


def test_astra_cuda_available_without_astra(monkeypatch):
    monkeypatch.setitem(sys.modules, "astra", None)  # makes `import astra` raise ImportError
    assert astra_cuda_available() is False
