using FastWeights.Engine;
using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Bench;

/// <summary>Delta-rule throughput in tokens/s (B*T per second): forward, forward+backward (the forward
/// keeping its intermediates for the backward; where the backend keeps some, also forward+backward
/// with the backward recomputing them), and the
/// single-token decoding step. Vulkan figures are GPU time from timestamps; CPU figures are median
/// wall time. q, k, v in <c>dtype</c> (beta f32), o, dO, dq, dk, dv in <c>outputs</c> (f32 unless
/// asked; bf16 as flash-linear-attention keeps them for bf16 inputs), dbeta f32; the algorithm as asked, or
/// with Auto both (recurrent and chunked, each asked for explicitly). Gated: alpha (f32) uniform in
/// (0.9, 1), and its gradient.</summary>
public static class DeltaRuleBench
{
    public static IEnumerable<BenchResult> Run(IBackend backend, int b, int h, int t, int d, DType dtype = DType.F32,
        DeltaRuleAlgorithm algorithm = DeltaRuleAlgorithm.Auto, bool gated = false, DType outputs = DType.F32)
    {
        using var q = Tensor.Uniform(backend, new Shape(b, t, h, d), 1, dtype: dtype);
        using var k = Tensor.Uniform(backend, new Shape(b, t, h, d), 2, -0.125f, 0.125f, dtype);
        using var v = Tensor.Uniform(backend, new Shape(b, t, h, d), 3, dtype: dtype);
        using var beta = Tensor.Uniform(backend, new Shape(b, t, h), 4, 0.1f, 0.9f);
        using var alpha = gated ? Tensor.Uniform(backend, new Shape(b, t, h), 5, 0.9f, 1f) : null;
        using var dalpha = gated ? Tensor.Empty(backend, new Shape(b, t, h)) : null;
        using var o = Tensor.Empty(backend, new Shape(b, t, h, d), outputs);
        bool vulkan = backend is VulkanBackend;
        var algorithms = algorithm == DeltaRuleAlgorithm.Auto ? [DeltaRuleAlgorithm.Recurrent, DeltaRuleAlgorithm.Chunked] : new[] { algorithm };
        foreach (var run in algorithms)
        {
            string label = $"{(gated ? "gated " : "")}delta rule {run.ToString().ToLowerInvariant()} B{b} H{h} T{t} D{d} {dtype.Name()}"
                + (outputs == DType.F32 ? "" : $" out {outputs.Name()}");
            double ms = Time(backend, () => DeltaRule.Forward(q, k, v, beta, o, alpha: alpha, algorithm: run), warmUp: vulkan ? 0 : 3);
            yield return new BenchResult(label + " fwd", backend.Name, ms, b * (double)t / (ms * 1e-3), "tok/s");
            using var dq = Tensor.Empty(backend, q.Shape, outputs);
            using var dk = Tensor.Empty(backend, k.Shape, outputs);
            using var dv = Tensor.Empty(backend, v.Shape, outputs);
            using var db = Tensor.Empty(backend, beta.Shape);
            // A training step: the forward keeps what its backward reuses (null where the backend
            // keeps nothing, then the backward recomputes).
            bool kept = false;
            ms = Time(backend, () =>
            {
                using var saved = DeltaRule.ForwardSaving(q, k, v, beta, o, alpha: alpha, algorithm: run);
                kept = saved is not null;
                DeltaRule.Backward(q, k, v, beta, o, dq, dk, dv, db, alpha: alpha, dalpha: dalpha, algorithm: run, saved: saved);
            }, warmUp: vulkan ? 0 : 3);
            yield return new BenchResult(label + " fwd+bwd", backend.Name, ms, b * (double)t / (ms * 1e-3), "tok/s");
            if (!kept) continue;
            ms = Time(backend, () =>
            {
                DeltaRule.Forward(q, k, v, beta, o, alpha: alpha, algorithm: run);
                DeltaRule.Backward(q, k, v, beta, o, dq, dk, dv, db, alpha: alpha, dalpha: dalpha, algorithm: run);
            }, warmUp: vulkan ? 0 : 3);
            yield return new BenchResult(label + " fwd+bwd recomputing", backend.Name, ms, b * (double)t / (ms * 1e-3), "tok/s");
        }
    }

    /// <summary>One decoding step (one token for every batch and head, state updated in place).</summary>
    public static BenchResult Step(IBackend backend, int b, int h, int d)
    {
        using var q = Tensor.Uniform(backend, new Shape(b, h, d), 1);
        using var k = Tensor.Uniform(backend, new Shape(b, h, d), 2, -0.1f, 0.1f);
        using var v = Tensor.Uniform(backend, new Shape(b, h, d), 3);
        using var beta = Tensor.Uniform(backend, new Shape(b, h), 4, 0.1f, 0.9f);
        using var state = Tensor.Zeros(backend, new Shape(b, h, d, d));
        using var o = Tensor.Empty(backend, new Shape(b, h, d));
        double ms = Time(backend, () => DeltaRule.Step(q, k, v, beta, state, o), repetitions: 21);
        return new BenchResult($"delta rule step B{b} H{h} D{d}", backend.Name, ms, 1e3 / ms, "steps/s");
    }

    /// <summary>Median of <paramref name="repetitions"/> runs; with <paramref name="warmUp"/> &gt; 0 (the
    /// CPU), at least that many runs and <see cref="BenchTimer.CpuWarmUpSeconds"/> first, so the timed
    /// runs meet fully optimised code rather than the first-tier JIT's.</summary>
    internal static double Time(IBackend backend, Action run, int repetitions = 5, int warmUp = 0)
    {
        if (warmUp > 0) BenchTimer.SpinUp(run, BenchTimer.CpuWarmUpSeconds, warmUp);
        if (backend is VulkanBackend vulkan)
        {
            // The profile (FASTWEIGHTS_PROFILE=1) counts the timed runs only, not the spin-up's.
            vulkan.Synchronize();
            var profiled = vulkan.Stream.KernelTimes.ToDictionary(e => e.Key, e => e.Value);
            BenchTimer.SpinUp(() => { run(); vulkan.Synchronize(); });
            vulkan.Stream.RestoreProfile(profiled);
            var times = new double[repetitions];
            var wall = new double[repetitions];
            var submits = new long[repetitions];
            for (int i = 0; i < repetitions; i++)
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp(), submitted = vulkan.Stream.SubmitCount;
                times[i] = vulkan.Stream.MeasureGpuNanoseconds(run) / 1e6;
                wall[i] = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                submits[i] = vulkan.Stream.SubmitCount - submitted;
            }
            // FASTWEIGHTS_BENCH_SAMPLES=1: every timing, with the host's wall time and the submits inside it
            // (a GPU time near the wall time over several submits means the GPU waited for the host).
            if (Environment.GetEnvironmentVariable("FASTWEIGHTS_BENCH_SAMPLES") == "1")
                Console.WriteLine("samples (gpu ms / wall ms / submits): " + string.Join(", ", times.Select((t, i) => $"{t:F3} / {wall[i]:F3} / {submits[i]}")));
            Array.Sort(times);
            return times[repetitions / 2];
        }
        return BenchTimer.MedianMs(run, repetitions);
    }
}
