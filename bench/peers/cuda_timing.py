"""Shared by the peer scripts: median GPU time of a callable with CUDA events."""
import torch


def timed(fn, reps=10, warmup=3):
    """Milliseconds, median of reps timed calls after warmup untimed ones (synchronised each)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]
