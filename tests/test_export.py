"""ONNX export: onnxruntime (CPU) against PyTorch at two sizes and batches, names, metadata, CLI errors.

Tolerance: every output of onnxruntime agrees with the PyTorch model (float32, CPU) to
``ONNX_RTOL * max(1, max |PyTorch output|)``, i.e. 1e-4 of the output's scale (measured: ~1e-8).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twohded.checkpoint import save_checkpoint
from twohded.cli import main
from twohded.errors import InputError
from twohded.export import ONNX_RTOL, ExportCheckError, export_onnx
from twohded.models import create_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _lively_2hded() -> torch.nn.Module:
    """A random 2HDED:NET whose outputs are O(1) (depth ~ metres, a real AiF residual), in eval mode."""
    torch.manual_seed(0)
    model = create_model("2hded", aif_zero_init=False)
    with torch.no_grad():
        model.depth_head.weight.mul_(300.0)
        model.aif_head.weight.mul_(20.0)
    return model.eval()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("twohded: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _lively_2hded()
    path = tmp_path_factory.mktemp("onnx") / "2hded.onnx"
    result = export_onnx(model, path, height=64, width=64)  # traced at 64x64, checked by export_onnx too
    return model, path, result


def test_onnxruntime_matches_pytorch_at_two_sizes(exported):
    model, path, result = exported
    assert result.outputs == ("depth", "aif") and result.check["ok"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["depth", "aif"]
    assert [i.name for i in session.get_inputs()] == ["image"]
    g = torch.Generator().manual_seed(7)
    for b, h, w in ((1, 64, 96), (2, 128, 64)):  # neither is the traced 1x64x64: the axes are dynamic
        x = torch.rand(b, 3, h, w, generator=g)
        with torch.inference_mode():
            ref = model(x)
        depth, aif = session.run(None, {"image": x.numpy()})
        assert depth.shape == (b, 1, h, w) and aif.shape == (b, 3, h, w)
        for name, got in (("depth", depth), ("aif", aif)):
            r = getattr(ref, name).numpy()
            scale = max(1.0, float(np.abs(r).max()))
            assert float(np.abs(got - r).max()) <= ONNX_RTOL * scale, (name, b, h, w)
        # the outputs are not trivial: metres of depth, an AiF that differs from the input
        assert float(ref.depth.abs().max()) > 0.05
        assert float((ref.aif - x).abs().max()) > 0.01


def test_graph_declares_dynamic_axes_and_metadata(exported):
    _, path, _ = exported
    proto = onnx.load(str(path), load_external_data=False)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3
    assert all(d.dim_param for d in (dims[0], dims[2], dims[3]))  # N, H, W symbolic
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["twohded.outputs"] == "depth,aif" and meta["twohded.multiple"] == "32"
    assert "metres" in meta["twohded.units"]


def test_cli_export_depth_only_variant(tmp_path, capsys):
    torch.manual_seed(1)
    ck = tmp_path / "depth.pt"
    save_checkpoint(ck, {"model_name": "2hded-depth", "model_options": {}, "model_state": create_model("2hded-depth").state_dict()})
    out = tmp_path / "out" / "depth.onnx"
    assert main(["export", "--checkpoint", str(ck), "--onnx", str(out), "--size", "64x32"]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "outputs depth" in text and "within tolerance" in text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["depth"]  # only the heads the variant has
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta["twohded.model"] == "2hded-depth"
    assert sorted(p.name for p in out.parent.iterdir()) == ["depth.onnx"]  # no temporary left


def test_cli_export_bad_inputs(tmp_path, ckpt, capsys):
    out = tmp_path / "m.onnx"
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pt"), "--onnx", str(out)], "does not exist"),
        (["--checkpoint", str(ckpt), "--onnx", str(out), "--size", "50"], "multiples of 32"),
        (["--checkpoint", str(ckpt), "--onnx", str(out), "--size", "big"], "expected N or WIDTHxHEIGHT"),
        (["--checkpoint", str(ckpt), "--onnx", str(tmp_path / "m.txt")], "must end in .onnx"),
        (["--checkpoint", str(ckpt), "--onnx", str(out), "--model", "2hded-aif"], "not '2hded-aif'"),
    ]
    for args, message in cases:
        assert main(["export", *args]) == 2, args
        assert message in _one_error_line(capsys)
        assert not out.exists()
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(folder)]) == 2
    assert "is a folder" in _one_error_line(capsys)
    out.write_bytes(b"keep")
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(out)]) == 2
    assert "already exists" in _one_error_line(capsys)
    assert out.read_bytes() == b"keep"


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    import twohded.export as export_module

    def bad_check(path, model, sizes, **kw):
        return {"sizes": sizes, "max_abs_diff": {"x": {"depth": 1.0}}, "tolerance": {"x": {"depth": 1e-4}}, "ok": False}

    monkeypatch.setattr(export_module, "check_onnx", bad_check)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportCheckError, match="nothing written"):
        export_onnx(create_model("2hded-depth").eval(), out, height=32, width=32)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="exporter"):
        export_onnx(create_model("2hded-depth").eval(), out, exporter="tflite")
