using FastWeights.Engine;
using FastWeights.Engine.Cpu;
using FastWeights.Engine.Ops;

namespace FastWeights.Bench;

/// <summary>CPU backend GEMM throughput: C = A B, f32, N x N x N, median wall time of one
/// <see cref="Gemm.Forward"/> on <see cref="CpuBackend.Shared"/>; the rate is GFLOP/s (2 N^3 flops).
/// Compare with the TorchSharp peer (peers/torchsharp-cpu: run.sh gemm N) in the same session.</summary>
public static class CpuGemmBench
{
    public static IEnumerable<BenchResult> Run(int[] sizes, int repetitions = 7)
    {
        var backend = CpuBackend.Shared;
        foreach (int n in sizes)
        {
            using var a = Tensor.Uniform(backend, new Shape(n, n), 1);
            using var b = Tensor.Uniform(backend, new Shape(n, n), 2);
            using var c = Tensor.Empty(backend, new Shape(n, n));
            double flops = 2.0 * n * n * (double)n;
            double ms = BenchTimer.MedianMs(() => Gemm.Forward(a, b, c), repetitions);
            yield return new BenchResult($"gemm {n}^3 f32 (cpu blocked)", backend.Name, ms, flops / (ms * 1e-3) / 1e9, "GFLOP/s");
        }
    }
}
