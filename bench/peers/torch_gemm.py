"""PyTorch (cuBLAS) matmul throughput on the GPU host, printed beside FastWeights' own figures.
Usage: python3 torch_gemm.py 4096 8192   -> lines 'torch gemm N^3 dtype  ms  TFLOP/s'."""
import sys
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
sizes = [int(s) for s in sys.argv[1:]] or [4096, 8192]
for dtype in (torch.bfloat16, torch.float16, torch.float32):
    for n in sizes:
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        for _ in range(3):
            torch.matmul(a, b)
        reps = max(3, int(2e13 / (2 * n ** 3)))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(5):
            start.record()
            for _ in range(reps):
                torch.matmul(a, b)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / reps)
        ms = sorted(times)[2]
        print(f"torch gemm {n}^3 {str(dtype).replace('torch.', '')}  {ms:.3f} ms  {2 * n ** 3 / ms / 1e9:.1f} TFLOP/s", flush=True)
