"""FlashRNN (CUDA kernels compiled at first use) on the GPU host, beside FastWeights in one run.
Usage: PYTHONPATH=<folder holding flashrnn> python3 flashrnn_bench.py HIDDEN HEADS [HIDDEN HEADS ...]
Prints tokens/s (B*T per second) of the cells in FLASHRNN_CELLS (default lstm; also gru) at batch 16,
T 1024, bf16, forward and forward+backward, for each backend in FLASHRNN_BACKENDS that builds
(default 'cuda_fused', then 'cuda', the alternating one).
Its layout: Wx [B, T, G, N, D], R [G, N, D, D], b [G, N, D], states [S, B, 1, N, D]."""
import os
import sys
import torch

from cuda_timing import timed  # bench/peers, the script's own folder

os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
from flashrnn import flashrnn  # noqa: E402

B, T = 16, 1024
GATES = {"lstm": (4, 2), "gru": (3, 1)}   # pre-activations, states
# Each (cell, backend, shape) compiles its own kernels there (about 30 s each): choose few.
CELLS = os.environ.get("FLASHRNN_CELLS", "lstm").split(",")
BACKENDS = os.environ.get("FLASHRNN_BACKENDS", "cuda_fused,cuda").split(",")


args = [int(a) for a in sys.argv[1:]] or [768, 1]
for i in range(0, len(args), 2):
    hidden, heads = args[i], args[i + 1]
    d = hidden // heads
    for cell in CELLS:
        g, s = GATES[cell]
        for backend in BACKENDS:
            try:
                dtype = torch.bfloat16
                wx = torch.randn(B, T, g, heads, d, device="cuda", dtype=dtype, requires_grad=True)
                r = (torch.randn(g, heads, d, d, device="cuda", dtype=torch.float32) / d ** 0.5).to(dtype).requires_grad_(True)
                bias = torch.randn(g, heads, d, device="cuda", dtype=dtype, requires_grad=True)
                states = torch.zeros(s, B, 1, heads, d, device="cuda", dtype=dtype)

                def forward():
                    with torch.no_grad():
                        flashrnn(wx, r, bias, states=states, function=cell, backend=backend)

                def both():
                    out, _ = flashrnn(wx, r, bias, states=states, function=cell, backend=backend)
                    out[0].float().sum().backward()

                fwd = timed(forward)
                fb = timed(both)
                name = f"flashrnn {backend} {cell} {heads}x{d} B{B} T{T} bf16"
                print(f"{name} fwd      {fwd:8.3f} ms {B * T / fwd * 1e3:10.0f} tok/s", flush=True)
                print(f"{name} fwd+bwd  {fb:8.3f} ms {B * T / fb * 1e3:10.0f} tok/s", flush=True)
            except Exception as e:  # a backend that does not build or run there: say so and go on
                print(f"flashrnn {backend} {cell} {heads}x{d}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
