"""Int8 quantisation of a state dict (twohded.quantize)."""

import torch

from twohded.models import create_model
from twohded.quantize import SCALE_SUFFIX, dequantize_int8, is_quantized, quantize_int8


def test_int8_round_trip_and_fixed_point():
    torch.manual_seed(0)
    state = {"conv.weight": torch.randn(8, 4, 3, 3), "conv.bias": torch.randn(8),
             "bn.num_batches_tracked": torch.tensor(3), "zero.weight": torch.zeros(2, 3)}
    q = quantize_int8(state)
    assert q["conv.weight"].dtype == torch.int8 and q["conv.weight" + SCALE_SUFFIX].shape == (8,)
    assert torch.equal(q["conv.bias"], state["conv.bias"]) and is_quantized(q)
    back = dequantize_int8(q)
    assert set(back) == set(state)
    err = (back["conv.weight"] - state["conv.weight"]).abs().amax(dim=(1, 2, 3))
    bound = state["conv.weight"].abs().amax(dim=(1, 2, 3)) / 127 / 2
    assert torch.all(err <= bound * 1.0001)  # half a step per output channel
    assert torch.equal(back["zero.weight"], state["zero.weight"])
    again = quantize_int8(back)
    assert torch.equal(again["conv.weight"], q["conv.weight"])  # int8 is a fixed point


def test_int8_model_size_and_output():
    torch.manual_seed(0)
    model = create_model("2hded").eval()
    q = quantize_int8(model.state_dict())
    nbytes = sum(t.numel() * t.element_size() for t in q.values())
    assert nbytes < 45e6, nbytes
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.load_state_dict(dequantize_int8(q))
        out = model(x)
    assert torch.allclose(out.depth, ref.depth, atol=0.05 * ref.depth.abs().max().item())
