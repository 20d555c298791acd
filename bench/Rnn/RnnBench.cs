using FastWeights.Engine;
using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Bench;

/// <summary>Recurrent-cell throughput in tokens/s (B*T per second) for the recurrence alone (the input
/// projection x W^T is one GEMM the caller runs, timed separately by the GEMM bench), forward (with the
/// saved activations a training step keeps) and forward+backward (BPTT, dR and the bias gradient);
/// on Vulkan in GPU time from timestamps. On Vulkan, heads of up to 128 units are timed on both paths:
/// "fused" (one dispatch for all steps) and "per-step" (one dispatch per step, the large-head path).
/// Forward+backward is also timed with the input projection and its gradients (weight, second
/// bias, input), which is what nn.LSTM / nn.GRU (input size = hidden) time when the input requires
/// grad. <paramref name="projection"/> is the dtype of the projection GEMMs' inputs (x_in, W_ih and
/// the pre-activation gradient, converted after the backward; f32 accumulation and outputs):
/// f16/bf16 run on the tensor-core GEMM where the device has one, as a bf16 nn.LSTM does. The
/// recurrence itself reads f32 R and pre-activations.</summary>
public static class RnnBench
{
    public static IEnumerable<BenchResult> Run(IBackend backend, RnnCell cell, int hidden, int heads, int batch, int steps, DType projection = DType.F32)
    {
        int dh = hidden / heads, gates = cell.Gates();
        using var x = Tensor.Uniform(backend, new Shape(batch, steps, gates * hidden), 1);
        using var r = Tensor.Uniform(backend, new Shape(heads, gates * dh, dh), 2, -1f / MathF.Sqrt(dh), 1f / MathF.Sqrt(dh));
        using var bias = Tensor.Uniform(backend, new Shape(gates * hidden), 3, -0.1f, 0.1f);
        using var y = Tensor.Empty(backend, new Shape(batch, steps, hidden));
        using var dy = Tensor.Uniform(backend, y.Shape, 4, -0.01f, 0.01f);
        using var dx = Tensor.Empty(backend, x.Shape);
        using var dr = Tensor.Empty(backend, r.Shape);
        using var db = Tensor.Empty(backend, bias.Shape);
        var problem = Rnn.Forward(cell, x, r, bias, y);
        using var saved = Tensor.Empty(backend, problem.SavedShape);
        var vulkan = backend as VulkanBackend;
        int keep = vulkan?.FusedRnnMaxHeadDim ?? 0;
        // On the CPU, a few untimed runs first (the first calls run the JIT's first tier, which made
        // "rec" read slower than "+proj"), and the median of 9 runs, not 3: the shared VM's load moves
        // single runs by tens of per cent.
        int warmUp = vulkan is null ? 5 : 0, runs = vulkan is null ? 9 : 3;
        var paths = vulkan is null ? [("", keep)] : dh <= 128 ? new[] { (" fused", 128), (" per-step", 0) } : [(" per-step", 0)];
        var results = new List<BenchResult>();
        try
        {
            foreach (var (path, fusedMax) in paths)
            {
                if (vulkan is not null) vulkan.FusedRnnMaxHeadDim = fusedMax;
                // the per-step kernels say whether they run one dispatch per step or all steps in one
                string kernel = vulkan is not null && fusedMax == 0 ? " " + vulkan.RnnKernelFor(cell, batch, heads, dh) : path;
                string label = $"{cell} hidden {hidden} heads {heads} (Dh {dh}{kernel}) B{batch} T{steps}";
                double ms = DeltaRuleBench.Time(backend, () => Rnn.Forward(cell, x, r, bias, y, null, null, saved), runs, warmUp);
                results.Add(new BenchResult(label + " fwd", backend.Name, ms, batch * (double)steps / (ms * 1e-3), "tok/s"));
                ms = DeltaRuleBench.Time(backend, () => { Rnn.Forward(cell, x, r, bias, y, null, null, saved); Rnn.Backward(problem, y, saved, dy, dx, dr, db); }, runs, warmUp);
                results.Add(new BenchResult(label + " fwd+bwd", backend.Name, ms, batch * (double)steps / (ms * 1e-3), "tok/s"));
                // What nn.LSTM/GRU time with an input that requires grad (the TorchSharp peer's
                // x.requires_grad_(), loss y.sum()): x_in [B*T, hidden] W_ih^T before; after the
                // recurrence's backward dW_ih = dpre^T x_in, db_ih = 1^T dpre (its second bias) and
                // dx_in = dpre W_ih. Nothing more: no initial or final states, no state gradients.
                using var xIn = Tensor.Uniform(backend, new Shape(batch * steps, hidden), 4, dtype: projection);
                using var wIh = Tensor.Uniform(backend, new Shape(gates * hidden, hidden), 5, -1f / MathF.Sqrt(hidden), 1f / MathF.Sqrt(hidden), dtype: projection);
                using var dwIh = Tensor.Empty(backend, wIh.Shape);
                using var dbIh = Tensor.Empty(backend, new Shape(1, gates * hidden));
                using var ones = Tensor.Full(backend, new Shape(1, batch * steps), 1f);
                using var dxIn = Tensor.Empty(backend, xIn.Shape);
                using var pre = x.Reshape(new Shape(batch * steps, gates * hidden));
                using var dPre = dx.Reshape(pre.Shape);
                using var dPreHalf = projection == DType.F32 ? null : Tensor.Empty(backend, pre.Shape, projection);
                ms = DeltaRuleBench.Time(backend, () =>
                {
                    Gemm.Forward(xIn, wIh, pre, transposeB: true);
                    Rnn.Forward(cell, x, r, bias, y, null, null, saved);
                    Rnn.Backward(problem, y, saved, dy, dx, dr, db);
                    if (dPreHalf is not null) Pointwise.Convert(dPre, dPreHalf);
                    Gemm.Forward(dPreHalf ?? dPre, xIn, dwIh, transposeA: true);
                    Gemm.Forward(ones, dPre, dbIh);
                    Gemm.Forward(dPreHalf ?? dPre, wIh, dxIn);
                }, runs, warmUp);
                string gemms = projection == DType.F32 ? "" : $" ({projection.Name()} GEMMs)";
                results.Add(new BenchResult(label + " fwd+bwd +input projection" + gemms, backend.Name, ms, batch * (double)steps / (ms * 1e-3), "tok/s"));
            }
        }
        finally
        {
            if (vulkan is not null) vulkan.FusedRnnMaxHeadDim = keep;
        }
        return results;
    }
}
