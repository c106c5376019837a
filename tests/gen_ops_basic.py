"""Golden fixtures for autograd/ops_basic.c, from PyTorch (run with /usr/bin/python3).

For each op: the inputs, a random upstream gradient `dout`, the output `out` and the input
gradients `d<name>` of (out * dout).sum(). Writes tests/fixtures/ops_basic_<op>.safetensors,
read by tests/test_ops_basic.c.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_io import save_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
torch.manual_seed(20261129)


def randn(*shape, grad=True, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale).requires_grad_(grad)


def emit(op, inputs, out, extra=None, meta=None):
    """inputs: name -> tensor (those with requires_grad get a d<name> entry)."""
    dout = torch.randn(out.shape, dtype=torch.float32)
    (out * dout).sum().backward()
    t = {}
    for k, v in inputs.items():
        t[k] = v.detach()
    t.update(extra or {})
    t["dout"] = dout
    t["out"] = out.detach()
    for k, v in inputs.items():
        if v.requires_grad:
            t["d" + k] = v.grad
    path = os.path.join(OUT, "ops_basic_%s.safetensors" % op)
    save_fixture(path, t, meta)
    print("wrote", path)


def main():
    os.makedirs(OUT, exist_ok=True)

    # linear with bias: x[N,In], W[O,In], b[O]; x 3-D to cover leading dims
    x, W, b = randn(2, 3, 10), randn(7, 10), randn(7)
    emit("linear", {"x": x, "W": W, "b": b}, F.linear(x, W, b))

    # LoRA linear, dropout 0: y = x Wᵀ + s·(x Aᵀ) Bᵀ, W frozen
    x, W, A, B = randn(6, 12), randn(9, 12, grad=False), randn(4, 12), randn(9, 4)
    s = 2.0
    emit("lora_linear", {"x": x, "W": W, "A": A, "B": B}, F.linear(x, W) + s * F.linear(F.linear(x, A), B),
         meta={"scale": s})

    # add with b[P,C] repeated over a[B·P, C] (position-embedding pattern)
    a, b = randn(6, 5), randn(3, 5)
    emit("add", {"a": a, "b": b}, (a.view(2, 3, 5) + b).view(6, 5))

    a, b = randn(4, 7), randn(4, 7)
    emit("mul", {"a": a, "b": b}, a * b)

    a = randn(4, 7)
    emit("scale", {"a": a}, a * 0.37, meta={"s": 0.37})

    # HF LlamaRMSNorm in fp32
    x, w = randn(5, 16), randn(16)
    eps = 1e-5
    var = x.pow(2).mean(-1, keepdim=True)
    emit("rmsnorm", {"x": x, "w": w}, w * (x * torch.rsqrt(var + eps)), meta={"eps": eps})

    x, w, b = randn(5, 16, scale=2.0), randn(16), randn(16)
    x.data += 0.5
    eps = 1e-6
    emit("layernorm", {"x": x, "w": w, "b": b}, F.layer_norm(x, (16,), w, b, eps), meta={"eps": eps})
    x, w = randn(5, 16), randn(16)
    emit("layernorm_nobias", {"x": x, "w": w}, F.layer_norm(x, (16,), w, None, eps), meta={"eps": eps})

    g, u = randn(4, 9, scale=2.0), randn(4, 9)
    emit("swiglu", {"gate": g, "up": u}, F.silu(g) * u)

    x = randn(4, 9, scale=2.0)
    emit("gelu", {"x": x}, F.gelu(x))
    x = randn(4, 9, scale=2.0)
    emit("gelu_tanh", {"x": x}, F.gelu(x, approximate="tanh"))

    table = randn(11, 6)
    ids = torch.tensor([3, 0, 10, 3, 7, 3, 1], dtype=torch.int32)
    emit("embedding", {"table": table}, F.embedding(ids.long(), table), extra={"ids": ids})

    p0, p1, p2 = randn(2, 5), randn(3, 5), randn(1, 5)
    emit("concat_rows", {"p0": p0, "p1": p1, "p2": p2}, torch.cat([p0, p1, p2], 0))

    base, src = randn(7, 4), randn(3, 4)
    rows = torch.tensor([5, 1, 2], dtype=torch.int32)
    out = base.clone()
    out[rows.long()] = src
    emit("scatter_rows", {"base": base, "src": src}, out, extra={"rows": rows})
    assert math.isfinite(float(out.sum()))


if __name__ == "__main__":
    main()
