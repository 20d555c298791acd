"""flash-linear-attention's delta rule on the GPU host, beside FastWeights in one run.
Usage: PYTHONPATH=<folder holding fla> python3 fla_delta.py B H T D [B H T D ...]
Prints tokens/s (B*T per second) of chunk_delta_rule and fused_recurrent_delta_rule, bf16, forward
and forward+backward, k L2-normalised, and of a naive PyTorch loop (f32, small shapes only).
With FLA_CHUNK_ONLY=1, chunk_delta_rule alone (no fused recurrent kernel, no naive loop)."""
import os
import sys
import torch

from cuda_timing import timed  # bench/peers, the script's own folder
import torch.nn.functional as F

from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule


def inputs(b, h, t, d, dtype, grad):
    q = torch.randn(b, t, h, d, device="cuda", dtype=dtype)
    k = F.normalize(torch.randn(b, t, h, d, device="cuda", dtype=torch.float32), dim=-1).to(dtype)
    v = torch.randn(b, t, h, d, device="cuda", dtype=dtype)
    beta = torch.rand(b, t, h, device="cuda", dtype=dtype).sigmoid()
    return [x.requires_grad_(grad) for x in (q, k, v, beta)]


def naive(q, k, v, beta):
    b, t, h, d = q.shape
    s = torch.zeros(b, h, d, d, device=q.device, dtype=q.dtype)
    outs = []
    for i in range(t):
        kt, vt, qt = k[:, i], v[:, i], q[:, i]
        e = vt - torch.einsum("bhvk,bhk->bhv", s, kt)
        s = s + torch.einsum("bhv,bhk->bhvk", beta[:, i, :, None] * e, kt)
        outs.append(torch.einsum("bhvk,bhk->bhv", s, qt))
    return torch.stack(outs, 1)


args = [int(a) for a in sys.argv[1:]] or [8, 16, 2048, 64]
chunk_only = os.environ.get("FLA_CHUNK_ONLY") == "1"
kernels = (("chunk_delta_rule", chunk_delta_rule),) if chunk_only else (("chunk_delta_rule", chunk_delta_rule), ("fused_recurrent_delta_rule", fused_recurrent_delta_rule))
for i in range(0, len(args), 4):
    b, h, t, d = args[i:i + 4]
    tokens = b * t
    for name, fn in kernels:
        q, k, v, beta = inputs(b, h, t, d, torch.bfloat16, False)
        with torch.no_grad():
            ms = timed(lambda: fn(q, k, v, beta, scale=1.0))
        print(f"fla {name} B{b} H{h} T{t} D{d} bf16 fwd      {ms:8.3f} ms {tokens / ms * 1e3 / 1e6:8.3f} M tok/s", flush=True)
        q, k, v, beta = inputs(b, h, t, d, torch.bfloat16, True)
        do = torch.randn_like(v)

        def step():
            o, _ = fn(q, k, v, beta, scale=1.0)
            o.backward(do)
        ms = timed(step)
        print(f"fla {name} B{b} H{h} T{t} D{d} bf16 fwd+bwd  {ms:8.3f} ms {tokens / ms * 1e3 / 1e6:8.3f} M tok/s", flush=True)
    if not chunk_only and b * h * t * d <= 4 * 8 * 1024 * 64:
        q, k, v, beta = inputs(b, h, t, d, torch.float32, True)
        do = torch.randn_like(v)

        def naive_step():
            naive(q, k, v, beta).backward(do)
        with torch.no_grad():
            ms = timed(lambda: naive(q, k, v, beta), reps=3)
        print(f"torch naive loop B{b} H{h} T{t} D{d} f32 fwd      {ms:8.3f} ms {tokens / ms * 1e3 / 1e6:8.3f} M tok/s", flush=True)
        ms = timed(naive_step, reps=3)
        print(f"torch naive loop B{b} H{h} T{t} D{d} f32 fwd+bwd  {ms:8.3f} ms {tokens / ms * 1e3 / 1e6:8.3f} M tok/s", flush=True)
