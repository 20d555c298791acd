"""Device-to-device copy rate on the GPU host (the memory-bound floor for the scan bench), with
CUDA events: one 1 GiB f32 tensor copied into another, median of 10; bytes read + written."""
import torch

from cuda_timing import timed

n = 1 << 28                       # 2^28 floats = 1 GiB
a = torch.rand(n, device="cuda")
b = torch.empty_like(a)
ms = timed(lambda: b.copy_(a))
print(f"torch copy 1 GiB  {ms:.3f} ms  {2 * 4 * n / ms / 1e9:.1f} TB/s (read + write)", flush=True)
