using FastWeights.Engine;
using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Bench;

/// <summary>Recurrent-cell throughput in tokens/s (B*T per second) for the recurrence alone (the input
/// projection x W^T is one GEMM the caller runs, timed separately by the GEMM bench), forward and,
/// where the backend has it, forward+backward.</summary>
public static class RnnBench
{
    public static IEnumerable<BenchResult> Run(IBackend backend, RnnCell cell, int hidden, int heads, int batch, int steps)
    {
        int dh = hidden / heads, gates = cell.Gates();
        using var x = Tensor.Uniform(backend, new Shape(batch, steps, gates * hidden), 1);
        using var r = Tensor.Uniform(backend, new Shape(heads, gates * dh, dh), 2, -1f / MathF.Sqrt(dh), 1f / MathF.Sqrt(dh));
        using var bias = Tensor.Uniform(backend, new Shape(gates * hidden), 3, -0.1f, 0.1f);
        using var y = Tensor.Empty(backend, new Shape(batch, steps, hidden));
        var problem = Rnn.Forward(cell, x, r, bias, y);
        using var saved = Tensor.Empty(backend, problem.SavedShape);
        string label = $"{cell} hidden {hidden} heads {heads} B{batch} T{steps}";
        double ms = DeltaRuleBench.Time(backend, () => Rnn.Forward(cell, x, r, bias, y, null, null, saved), 3);
        yield return new BenchResult(label + " fwd", backend.Name, ms, batch * (double)steps / (ms * 1e-3), "tok/s");
        if (backend is VulkanBackend) yield break;
        using var dx = Tensor.Empty(backend, x.Shape);
        using var dr = Tensor.Empty(backend, r.Shape);
        using var db = Tensor.Empty(backend, bias.Shape);
        ms = DeltaRuleBench.Time(backend, () => { Rnn.Forward(cell, x, r, bias, y, null, null, saved); Rnn.Backward(problem, y, saved, y, dx, dr, db); }, 3);
        yield return new BenchResult(label + " fwd+bwd", backend.Name, ms, batch * (double)steps / (ms * 1e-3), "tok/s");
        if (heads != 1) yield break;
        // What nn.LSTM / nn.GRU (input size = hidden) time besides the recurrence: the input projection
        // x_in [B*T, hidden] W_ih^T and, in the backward, dW_ih = dpre^T x_in and dx_in = dpre W_ih.
        using var xIn = Tensor.Uniform(backend, new Shape(batch * steps, hidden), 4);
        using var wIh = Tensor.Uniform(backend, new Shape(gates * hidden, hidden), 5, -1f / MathF.Sqrt(hidden), 1f / MathF.Sqrt(hidden));
        using var dwIh = Tensor.Empty(backend, wIh.Shape);
        using var dxIn = Tensor.Empty(backend, xIn.Shape);
        using var pre = x.Reshape(new Shape(batch * steps, gates * hidden));
        using var dPre = dx.Reshape(pre.Shape);
        ms = DeltaRuleBench.Time(backend, () =>
        {
            Gemm.Forward(xIn, wIh, pre, transposeB: true);
            Rnn.Forward(cell, x, r, bias, y, null, null, saved);
            Rnn.Backward(problem, y, saved, y, dx, dr, db);
            Gemm.Forward(dPre, xIn, dwIh, transposeA: true);
            Gemm.Forward(dPre, wIh, dxIn);
        }, 3);
        yield return new BenchResult(label + " fwd+bwd +input projection", backend.Name, ms, batch * (double)steps / (ms * 1e-3), "tok/s");
    }
}
