using FastWeights.Engine;
using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Bench;

/// <summary>GEMM throughput: C = op(A) op(B) at N x N x N on any backend and input dtype, op a
/// transpose where the layout says so ("nn": A [M, K] and B [K, N] as stored; "nt": B stored [N, K],
/// the layout of x W^T in a linear layer; "tn": A stored [K, M]; "tt"). On Vulkan the time is GPU
/// time from timestamps around a batch of back-to-back GEMMs (no submit or download inside the
/// measured span); on the CPU it is the median wall time of one call.</summary>
public static class GemmBench
{
    public static readonly string[] Layouts = ["nn", "nt", "tn", "tt"];

    public static BenchResult Run(IBackend backend, int n, DType dtype, int repetitions = 5, string layout = "nn")
    {
        if (!Layouts.Contains(layout)) throw new ArgumentException($"bench gemm: layout '{layout}': expected one of {string.Join(", ", Layouts)}");
        bool transposeA = layout[0] == 't', transposeB = layout[1] == 't';
        using var a = Tensor.Uniform(backend, new Shape(n, n), 1, dtype: dtype);
        using var b = Tensor.Uniform(backend, new Shape(n, n), 2, dtype: dtype);
        using var c = Tensor.Empty(backend, new Shape(n, n));
        double flops = 2.0 * n * n * (double)n;
        double ms;
        if (backend is VulkanBackend vulkan)
        {
            int perMeasure = Math.Max(1, (int)Math.Min(50, 2e12 / flops));
            BenchTimer.SpinUp(() => { Gemm.Forward(a, b, c, transposeA, transposeB); vulkan.Synchronize(); });
            var times = new double[repetitions];
            for (int r = 0; r < repetitions; r++)
                times[r] = vulkan.Stream.MeasureGpuNanoseconds(() => { for (int i = 0; i < perMeasure; i++) Gemm.Forward(a, b, c, transposeA, transposeB); }) / 1e6 / perMeasure;
            if (Environment.GetEnvironmentVariable("FASTWEIGHTS_BENCH_SAMPLES") == "1")
                Console.WriteLine($"samples gemm {n}^3 {dtype.Name()}{LayoutLabel(layout)} (ms per GEMM): {string.Join(" ", times.Select(t => t.ToString("F3")))}");
            Array.Sort(times);
            ms = times[repetitions / 2];
        }
        else
        {
            ms = BenchTimer.MedianMs(() => Gemm.Forward(a, b, c, transposeA, transposeB), repetitions);
        }
        string kernel = backend is VulkanBackend vb ? vb.GemmKernelFor(dtype, n, n, n) + (dtype == DType.F32 ? "" : $" w{vb.CoopMatSubgroups}") : "blocked";
        return new BenchResult($"gemm {n}^3 {dtype.Name()}{LayoutLabel(layout)} ({kernel})", backend.Name, ms, flops / (ms * 1e-3) / 1e9, "GFLOP/s");
    }

    private static string LayoutLabel(string layout) => layout == "nn" ? "" : " " + layout;

    /// <summary>Records <paramref name="count"/> small GEMMs and reports how many submits they took.</summary>
    public static (long Gemms, long Submits, long Dispatches) CountSubmits(VulkanBackend backend, int count = 1000, int size = 32)
    {
        using var a = Tensor.Uniform(backend, new Shape(size, size), 1);
        using var b = Tensor.Uniform(backend, new Shape(size, size), 2);
        using var c = Tensor.Empty(backend, new Shape(size, size));
        backend.Synchronize();
        long submits0 = backend.Stream.SubmitCount, dispatches0 = backend.Stream.DispatchCount;
        for (int i = 0; i < count; i++) Gemm.Forward(a, b, c, beta: i == 0 ? 0f : 1f);
        backend.Synchronize();
        return (count, backend.Stream.SubmitCount - submits0, backend.Stream.DispatchCount - dispatches0);
    }
}
