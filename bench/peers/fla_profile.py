"""flash-linear-attention's chunk_delta_rule, per GPU kernel, to set beside FASTWEIGHTS_PROFILE=1.
Usage: PYTHONPATH=<folder holding fla> python3 fla_profile.py B H T D [B H T D ...]
For each shape (bf16, k L2-normalised, scale 1), warms up (Triton autotuning included) and keeps the
GPU busy for cuda_timing.SPIN_UP_SECONDS (cuda_timing.spin_up), then records `calls` forward calls and `calls`
forward+backward calls under torch.profiler and prints each CUDA kernel's total time per call
(microseconds), the number of launches per call and its share of the GPU time."""
import sys

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cuda_timing import spin_up
from fla.ops.delta_rule import chunk_delta_rule

CALLS = 5


def inputs(b, h, t, d, grad):
    q = torch.randn(b, t, h, d, device="cuda", dtype=torch.bfloat16)
    k = F.normalize(torch.randn(b, t, h, d, device="cuda"), dim=-1).to(torch.bfloat16)
    v = torch.randn(b, t, h, d, device="cuda", dtype=torch.bfloat16)
    beta = torch.rand(b, t, h, device="cuda", dtype=torch.bfloat16).sigmoid()
    return [x.requires_grad_(grad) for x in (q, k, v, beta)]


def report(label, fn):
    spin_up(fn)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(CALLS):
            fn()
        torch.cuda.synchronize()
    def gpu_time(e):  # torch >= 2.4 names it device_time_total, older ones cuda_time_total
        return getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
    rows = [e for e in prof.key_averages() if gpu_time(e) > 0 and e.device_type == torch.autograd.DeviceType.CUDA]
    if not rows:  # some versions file kernels under CPU-typed rows with only a GPU time
        rows = [e for e in prof.key_averages() if gpu_time(e) > 0 and getattr(e, "self_cpu_time_total", 0) == 0]
    total = sum(gpu_time(e) for e in rows) / CALLS
    print(f"fla-profile {label}: {total:9.1f} us of GPU time per call", flush=True)
    for e in sorted(rows, key=lambda e: -gpu_time(e)):
        per_call = gpu_time(e) / CALLS
        print(f"fla-profile   {per_call:9.1f} us {100 * per_call / total:5.1f} % {e.count / CALLS:5.1f} x  {e.key[:110]}", flush=True)


args = [int(a) for a in sys.argv[1:]] or [8, 16, 2048, 64]
for i in range(0, len(args), 4):
    b, h, t, d = args[i:i + 4]
    q, k, v, beta = inputs(b, h, t, d, False)
    with torch.no_grad():
        report(f"B{b} H{h} T{t} D{d} bf16 fwd", lambda: chunk_delta_rule(q, k, v, beta, scale=1.0))
    q, k, v, beta = inputs(b, h, t, d, True)
    do = torch.randn_like(v)

    def step():
        o, _ = chunk_delta_rule(q, k, v, beta, scale=1.0)
        o.backward(do)
    report(f"B{b} H{h} T{t} D{d} bf16 fwd+bwd", step)
