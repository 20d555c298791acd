using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.LinearAttention;

/// <summary>Linear attention token by token, one (batch, head) per work item. The state lives as Dv
/// rows of Dk floats padded to a multiple of 16 (zero columns), so each token is one fused SIMD
/// pass over the rows: row += v_r k, then row . q. O(Dk Dv) per token; also the Step path.</summary>
internal static unsafe class RecurrentLinearAttention
{
    public static void Forward(LinearAttentionProblem p, Tensor output, Tensor? finalState, Tensor? finalNormaliser, int threads)
    {
        var s = p.Shape;
        int dk = s.KeyDim, dv = s.ValueDim, ld = HeadSequence.Padded(dk);
        float* q = CpuBackend.F32(p.Q), k = CpuBackend.F32(p.K), v = CpuBackend.F32(p.V), o = CpuBackend.F32(output);
        float* s0 = Pointer(p.InitialState), z0 = Pointer(p.InitialNormaliser), sT = Pointer(finalState), zT = Pointer(finalNormaliser);
        float scale = p.Scale, eps = p.Epsilon;
        bool normalise = p.Normalise;
        HeadSequence.ParallelOverHeads(s, threads, () => new AlignedFloats(AlignedFloats.Size((long)dv * ld, ld, ld, ld)), (b, h, ws) =>
        {
            var seq = new HeadSequence(s, b, h);
            ws.Reset();
            float* state = ws.Take((long)dv * ld), z = ws.Take(ld), qt = ws.Take(ld), kt = ws.Take(ld);
            LoadState(state, ld, s0 == null ? null : s0 + seq.StateOffset, dv, dk);
            LoadVector(z, ld, z0 == null ? null : z0 + seq.NormaliserOffset, dk);
            for (int t = 0; t < s.Steps; t++)
            {
                LoadToken(qt, seq.KeyRow(q, t), kt, seq.KeyRow(k, t), dk, scale);
                float den = 1f;
                if (normalise)
                {
                    RowKernels.Add(z, kt, ld);
                    den = RowKernels.Dot(z, qt, ld) + eps;
                }
                float* vt = seq.ValueRow(v, t), ot = seq.ValueRow(o, t);
                for (int r = 0; r < dv; r++) ot[r] = RowKernels.AddScaledDot(state + (long)r * ld, kt, vt[r], qt, ld) / den;
            }
            StoreState(state, ld, sT == null ? null : sT + seq.StateOffset, dv, dk);
            if (zT != null) new ReadOnlySpan<float>(z, dk).CopyTo(new Span<float>(zT + seq.NormaliserOffset, dk));
        });
    }

