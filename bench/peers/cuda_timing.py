"""Shared by the peer scripts: median GPU time of a callable with CUDA events."""
import time

import torch

# The H200 drops its SM clock to 345-600 MHz after about a second without work and needs a few
# hundred ms of load to return to 1980 MHz (bench/results/2026-12-01-h200-run15-smi.csv), so
# every measurement first keeps the GPU busy this long (ours do the same: BenchTimer.SpinUpSeconds).
SPIN_UP_SECONDS = 0.5


def spin_up(fn, warmup=3):
    """warmup untimed calls, then untimed calls (synchronised each) for SPIN_UP_SECONDS."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start_time = time.perf_counter()
    while time.perf_counter() - start_time < SPIN_UP_SECONDS:
        fn()
        torch.cuda.synchronize()


def timed(fn, reps=10, warmup=3):
    """Milliseconds, median of reps timed calls after spin_up(fn, warmup)."""
    spin_up(fn, warmup)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]
