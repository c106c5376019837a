"""Golden data for the gated cross-attention block (tests/test_xattn.c), from plain PyTorch.

One block of model/xattn.h written out in torch ops: C=16, H=4 query heads, K=2 kv heads
(GQA), D=4, I=24, rms_norm_eps=1e-5; N=9 text rows (rows 0-3 attend image 0 = visual rows
0-2, rows 4-7 image 1 = rows 3-5, row 8 no image), M=6 visual rows; gates 0.4 (attention)
and -0.7 (MLP) so every tensor gets a gradient. Stores the inputs, a random upstream
gradient dout, the output and the gradients of x, vis and every block tensor (names as in
xattn.safetensors, block 0).

Run with /usr/bin/python3 (Debian's python3-torch); writes tests/fixtures/xattn_ref.safetensors.
"""
import math
import os

import torch

from fixtures_io import save_fixture

torch.manual_seed(1414)
C, H, K, D, I, eps = 16, 4, 2, 4, 24, 1e-5
N, M = 9, 6
pre = "model.xattn_layers.0."


def p(*shape, scale=0.3):
    return (scale * torch.randn(*shape)).requires_grad_()


w = {"input_layernorm.weight": (1 + 0.1 * torch.randn(C)).requires_grad_(),
     "cross_attn.q_proj.weight": p(H * D, C), "cross_attn.k_proj.weight": p(K * D, C),
     "cross_attn.v_proj.weight": p(K * D, C), "cross_attn.o_proj.weight": p(C, H * D),
     "cross_attn_attn_gate": torch.tensor([0.4], requires_grad=True),
     "post_attention_layernorm.weight": (1 + 0.1 * torch.randn(C)).requires_grad_(),
     "mlp.gate_proj.weight": p(I, C), "mlp.up_proj.weight": p(I, C), "mlp.down_proj.weight": p(C, I),
     "cross_attn_mlp_gate": torch.tensor([-0.7], requires_grad=True)}
x = torch.randn(N, C, requires_grad=True)
vis = torch.randn(M, C, requires_grad=True)
kb = torch.tensor([0, 0, 0, 0, 3, 3, 3, 3, 0], dtype=torch.int32)
ke = torch.tensor([3, 3, 3, 3, 6, 6, 6, 6, 0], dtype=torch.int32)


def rmsnorm(t, g):
    return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * g


h = rmsnorm(x, w["input_layernorm.weight"])
q = (h @ w["cross_attn.q_proj.weight"].T).view(N, H, D).transpose(0, 1)           # [H, N, D]
k = (vis @ w["cross_attn.k_proj.weight"].T).view(M, K, D).transpose(0, 1)         # [K, M, D]
v = (vis @ w["cross_attn.v_proj.weight"].T).view(M, K, D).transpose(0, 1)
k, v = k.repeat_interleave(H // K, 0), v.repeat_interleave(H // K, 0)              # head h uses kv head h // (H/K)
s = q @ k.transpose(1, 2) / math.sqrt(D)                                            # [H, N, M]
cols = torch.arange(M)
allowed = (cols[None, :] >= kb[:, None]) & (cols[None, :] < ke[:, None])           # [N, M]
s = s.masked_fill(~allowed[None], float("-inf"))
pr = torch.softmax(s, -1).nan_to_num(0.0)                                          # a row with no image: 0
a = (pr @ v).transpose(0, 1).reshape(N, H * D)
x1 = x + torch.tanh(w["cross_attn_attn_gate"]) * (a @ w["cross_attn.o_proj.weight"].T)
h2 = rmsnorm(x1, w["post_attention_layernorm.weight"])
u = torch.nn.functional.silu(h2 @ w["mlp.gate_proj.weight"].T) * (h2 @ w["mlp.up_proj.weight"].T)
y = x1 + torch.tanh(w["cross_attn_mlp_gate"]) * (u @ w["mlp.down_proj.weight"].T)
dout = torch.randn(N, C)
(y * dout).sum().backward()

out = {"x": x, "vis": vis, "kv_begin": kb, "kv_end": ke, "dout": dout, "y": y, "dx": x.grad, "dvis": vis.grad}
for name, t in w.items():
    out[pre + name] = t
    out["grad." + pre + name] = t.grad
save_fixture(os.path.join(os.path.dirname(__file__), "fixtures", "xattn_ref.safetensors"), out,
             meta={"C": C, "H": H, "K": K, "D": D, "I": I, "eps": eps, "torch": torch.__version__})
print("wrote tests/fixtures/xattn_ref.safetensors")