    /// <summary>Two passes per (batch, head), nothing of size T x Dk x Dv kept.
    /// Forward in time, rebuilding S_t and z_t: with q' = scale q_t, num = S_t q', den = z_t . q' + eps,
    ///   dnum = do_t / den,  dden = -(do_t . num) / den^2  (0 unnormalised),
    ///   dq_t = scale (S_t^T dnum + dden z_t);  dnum is parked in dv, dden in the workspace.
    /// Backward in time, carrying dS (seeded by dFinalState) and dz (seeded by dFinalNormaliser):
    ///   dS += dnum q'^T;  dz += dden q';  dv_t = dS k_t;  dk_t = dS^T v_t + dz.
    /// What is left in dS, dz is the gradient of the initial state and normaliser.</summary>
    public static void Backward(LinearAttentionProblem p, LinearAttentionGradients g, int threads)
    {
        var s = p.Shape;
        int dk = s.KeyDim, dv = s.ValueDim, ld = HeadSequence.Padded(dk), steps = s.Steps;
        float* q = CpuBackend.F32(p.Q), k = CpuBackend.F32(p.K), v = CpuBackend.F32(p.V);
        float* s0 = Pointer(p.InitialState), z0 = Pointer(p.InitialNormaliser);
        float* dO = CpuBackend.F32(g.DOutput), dsT = Pointer(g.DFinalState), dzT = Pointer(g.DFinalNormaliser);
        float* dq = CpuBackend.F32(g.DQ), dkOut = CpuBackend.F32(g.DK), dvOut = CpuBackend.F32(g.DV);
        float* ds0 = Pointer(g.DInitialState), dz0 = Pointer(g.DInitialNormaliser);
        float scale = p.Scale, eps = p.Epsilon;
        bool normalise = p.Normalise;
        HeadSequence.ParallelOverHeads(s, threads, () => new AlignedFloats(AlignedFloats.Size((long)dv * ld, ld, ld, ld, ld, steps)), (b, h, ws) =>
        {
            var seq = new HeadSequence(s, b, h);
            ws.Reset();
            float* state = ws.Take((long)dv * ld), z = ws.Take(ld), qt = ws.Take(ld), kt = ws.Take(ld), acc = ws.Take(ld), dden = ws.Take(steps);
            LoadState(state, ld, s0 == null ? null : s0 + seq.StateOffset, dv, dk);
            LoadVector(z, ld, z0 == null ? null : z0 + seq.NormaliserOffset, dk);
            for (int t = 0; t < steps; t++)
            {
                LoadToken(qt, seq.KeyRow(q, t), kt, seq.KeyRow(k, t), dk, scale);
                float den = 1f;
                if (normalise)
                {
                    RowKernels.Add(z, kt, ld);
                    den = RowKernels.Dot(z, qt, ld) + eps;
                }
                float* vt = seq.ValueRow(v, t), doT = seq.ValueRow(dO, t), dnum = seq.ValueRow(dvOut, t);
                new Span<float>(acc, ld).Clear();
                float doNum = 0f;
                for (int r = 0; r < dv; r++)
                {
                    dnum[r] = doT[r] / den;
                    doNum += doT[r] * RowKernels.AddScaledDotAccumulate(state + (long)r * ld, kt, vt[r], qt, acc, dnum[r], ld);
                }
                dden[t] = normalise ? -doNum / (den * den) : 0f;
                if (normalise) RowKernels.AddScaled(acc, z, dden[t], ld);
                float* dqT = seq.KeyRow(dq, t);
                for (int c = 0; c < dk; c++) dqT[c] = scale * acc[c];
            }
            // reverse pass: state now holds dS, z holds dz
            LoadState(state, ld, dsT == null ? null : dsT + seq.StateOffset, dv, dk);
            LoadVector(z, ld, dzT == null ? null : dzT + seq.NormaliserOffset, dk);
            for (int t = steps - 1; t >= 0; t--)
            {
                LoadToken(qt, seq.KeyRow(q, t), kt, seq.KeyRow(k, t), dk, scale);
                if (normalise) RowKernels.AddScaled(z, qt, dden[t], ld);
                new ReadOnlySpan<float>(z, ld).CopyTo(new Span<float>(acc, ld));
                float* vt = seq.ValueRow(v, t), dvT = seq.ValueRow(dvOut, t);
                for (int r = 0; r < dv; r++) dvT[r] = RowKernels.AddScaledDotAccumulate(state + (long)r * ld, qt, dvT[r], kt, acc, vt[r], ld);
                new ReadOnlySpan<float>(acc, dk).CopyTo(new Span<float>(seq.KeyRow(dkOut, t), dk));
            }
            StoreState(state, ld, ds0 == null ? null : ds0 + seq.StateOffset, dv, dk);
            if (dz0 != null) new ReadOnlySpan<float>(z, dk).CopyTo(new Span<float>(dz0 + seq.NormaliserOffset, dk));
        });
    }

    internal static float* Pointer(Tensor? t) => t is null ? null : CpuBackend.F32(t);

    /// <summary>rows x ld buffer from a rows x cols source (zeros when null); padding columns zeroed.</summary>
    internal static void LoadState(float* state, int ld, float* source, int rows, int cols)
    {
        new Span<float>(state, rows * ld).Clear();
        if (source == null) return;
        for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(source + (long)r * cols, cols).CopyTo(new Span<float>(state + (long)r * ld, cols));
    }

