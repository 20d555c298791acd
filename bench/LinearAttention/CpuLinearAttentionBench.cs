using FastWeights.Engine;
using FastWeights.Engine.Cpu;
using FastWeights.Engine.Ops;

namespace FastWeights.Bench;

/// <summary>Linear attention on the CPU backend: the recurrent and the chunked algorithm, forward
/// alone and forward + backward, unnormalised, Dk = Dv = d, with an initial state and the final
/// state returned (as in training on a stream). Rate: tokens (B T) per second, median of 5.</summary>
public static class CpuLinearAttentionBench
{
    /// <param name="threads">0: the shared backend (all cores); else a backend with that many threads.</param>
    public static IEnumerable<BenchResult> Run(int b, int h, int t, int d, int threads = 0)
    {
        var cpu = threads <= 0 ? CpuBackend.Shared : new CpuBackend { Threads = threads };
        var keys = new Shape(b, t, h, d);
        var state = new Shape(b, h, d, d);
        using var q = Tensor.Uniform(cpu, keys, 1, 0f, 1f);
        using var k = Tensor.Uniform(cpu, keys, 2, 0f, 1f);
        using var v = Tensor.Uniform(cpu, keys, 3);
        using var s0 = Tensor.Uniform(cpu, state, 4);
        using var sT = Tensor.Empty(cpu, state);
        using var o = Tensor.Empty(cpu, keys);
        using var dO = Tensor.Uniform(cpu, keys, 5);
        using var dq = Tensor.Empty(cpu, keys);
        using var dk = Tensor.Empty(cpu, keys);
        using var dv = Tensor.Empty(cpu, keys);
        using var dS0 = Tensor.Empty(cpu, state);
        float scale = 1f / MathF.Sqrt(d);
        // tiered JIT: run every kernel for a while first, so the timed calls see optimised code
        var warmUp = System.Diagnostics.Stopwatch.StartNew();
        while (warmUp.ElapsedMilliseconds < 300)
            foreach (var algorithm in new[] { LinearAttentionAlgorithm.Recurrent, LinearAttentionAlgorithm.Chunked })
            {
                LinearAttention.Forward(q, k, v, o, s0, sT, scale: scale, algorithm: algorithm);
                LinearAttention.Backward(q, k, v, dO, dq, dk, dv, s0, null, dS0, scale: scale, algorithm: algorithm);
            }
        var results = new List<BenchResult>();
        foreach (var algorithm in new[] { LinearAttentionAlgorithm.Recurrent, LinearAttentionAlgorithm.Chunked })
        {
            void Forward() => LinearAttention.Forward(q, k, v, o, s0, sT, scale: scale, algorithm: algorithm);
            void Backward() => LinearAttention.Backward(q, k, v, dO, dq, dk, dv, s0, null, dS0, scale: scale, algorithm: algorithm);
            string name = $"linattn {algorithm.ToString().ToLowerInvariant()} B{b} H{h} T{t} D{d} x{cpu.Threads}";
            double forward = DeltaRuleBench.Time(cpu, Forward, warmUp: 3);
            results.Add(new BenchResult($"{name} fwd", cpu.Name, forward, b * (double)t / (forward * 1e-3), "tok/s"));
            double both = DeltaRuleBench.Time(cpu, () => { Forward(); Backward(); }, warmUp: 3);
            results.Add(new BenchResult($"{name} fwd+bwd", cpu.Name, both, b * (double)t / (both * 1e-3), "tok/s"));
        }
        return results;
    }
}
