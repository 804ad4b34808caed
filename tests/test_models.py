"""Model tests: one shared tester every registered model passes, then 2HDED:NET specifics.

``TestEveryModel`` is parametrised over ``twohded.list_models()``: a model registered with
``@register_model`` (e.g. a later DnCNN/IRCNN baseline) is picked up automatically. The
contract it checks: ``forward((B, 3, H, W) in [0, 1])`` at any size returns a
``ModelOutput`` whose fields named in ``model.outputs`` are finite, ``depth`` is
``(B, 1, H, W)``, ``aif`` is ``(B, 3, H, W)`` and in ``[0, 1]`` in eval mode; the model is a
``DefocusModel`` declaring ``outputs``, ``needs_depth`` and ``stride``.
Registry ``tester`` hint: ``export`` (run the ``torch.export`` test on that variant).
"""

from __future__ import annotations

import io
import logging

import pytest
import torch

import twohded
from twohded.errors import InputError
from twohded.models import DefocusModel, ModelOutput, count_parameters, model_info
from twohded.models.summary import feature_sizes

ODD_SIZES = [(17, 23), (33, 45)]  # padded to 32x32 and 64x64
SMALL = (1, 3, 17, 23)  # read-only checks: one 32x32 pass after padding
_CHANNELS = {"depth": 1, "aif": 3}


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return twohded.create_model(name)


@pytest.fixture(scope="module")
def _cache() -> dict[str, torch.nn.Module]:
    return {}


@pytest.fixture(params=twohded.list_models())
def name(request) -> str:
    return request.param


@pytest.fixture
def model(name, _cache) -> torch.nn.Module:
    """An eval-mode model shared by the read-only tests of one variant."""
    if name not in _cache:
        _cache[name] = _build(name).eval()
    return _cache[name].eval()


def _check_output(out, model, shape) -> None:
    b, _, h, w = shape
    assert isinstance(out, ModelOutput)
    for field in ("depth", "aif"):
        value = getattr(out, field)
        if field in model.outputs:
            assert value is not None, field
            assert value.shape == (b, _CHANNELS[field], h, w), (field, value.shape)
            assert torch.isfinite(value).all(), field
        else:
            assert value is None, field


