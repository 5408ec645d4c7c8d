"""ONNX export of the detection network (the packed tensor the tasks train): onnxruntime gives
the same maps (heatmaps, sizes, offsets; for instance runs also semantic logits and mask
features) as PyTorch."""

from __future__ import annotations

import pytest
import torch

from cnnlab.export import export_onnx, run_exported
from cnnlab.models import create
from cnnlab.tasks import get_task

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name", ["detect", "instance"])
def test_onnx_export_of_the_network_keeps_its_outputs(name, tmp_path):
    torch.manual_seed(0)
    task = get_task(name)
    net = task.build_model(create("unet", num_classes=3, widths=(8, 16, 32)), 3,
                           (1, 32, 32)).eval()
    inputs = [torch.rand(2, 1, 32, 32) for _ in range(2)]
    export_onnx(net, inputs[0], tmp_path / "net.onnx")
    outputs, runtime = run_exported(tmp_path / "net.onnx", "onnx", inputs)
    assert runtime == "onnxruntime"
    for x, got in zip(inputs, outputs, strict=True):
        with torch.no_grad():
            want = net(x)
        assert got.shape == tuple(want.shape)
        assert torch.allclose(torch.from_numpy(got), want, atol=1e-4)
