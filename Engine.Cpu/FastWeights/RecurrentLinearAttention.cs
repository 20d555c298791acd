using System.Numerics.Tensors;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.FastWeights;

/// <summary>Linear attention (sum rule) in its recurrent form on the CPU, one (batch, head) per work
/// item. The backward needs no stored states: a forward sweep recomputes S_t and z_t and gives
/// dq_t with the per-step output gradients dy_t and dn_t; a reverse sweep accumulates
/// G_t = sum_{tau >= t} dy_tau q_tau^T (+ dS_final) and g_t = sum_{tau >= t} dn_tau q_tau (+ dz_final),
/// giving dv_t = G_t k_t and dk_t = G_t^T v_t + g_t.</summary>
internal static unsafe class RecurrentLinearAttention
{
    public static void Forward(LinearAttentionProblem p, Tensor output, Tensor? finalState, Tensor? finalNormaliser, int threads)
    {
        var s = p.Shape;
        float* q = CpuBackend.F32(p.Q), k = CpuBackend.F32(p.K), v = CpuBackend.F32(p.V), o = CpuBackend.F32(output);
        float* s0 = p.InitialState is null ? null : CpuBackend.F32(p.InitialState), sT = finalState is null ? null : CpuBackend.F32(finalState);
        float* z0 = p.InitialNormaliser is null ? null : CpuBackend.F32(p.InitialNormaliser), zT = finalNormaliser is null ? null : CpuBackend.F32(finalNormaliser);
        RecurrentDeltaRule.ParallelOverHeads(s, threads, (b, h) =>
        {
            int dk = s.KeyDim, dv = s.ValueDim, size = dk * dv;
            long bh = (long)b * s.Heads + h;
            var S = new float[size];
            var z = new float[dk];
            var scaledQ = new float[dk];
            if (s0 != null) new ReadOnlySpan<float>(s0 + bh * size, size).CopyTo(S);
            if (z0 != null) new ReadOnlySpan<float>(z0 + bh * dk, dk).CopyTo(z);
            for (int t = 0; t < s.Steps; t++)
            {
                long token = ((long)b * s.Steps + t) * s.Heads + h;
                var kt = new ReadOnlySpan<float>(k + token * dk, dk);
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(q + token * dk, dk), p.Scale, scaledQ);
                float* vt = v + token * dv, ot = o + token * dv;
                TensorPrimitives.Add(z, kt, z);
                float norm = p.Normalise ? TensorPrimitives.Dot(z, scaledQ) + p.Epsilon : 1f;
                for (int r = 0; r < dv; r++)
                {
                    var row = S.AsSpan(r * dk, dk);
                    TensorPrimitives.MultiplyAdd(kt, vt[r], row, row);   // S += v k^T
                    ot[r] = TensorPrimitives.Dot(row, scaledQ) / norm;
                }
            }
            if (sT != null) S.CopyTo(new Span<float>(sT + bh * size, size));
            if (zT != null) z.CopyTo(new Span<float>(zT + bh * dk, dk));
        });
    }

    /// <summary>With y = S q', n = z . q' + eps, o = y / n (q' = scale q):
    /// dy = do / n;  dn = -(do . y) / n^2;  dq' = S^T dy + dn z;  dS_t += dy q'^T;  dz_t += dn q'.</summary>
    public static void Backward(LinearAttentionProblem p, LinearAttentionGradients g, int threads)
    {
        var s = p.Shape;
        float* q = CpuBackend.F32(p.Q), k = CpuBackend.F32(p.K), v = CpuBackend.F32(p.V), dO = CpuBackend.F32(g.DOutput);
        float* s0 = p.InitialState is null ? null : CpuBackend.F32(p.InitialState), z0 = p.InitialNormaliser is null ? null : CpuBackend.F32(p.InitialNormaliser);
        float* dST = g.DFinalState is null ? null : CpuBackend.F32(g.DFinalState), dzT = g.DFinalNormaliser is null ? null : CpuBackend.F32(g.DFinalNormaliser);
        float* dq = CpuBackend.F32(g.DQ), dk = CpuBackend.F32(g.DK), dv = CpuBackend.F32(g.DV);
        float* dS0 = g.DInitialState is null ? null : CpuBackend.F32(g.DInitialState), dz0 = g.DInitialNormaliser is null ? null : CpuBackend.F32(g.DInitialNormaliser);
        RecurrentDeltaRule.ParallelOverHeads(s, threads, (b, h) =>
        {
            int kd = s.KeyDim, vd = s.ValueDim, size = kd * vd, steps = s.Steps;
            long bh = (long)b * s.Heads + h;
            var S = new float[size];
            var z = new float[kd];
            var scaledQ = new float[kd];
            var dy = new float[steps * vd];      // per step, the gradient of y_t
            var dn = new float[steps];           // per step, the gradient of n_t
            if (s0 != null) new ReadOnlySpan<float>(s0 + bh * size, size).CopyTo(S);
            if (z0 != null) new ReadOnlySpan<float>(z0 + bh * kd, kd).CopyTo(z);
            // forward sweep: S_t, z_t, then dy_t, dn_t and dq_t
            for (int t = 0; t < steps; t++)
            {
                long token = ((long)b * steps + t) * s.Heads + h;
                var kt = new ReadOnlySpan<float>(k + token * kd, kd);
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(q + token * kd, kd), p.Scale, scaledQ);
                float* vt = v + token * vd, doT = dO + token * vd;
                TensorPrimitives.Add(z, kt, z);
                float n = p.Normalise ? TensorPrimitives.Dot(z, scaledQ) + p.Epsilon : 1f;
                var dqT = new Span<float>(dq + token * kd, kd);
                dqT.Clear();
                float doDotY = 0f;
                for (int r = 0; r < vd; r++)
                {
                    var row = S.AsSpan(r * kd, kd);
                    TensorPrimitives.MultiplyAdd(kt, vt[r], row, row);
                    float y = TensorPrimitives.Dot(row, scaledQ);
                    doDotY += doT[r] * y;
                    float dyr = doT[r] / n;
                    dy[t * vd + r] = dyr;
                    TensorPrimitives.MultiplyAdd(row, dyr, dqT, dqT);   // S^T dy
                }
                float dnT = p.Normalise ? -doDotY / (n * n) : 0f;
                dn[t] = dnT;
                if (p.Normalise) TensorPrimitives.MultiplyAdd(z, dnT, dqT, dqT);
                TensorPrimitives.Multiply(dqT, p.Scale, dqT);   // through q' = scale q
            }
            // reverse sweep: G (gradient of S_t) and gz (gradient of z_t)
            var G = new float[size];
            var gz = new float[kd];
            if (dST != null) new ReadOnlySpan<float>(dST + bh * size, size).CopyTo(G);
            if (dzT != null) new ReadOnlySpan<float>(dzT + bh * kd, kd).CopyTo(gz);
            for (int t = steps - 1; t >= 0; t--)
            {
                long token = ((long)b * steps + t) * s.Heads + h;
                var kt = new ReadOnlySpan<float>(k + token * kd, kd);
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(q + token * kd, kd), p.Scale, scaledQ);
                float* vt = v + token * vd;
                if (p.Normalise) TensorPrimitives.MultiplyAdd(scaledQ, dn[t], gz, gz);
                var dkT = new Span<float>(dk + token * kd, kd);
                gz.CopyTo(dkT);    // z_t = z_{t-1} + k_t
                for (int r = 0; r < vd; r++)
                {
                    var gRow = G.AsSpan(r * kd, kd);
                    TensorPrimitives.MultiplyAdd(scaledQ, dy[t * vd + r], gRow, gRow);
                    dv[token * vd + r] = TensorPrimitives.Dot(gRow, kt);
                    TensorPrimitives.MultiplyAdd(gRow, vt[r], dkT, dkT);
                }
            }
            if (dS0 != null) G.CopyTo(new Span<float>(dS0 + bh * size, size));
            if (dz0 != null) gz.CopyTo(new Span<float>(dz0 + bh * kd, kd));
        });
    }
}