    internal static void StoreState(float* state, int ld, float* destination, int rows, int cols)
    {
        if (destination == null) return;
        for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(state + (long)r * ld, cols).CopyTo(new Span<float>(destination + (long)r * cols, cols));
    }

    internal static void LoadVector(float* vector, int ld, float* source, int n)
    {
        new Span<float>(vector, ld).Clear();
        if (source != null) new ReadOnlySpan<float>(source, n).CopyTo(new Span<float>(vector, n));
    }

    /// <summary>qt = scale q, kt = k (padding columns stay zero).</summary>
    private static void LoadToken(float* qt, float* q, float* kt, float* k, int dk, float scale)
    {
        for (int c = 0; c < dk; c++) { qt[c] = scale * q[c]; kt[c] = k[c]; }
    }
}

/// <summary>SIMD loops over one padded row (length a multiple of 16): Vector512 where the machine
/// has it, else Vector256, else scalar.</summary>
internal static unsafe class RowKernels
{
    /// <summary>row += a x; returns row . y (the updated row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float AddScaledDot(float* row, float* x, float a, float* y, int n)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var av = Vector512.Create(a);
            var dot = Vector512<float>.Zero;
            for (int j = 0; j < n; j += 16)
            {
                var r = Vector512.FusedMultiplyAdd(av, Vector512.Load(x + j), Vector512.Load(row + j));
                r.Store(row + j);
                dot = Vector512.FusedMultiplyAdd(r, Vector512.Load(y + j), dot);
            }
            return Vector512.Sum(dot);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var av = Vector256.Create(a);
            var dot = Vector256<float>.Zero;
            for (int j = 0; j < n; j += 8)
            {
                var r = Vector256.FusedMultiplyAdd(av, Vector256.Load(x + j), Vector256.Load(row + j));
                r.Store(row + j);
                dot = Vector256.FusedMultiplyAdd(r, Vector256.Load(y + j), dot);
            }
            return Vector256.Sum(dot);
        }
        float sum = 0f;
        for (int j = 0; j < n; j++) { row[j] += a * x[j]; sum += row[j] * y[j]; }
        return sum;
    }

    /// <summary>row += a x; acc += c row (the updated row); returns row . y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float AddScaledDotAccumulate(float* row, float* x, float a, float* y, float* acc, float c, int n)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var av = Vector512.Create(a);
            var cv = Vector512.Create(c);
            var dot = Vector512<float>.Zero;
            for (int j = 0; j < n; j += 16)
            {
                var r = Vector512.FusedMultiplyAdd(av, Vector512.Load(x + j), Vector512.Load(row + j));
                r.Store(row + j);
                dot = Vector512.FusedMultiplyAdd(r, Vector512.Load(y + j), dot);
                Vector512.FusedMultiplyAdd(cv, r, Vector512.Load(acc + j)).Store(acc + j);
            }
            return Vector512.Sum(dot);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var av = Vector256.Create(a);
            var cv = Vector256.Create(c);
            var dot = Vector256<float>.Zero;
            for (int j = 0; j < n; j += 8)
            {
                var r = Vector256.FusedMultiplyAdd(av, Vector256.Load(x + j), Vector256.Load(row + j));
                r.Store(row + j);
                dot = Vector256.FusedMultiplyAdd(r, Vector256.Load(y + j), dot);
                Vector256.FusedMultiplyAdd(cv, r, Vector256.Load(acc + j)).Store(acc + j);
            }
            return Vector256.Sum(dot);
        }
        float sum = 0f;
        for (int j = 0; j < n; j++) { row[j] += a * x[j]; sum += row[j] * y[j]; acc[j] += c * row[j]; }
        return sum;
    }

    public static void Add(float* y, float* x, int n) => AddScaled(y, x, 1f, n);

    /// <summary>y += a x.</summary>
    public static void AddScaled(float* y, float* x, float a, int n) =>
        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(x, n), a, new ReadOnlySpan<float>(y, n), new Span<float>(y, n));

    public static float Dot(float* x, float* y, int n) => TensorPrimitives.Dot(new ReadOnlySpan<float>(x, n), new ReadOnlySpan<float>(y, n));
}
