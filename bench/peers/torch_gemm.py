"""PyTorch (cuBLAS) matmul throughput on the GPU host, printed beside FastWeights' own figures.
Usage: python3 torch_gemm.py 4096 8192 [--layout nn,nt,tn,tt]
  -> lines 'torch gemm N^3 dtype [layout]  ms  TFLOP/s'. A layout names how A and B are stored, as in
`fastweights bench gemm --layout`: 'nt' multiplies a by b.t() with b stored [N, K] (cuBLAS takes the
transpose as a flag: no copy), 'nn' (the default, no suffix printed) is torch.matmul(a, b)."""
import sys
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
args = sys.argv[1:]
layouts = ["nn"]
if "--layout" in args:
    i = args.index("--layout")
    layouts = args[i + 1].split(",")
    del args[i:i + 2]
sizes = [int(s) for s in args] or [4096, 8192]
for dtype in (torch.bfloat16, torch.float16, torch.float32):
    for layout in layouts:
        for n in sizes:
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            # op(x) of a stored tensor: its transpose view where the layout letter is 't'
            opa = a.t() if layout[0] == "t" else a
            opb = b.t() if layout[1] == "t" else b
            for _ in range(3):
                torch.matmul(opa, opb)
            reps = max(3, int(2e13 / (2 * n ** 3)))
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            times = []
            for _ in range(5):
                start.record()
                for _ in range(reps):
                    torch.matmul(opa, opb)
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / reps)
            ms = sorted(times)[2]
            suffix = "" if layout == "nn" else " " + layout
            print(f"torch gemm {n}^3 {str(dtype).replace('torch.', '')}{suffix}  {ms:.3f} ms  {2 * n ** 3 / ms / 1e9:.1f} TFLOP/s", flush=True)
