using System.Diagnostics;

namespace FastWeights.Bench;

/// <summary>Timing helpers shared by every benchmark: warm up once, then report the median of
/// several repetitions (medians resist the noise of a shared machine).</summary>
public static class BenchTimer
{
    /// <summary>GPU benchmarks keep the device busy this long before timing: the H200 drops its SM
    /// clock to 345-600 MHz after about a second without work and needs a few hundred ms of load to
    /// return to 1980 MHz (bench/results/2026-12-01-h200-run15-smi.csv; the peer scripts do the same,
    /// bench/peers/cuda_timing.py).</summary>
    public const double SpinUpSeconds = 0.5;

    /// <summary>CPU benchmarks warm up this long: the JIT moves a method to its optimised tier only
    /// after about 30 calls and a quiet spell of 100 ms without new first-tier compilations, so a few
    /// warm-up calls of a short op are not enough (the chunked CPU delta rule's forward at B2 H4 T1024
    /// D64 timed 27-46 ms after 3 warm-up calls, 4.2 ms with DOTNET_TieredCompilation=0;
    /// bench/results/2026-12-05-cpu-xeon-delta.txt).</summary>
    public const double CpuWarmUpSeconds = 1.0;

    /// <summary>Runs <paramref name="step"/> (which must end with a sync point) once, then again until
    /// <paramref name="seconds"/> (<see cref="SpinUpSeconds"/> by default) have passed since that first
    /// run and at least <paramref name="minRuns"/> times more. On a GPU the first run may tune GEMM
    /// tiles or create pipelines (seconds); the runs right after tuning were up to 5x slower on the
    /// H200 (bench/results/2026-12-01-h200-run16.txt: 181, 61, 38.6 ms), so they must not be the timed
    /// ones.</summary>
    public static void SpinUp(Action step, double seconds = SpinUpSeconds, int minRuns = 2)
    {
        step();
        long start = Stopwatch.GetTimestamp();
        int runs = 0;
        do { step(); runs++; } while (runs < minRuns || Stopwatch.GetElapsedTime(start).TotalSeconds < seconds);
    }

    /// <summary>Median wall time in milliseconds of <paramref name="step"/> after one warm-up call.
    /// For GPU work the step must end with a sync point so the time covers the work.</summary>
    public static double MedianMs(Action step, int repetitions = 5)
    {
        step();
        var times = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            long start = Stopwatch.GetTimestamp();
            step();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        Array.Sort(times);
        return times[repetitions / 2];
    }
}

/// <summary>One measured figure: what was run, where, and the rate.</summary>
public sealed record BenchResult(string Case, string Backend, double Milliseconds, double Rate, string Unit)
{
    public override string ToString() => $"{Case,-44} {Backend,-10} {Milliseconds,10:F3} ms {Rate,14:F1} {Unit}";
}