class TestEveryModel:
    """The shared model tester (like smp's BaseModelTester / timm's test_models.py)."""

    def test_registry_entry(self, name, model):
        info = model_info(name)
        assert tuple(model.outputs) == info.outputs
        assert set(info.outputs) <= {"depth", "aif"} and info.outputs

    def test_declarations(self, model):
        """Every model is a DefocusModel declaring outputs, needs_depth and stride; a size that
        is not a multiple of the stride still comes back at the input's size."""
        assert isinstance(model, DefocusModel)
        assert isinstance(model.outputs, tuple) and model.outputs
        assert model.needs_depth is False  # registered models take the image alone
        assert isinstance(model.stride, int) and model.stride >= 1
        h, w = model.stride + 1, 2 * model.stride + 3
        with torch.no_grad():
            _check_output(model(torch.rand(1, 3, h, w)), model, (1, 3, h, w))

    def test_parameter_count(self, name, model):
        expected = model_info(name).num_params
        if expected is None:
            pytest.skip(f"{name}: no num_params registered")
        assert count_parameters(model) == expected

    @pytest.mark.parametrize("size", ODD_SIZES)
    def test_eval_shapes_and_ranges(self, model, size):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            out = model(x)
        _check_output(out, model, x.shape)
        if out.aif is not None:
            assert out.aif.min() >= 0.0 and out.aif.max() <= 1.0

    def test_forward_backward_train_mode(self, name):
        model = _build(name).train()
        x = torch.rand(2, 3, 33, 45)
        out = model(x)
        _check_output(out, model, x.shape)
        target = {f: torch.rand_like(getattr(out, f)) for f in model.outputs}
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        first = next(model.parameters())
        for _ in range(2):  # a zero-initialised last layer (the AiF residual) passes gradient after one step
            opt.zero_grad()
            out = model(x)
            loss = sum((getattr(out, f) - target[f]).square().mean() for f in model.outputs)
            loss.backward()
            grads = [p.grad for p in model.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            if first.grad.abs().sum() > 0:
                break
            opt.step()
        assert first.grad.abs().sum() > 0  # gradient reaches the first layer

    def test_eval_determinism(self, model):
        x = torch.rand(*SMALL)
        with torch.no_grad():
            a, b = model(x), model(x)
        for f in model.outputs:
            assert torch.equal(getattr(a, f), getattr(b, f))

    def test_state_dict_round_trip(self, name, model):
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        other = _build(name, seed=1).eval()
        other.load_state_dict(torch.load(buf, weights_only=True))
        x = torch.rand(*SMALL)
        with torch.no_grad():
            a, b = model(x), other(x)
        for f in model.outputs:
            assert torch.equal(getattr(a, f), getattr(b, f))

    def test_channels_last_and_bf16_autocast(self, model):
        x = torch.rand(*SMALL)
        with torch.no_grad():
            ref = model(x)
            cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf = model(x.to(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
        for f in model.outputs:
            torch.testing.assert_close(getattr(cl, f), getattr(ref, f), rtol=1e-4, atol=1e-4)
            assert torch.isfinite(getattr(bf, f)).all()

    def test_torch_export(self, name, model):
        if not model_info(name).tester.get("export", False):
            pytest.skip(f"{name}: export not requested in the registry's tester hints (covered on a sibling)")
        if not hasattr(torch, "export"):
            pytest.skip("torch.export is not available in this torch")
        x = torch.rand(*SMALL)
        try:
            program = torch.export.export(model, (x,))
        except Exception as exc:  # pragma: no cover - depends on the torch build
            pytest.skip(f"torch.export failed on this torch ({type(exc).__name__}: {str(exc)[:200]})")
        with torch.no_grad():
            got, want = program.module()(x), model(x)
        for f in model.outputs:
            torch.testing.assert_close(getattr(got, f), getattr(want, f))


# --------------------------------------------------------------------------- 2HDED:NET


def test_list_and_default():
    assert {"2hded", "2hded-depth", "2hded-aif"} <= set(twohded.list_models())
    assert twohded.create_model().outputs == ("depth", "aif")


def test_unknown_name_and_option():
    with pytest.raises(InputError, match="unknown model 'nope'.*2hded"):
        twohded.create_model("nope")
    with pytest.raises(InputError, match="bogus"):
        twohded.create_model("2hded", bogus=1)
    with pytest.raises(InputError, match="input_norm"):
        twohded.create_model("2hded-depth", input_norm="wrong")


def test_parameter_count_per_part(_cache):
    model = _cache.get("2hded") or _build("2hded")
    assert count_parameters(model) == 41_414_400
    assert count_parameters(model.encoder) == 7_011_840
    assert count_parameters(model.depth_decoder) == count_parameters(model.aif_decoder) == 17_200_128
    assert count_parameters(model.depth_head) == 576  # 3x3, 64 -> 1, no bias
    assert count_parameters(model.aif_head) == 1_728  # 3x3, 64 -> 3, no bias


@pytest.fixture(scope="module")
def meta_model() -> torch.nn.Module:
    """2HDED:NET on the meta device: shapes without compute."""
    with torch.device("meta"):
        return twohded.create_model("2hded").eval()


def test_table1_feature_sizes(meta_model):
    sizes = dict(feature_sizes(meta_model, 256))
    assert sizes["encoder stem skip"] == (64, 128, 128)
    assert sizes["encoder transition1 skip"] == (128, 64, 64)
    assert sizes["encoder transition2 skip"] == (256, 32, 32)
    assert sizes["encoder transition3 skip"] == (512, 16, 16)
    assert sizes["encoder bottleneck"] == (1024, 8, 8)
    for head, c in (("depth", 1), ("aif", 3)):
        assert sizes[f"{head} decoder block5"] == (512, 16, 16)
        assert sizes[f"{head} decoder block4"] == (256, 32, 32)
        assert sizes[f"{head} decoder block3"] == (128, 64, 64)
        assert sizes[f"{head} decoder block2"] == (64, 128, 128)
        assert sizes[f"{head} decoder block1"] == (64, 256, 256)
        assert sizes[f"{head} output"] == (c, 256, 256)


@pytest.mark.parametrize("size", [(427, 561), (480, 640)])
def test_full_size_inputs(meta_model, size):
    """NYU's 427x561 crop (padded to 448x576 and cropped back) and 480x640 (no pad), shapes on meta."""
    with torch.no_grad():
        out = meta_model(torch.rand(2, 3, *size, device="meta"))
    assert out.depth.shape == (2, 1, *size) and out.aif.shape == (2, 3, *size)


def test_aif_is_input_plus_residual():
    model = _build("2hded-aif")
    torch.nn.init.zeros_(model.aif_head.weight)
    x = torch.rand(2, 3, 32, 32)
    out = model.train()(x)
    assert torch.equal(out.aif, x)  # zero residual -> the input itself ("input joint layer")
    with torch.no_grad():
        model.aif_head.weight.fill_(1.0)
        assert model.eval()(x).aif.max() <= 1.0  # clamped in eval mode
        assert model.train()(x).aif.max() > 1.0  # raw in training mode


def test_tiny_input_replicate_pad(_cache):
    model = (_cache.get("2hded-depth") or _build("2hded-depth")).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 5, 7))
    assert out.depth.shape == (1, 1, 5, 7)


def test_drop_head_matches_single_head_variant():
    model = _build("2hded")
    model.drop_head("aif")
    assert model.outputs == ("depth",)
    assert count_parameters(model) == model_info("2hded-depth").num_params
    single = twohded.create_model("2hded-depth")
    single.load_state_dict(model.state_dict())  # same keys and shapes
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 32, 32)).aif is None
    with pytest.raises(InputError):
        model.drop_head("depth")  # the only head left
    with pytest.raises(InputError):
        model.drop_head("aif")


