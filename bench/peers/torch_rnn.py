"""cuDNN's nn.LSTM / nn.GRU on the GPU host, beside FastWeights in one run.
Usage: python3 torch_rnn.py HIDDEN [HIDDEN ...]  (batch 16, T 1024, one layer, batch_first)
Prints tokens/s (B*T per second), forward and forward+backward, f32 and bf16. The input projection
is inside cuDNN's call; FastWeights' recurrence bench times the recurrence alone."""
import sys
import torch

from cuda_timing import timed  # bench/peers, the script's own folder

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
batch, steps = 16, 1024


for hidden in [int(a) for a in sys.argv[1:]] or [768]:
    for name, cls in (("LSTM", torch.nn.LSTM), ("GRU", torch.nn.GRU)):
        for dtype in (torch.float32, torch.bfloat16):
            # Built on the device in its dtype: .to(dtype) left the weights outside cuDNN's one flat
            # buffer ("compacted at every call" warning in runs 11-21, flatten_parameters() after
            # it did not silence it), which timed that extra copy.
            m = cls(hidden, hidden, batch_first=True, device="cuda", dtype=dtype)
            m.flatten_parameters()
            x = torch.randn(batch, steps, hidden, device="cuda", dtype=dtype, requires_grad=True)
            with torch.no_grad():
                ms = timed(lambda: m(x))
            print(f"cudnn {name} hidden {hidden} B{batch} T{steps} {str(dtype)[6:]} fwd      {ms:8.3f} ms {batch * steps / ms * 1e3:12.0f} tok/s", flush=True)

            def step():
                y, _ = m(x)
                y.sum().backward()
            ms = timed(step)
            print(f"cudnn {name} hidden {hidden} B{batch} T{steps} {str(dtype)[6:]} fwd+bwd  {ms:8.3f} ms {batch * steps / ms * 1e3:12.0f} tok/s", flush=True)
