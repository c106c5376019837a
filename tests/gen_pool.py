"""Golden data for visual-token pooling (tests/test_pool.c), from plain PyTorch.

  - `avg.P.N.*`: torch.nn.AdaptiveAvgPool1d(N) over the patch axis of x [B, P, C] (applied to
    x.transpose(1, 2), contiguous), for P=196 -> 16, 49; P=729 -> 64, 81; P=7 -> 3, 5, 7; with
    a random upstream gradient dout and dx from (y * dout).sum().backward();
  - `lin.*`: the linear pool (W [N, P] + bias [N] over the patch axis, W = the avg matrix
    plus noise, a random bias) followed by an mlp2x_gelu projector (nn.Linear, exact GELU,
    nn.Linear), P=7 -> N=3, Cv=6 -> Ct=5, B=2 images: y, and the gradients of W, bias, the
    projector's weights and x.

Run with /usr/bin/python3 (Debian's python3-torch); writes tests/fixtures/pool_ref.safetensors.
"""
import os

import torch

from fixtures_io import save_fixture

torch.manual_seed(14)
out = {}
B, C = 2, 3
for P, N in [(196, 16), (196, 49), (729, 64), (729, 81), (7, 3), (7, 5), (7, 7)]:
    x = torch.randn(B, P, C, requires_grad=True)
    y = torch.nn.AdaptiveAvgPool1d(N)(x.transpose(1, 2).contiguous()).transpose(1, 2)   # [B, N, C]
    dout = torch.randn(B, N, C)
    (y * dout).sum().backward()
    k = f"avg.{P}.{N}."
    out[k + "x"], out[k + "y"], out[k + "dout"], out[k + "dx"] = x.reshape(B * P, C), y.reshape(B * N, C), \
        dout.reshape(B * N, C), x.grad.reshape(B * P, C)

P, N, Cv, Ct = 7, 3, 6, 5
avg = torch.zeros(N, P)
for i in range(N):
    s, e = (i * P) // N, -((-(i + 1) * P) // N)
    avg[i, s:e] = 1.0 / (e - s)
W = (avg + 0.1 * torch.randn(N, P)).requires_grad_()
b = (0.1 * torch.randn(N)).requires_grad_()
proj = torch.nn.Sequential(torch.nn.Linear(Cv, Ct), torch.nn.GELU(), torch.nn.Linear(Ct, Ct))
x = torch.randn(B, P, Cv, requires_grad=True)
pooled = torch.einsum("np,bpc->bnc", W, x) + b[None, :, None]
y = proj(pooled)
dout = torch.randn(B, N, Ct)
(y * dout).sum().backward()
out.update({"lin.avg": avg, "lin.x": x.reshape(B * P, Cv), "lin.W": W, "lin.b": b,
            "lin.w1": proj[0].weight, "lin.b1": proj[0].bias, "lin.w2": proj[2].weight, "lin.b2": proj[2].bias,
            "lin.y": y.reshape(B * N, Ct), "lin.dout": dout.reshape(B * N, Ct),
            "lin.dx": x.grad.reshape(B * P, Cv), "lin.dW": W.grad, "lin.db": b.grad,
            "lin.dw1": proj[0].weight.grad, "lin.db1": proj[0].bias.grad,
            "lin.dw2": proj[2].weight.grad, "lin.db2": proj[2].bias.grad})
save_fixture(os.path.join(os.path.dirname(__file__), "fixtures", "pool_ref.safetensors"), out,
             meta={"torch": torch.__version__})
print("wrote tests/fixtures/pool_ref.safetensors")