def test_bad_image_shape():
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        _build("2hded-depth")(torch.rand(1, 1, 32, 32))


# --------------------------------------------------------------------------- encoder weights


def _torchvision_like_state_dict(old_style: bool = False) -> dict[str, torch.Tensor]:
    """A state dict with torchvision densenet121's key names and shapes (random values)."""
    from twohded.models import DenseNetEncoder

    enc = DenseNetEncoder()
    sd = {}
    for k, v in enc.state_dict().items():
        if k.startswith(("features.downconv0", "features.norm1.")):
            continue  # not in torchvision (its stem has a max-pool there)
        sd[k] = torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v.clone()
    sd["features.conv0.weight"] = torch.randn(64, 3, 7, 7)
    sd["classifier.weight"] = torch.randn(1000, 1024)
    sd["classifier.bias"] = torch.randn(1000)
    if old_style:  # densenet121-a639ec97.pth names dense-layer tensors "norm.1", "conv.2"
        import re

        sd = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in sd.items()}
        sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # pre-0.4 file: none
    return sd


def test_torchvision_like_state_dict_has_densenet121_size():
    sd = _torchvision_like_state_dict()
    params = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert params == 7_978_856  # torchvision densenet121's parameter count


@pytest.mark.parametrize("old_style", [False, True])
def test_encoder_weights_from_local_file(tmp_path, caplog, old_style):
    sd = _torchvision_like_state_dict(old_style)
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save(sd, path)
    with caplog.at_level(logging.INFO, logger="twohded.models.encoder"):
        model = twohded.create_model("2hded-depth", encoder_weights=str(path))
    own = model.encoder.state_dict()
    key = "features.denseblock3.denselayer7.conv2.weight"
    src = sd[key if not old_style else "features.denseblock3.denselayer7.conv.2.weight"]
    assert torch.equal(own[key], src)
    assert torch.equal(own["features.norm5.running_var"], sd["features.norm5.running_var"])
    assert own["features.conv0.weight"].shape == (64, 3, 3, 3)  # skipped, kept its init
    lines = [r.getMessage() for r in caplog.records if "encoder_weights" in r.getMessage()]
    assert len(lines) == 1
    assert "skipped 3: features.conv0.weight" in lines[0] and "classifier.weight" in lines[0] and "classifier.bias" in lines[0]


def test_encoder_weights_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        twohded.create_model("2hded", encoder_weights=tmp_path / "missing.pth")
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        twohded.create_model("2hded", encoder_weights=bad)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(InputError, match="no tensor matches"):
        twohded.create_model("2hded", encoder_weights=other)


def test_depth_bias_starts_the_network_at_the_given_depth():
    import torch

    from twohded import create_model
    from twohded.errors import InputError

    model = create_model("2hded", depth_bias_m=3.5, decoder_dropout=0.0).eval()
    assert model.depth_head.bias is not None
    with torch.no_grad():
        depth = model(torch.rand(1, 3, 32, 32)).depth
    assert abs(float(depth.mean()) - 3.5) < 0.5  # the head's weights are small at init
    assert create_model("2hded").depth_head.bias is None  # the paper's bias-free head by default
    with pytest.raises(InputError):
        create_model("2hded", depth_bias_m=-1.0)


@pytest.mark.parametrize("depth_output", ["metres", "log", "inverse"])
def test_depth_output_starts_at_the_bias_depth(depth_output):
    """depth_output changes what the raw head means, never the unit: with the head's weights at
    zero the output is exactly depth_bias_m metres everywhere, in every parametrisation."""
    from twohded.models import create_model

    model = create_model("2hded-depth", depth_output=depth_output, depth_bias_m=2.5).eval()
    torch.nn.init.zeros_(model.depth_head.weight)
    with torch.no_grad():
        depth = model(torch.rand(1, 3, 64, 64)).depth
    assert torch.allclose(depth, torch.full_like(depth, 2.5), rtol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == 24_212_545  # the bias: one parameter more


def test_depth_output_rejects_unknown():
    from twohded.errors import InputError
    from twohded.models import create_model

    with pytest.raises(InputError, match="depth_output"):
        create_model("2hded", depth_output="cm")
