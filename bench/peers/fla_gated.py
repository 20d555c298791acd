"""flash-linear-attention's gated delta rule (chunk_gated_delta_rule) on the GPU host, beside
FastWeights' `bench delta --gated true` in one run.
Usage: PYTHONPATH=<folder holding fla> python3 fla_gated.py B H T D [B H T D ...]
Prints tokens/s (B*T per second), bf16 q, k, v, beta, the decay g = log alpha (f32) with alpha
uniform in (0.9, 1) as ours, forward and forward+backward (gradients for q, k, v, beta and g); where
FLA refuses its backward (Triton 3.4 to 3.7.0 on Hopper), the forward alone."""
import sys
import torch
import torch.nn.functional as F

from cuda_timing import timed  # bench/peers, the script's own folder

from fla.ops.gated_delta_rule import chunk_gated_delta_rule


def inputs(b, h, t, d, grad):
    q = torch.randn(b, t, h, d, device="cuda", dtype=torch.bfloat16)
    k = F.normalize(torch.randn(b, t, h, d, device="cuda", dtype=torch.float32), dim=-1).to(torch.bfloat16)
    v = torch.randn(b, t, h, d, device="cuda", dtype=torch.bfloat16)
    beta = torch.rand(b, t, h, device="cuda", dtype=torch.bfloat16).sigmoid()
    g = torch.log(0.9 + 0.1 * torch.rand(b, t, h, device="cuda", dtype=torch.float32))
    return [x.requires_grad_(grad) for x in (q, k, v, g, beta)]


args = [int(a) for a in sys.argv[1:]] or [8, 16, 2048, 64]
for i in range(0, len(args), 4):
    b, h, t, d = args[i:i + 4]
    tokens = b * t
    q, k, v, g, beta = inputs(b, h, t, d, False)
    with torch.no_grad():
        ms = timed(lambda: chunk_gated_delta_rule(q, k, v, g, beta, scale=1.0))
    print(f"fla chunk_gated_delta_rule B{b} H{h} T{t} D{d} bf16 fwd      {ms:8.3f} ms {tokens / ms * 1e3 / 1e6:8.3f} M tok/s", flush=True)
    q, k, v, g, beta = inputs(b, h, t, d, True)
    do = torch.randn_like(v)

    def step():
        o, _ = chunk_gated_delta_rule(q, k, v, g, beta, scale=1.0)
        o.backward(do)
    try:
        ms = timed(step)
    except RuntimeError as e:
        # FLA refuses its gated backward on Hopper with Triton >= 3.4.0 and < 3.7.1 (its issue #640,
        # wrong dq/dk/dg there) unless tilelang is installed; the GPU host has neither.
        print(f"fla chunk_gated_delta_rule B{b} H{h} T{t} D{d} bf16 fwd+bwd  refused: {str(e).splitlines()[0]}", flush=True)
        continue
    print(f"fla chunk_gated_delta_rule B{b} H{h} T{t} D{d} bf16 fwd+bwd  {ms:8.3f} ms {tokens / ms * 1e3 / 1e6:8.3f} M tok/s", flush=True)
