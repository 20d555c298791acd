using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using FastWeights.Engine.Ops;
using static FastWeights.Engine.Cpu.LinearAttention.ChunkMatMul;
using static FastWeights.Engine.Cpu.LinearAttention.RecurrentLinearAttention;

namespace FastWeights.Engine.Cpu.LinearAttention;

/// <summary>Linear attention in chunks of <see cref="ChunkSize"/> tokens, one (batch, head) per
/// work item, every step a small matrix product (<see cref="ChunkMatMul"/>). Per chunk, with the
/// chunk's rows Q' = scale Q, K, V (C x D), the chunk-start state S_0 and P = (Q' K^T) ⊙ M
/// (M causal, diagonal included):
///   Num = Q' S_0^T + P V;  den = Q' z_0 + P 1 + eps;  O = Num / den (row-wise; den = 1 unnormalised)
///   S_C = S_0 + V^T K;  z_C = z_0 + K^T 1.
/// The state is kept transposed (S^T: Dk x Dv) so both products run along Dv. Internal rows are
/// padded to multiples of 16 with zero columns; a short last chunk is handled by the causal mask
/// (columns past its end are never unmasked) and by product depths of its real length.</summary>
internal static unsafe class ChunkedLinearAttention
{
    /// <summary>64 tokens: P is 64 x 64 (16 KB), and with Dk, Dv up to 256 a chunk's Q, K, V stay
    /// within L2; the intra-chunk work (C^2 D) stays below the state work (C D^2) for D &gt;= 64.</summary>
    public const int ChunkSize = 64;
    private const int C = ChunkSize;

    public static void Forward(LinearAttentionProblem p, Tensor output, Tensor? finalState, Tensor? finalNormaliser, int threads)
    {
        var s = p.Shape;
        int dk = s.KeyDim, dv = s.ValueDim, ldk = HeadSequence.Padded(dk), ldv = HeadSequence.Padded(dv);
        float* q = CpuBackend.F32(p.Q), k = CpuBackend.F32(p.K), v = CpuBackend.F32(p.V), o = CpuBackend.F32(output);
        float* s0 = Pointer(p.InitialState), z0 = Pointer(p.InitialNormaliser), sT = Pointer(finalState), zT = Pointer(finalNormaliser);
        float scale = p.Scale, eps = p.Epsilon;
        bool normalise = p.Normalise;
        long size = AlignedFloats.Size((long)dk * ldv, ldk, C * ldk, C * ldk, C * ldv, (long)dk * C, C * C, C * ldv);
        HeadSequence.ParallelOverHeads(s, threads, () => new AlignedFloats(size), (b, h, ws) =>
        {
            var seq = new HeadSequence(s, b, h);
            ws.Reset();
            float* stateT = ws.Take((long)dk * ldv), z = ws.Take(ldk);
            float* qc = ws.Take(C * ldk), kc = ws.Take(C * ldk), vc = ws.Take(C * ldv), kt = ws.Take((long)dk * C), pm = ws.Take(C * C), num = ws.Take(C * ldv);
            LoadStateTransposed(stateT, ldv, s0 == null ? null : s0 + seq.StateOffset, dv, dk);
            LoadVector(z, ldk, z0 == null ? null : z0 + seq.NormaliserOffset, dk);
            for (int c0 = 0; c0 < s.Steps; c0 += C)
            {
                int n = Math.Min(C, s.Steps - c0);
                Pack(seq, q, qc, ldk, c0, n, dk, scale, keys: true);
                Pack(seq, k, kc, ldk, c0, n, dk, 1f, keys: true);
                Pack(seq, v, vc, ldv, c0, n, dv, 1f, keys: false);
                Transpose(kc, ldk, kt, C, n, dk);
                IntraChunk(qc, ldk, kt, vc, ldv, stateT, num, pm, n, dk);
                for (int i = 0; i < n; i++)
                {
                    float den = normalise ? Denominator(qc + i * ldk, z, pm + i * C, i, dk, eps) : 1f;
                    float* oi = seq.ValueRow(o, c0 + i), numI = num + i * ldv;
                    for (int r = 0; r < dv; r++) oi[r] = numI[r] / den;
                }
                // S^T += K^T V; z += K^T 1
                Multiply(kt, C, vc, ldv, stateT, ldv, dk, ldv, n, accumulate: true);
                if (normalise) for (int i = 0; i < n; i++) TensorPrimitives.Add(new ReadOnlySpan<float>(z, dk), new ReadOnlySpan<float>(kc + i * ldk, dk), new Span<float>(z, dk));
            }
            if (sT != null) Transpose(stateT, ldv, sT + seq.StateOffset, dk, dk, dv);
            if (zT != null) new ReadOnlySpan<float>(z, dk).CopyTo(new Span<float>(zT + seq.NormaliserOffset, dk));
        });
    }

    /// <summary>Reverse sweep over chunks carrying dS (Dv x Dk, seeded by dFinalState) and dz; the
    /// chunk-start states come from a forward pass that keeps one S per chunk. Per chunk, with
    /// dNum = dO / den, dden = -(dO . Num) / den^2 (row-wise; dNum = dO, dden = 0 unnormalised) and
    /// G = (dNum V^T + dden 1^T) ⊙ M, the gradient of P:
    ///   dQ' = dNum S_0 + G K + dden z_0^T;  dq = scale dQ'
    ///   dK = G^T Q' + V dS + 1 dz^T;  dV = P^T dNum + K dS^T
    ///   dS &lt;- dS + dNum^T Q';  dz &lt;- dz + Q'^T dden   (the gradient reaching S_0, z_0).</summary>
    public static void Backward(LinearAttentionProblem p, LinearAttentionGradients g, int threads)
    {
        var s = p.Shape;
        int dk = s.KeyDim, dv = s.ValueDim, ldk = HeadSequence.Padded(dk), ldv = HeadSequence.Padded(dv);
        int chunks = (s.Steps + C - 1) / C;
        float* q = CpuBackend.F32(p.Q), k = CpuBackend.F32(p.K), v = CpuBackend.F32(p.V);
        float* s0 = Pointer(p.InitialState), z0 = Pointer(p.InitialNormaliser);
        float* dO = CpuBackend.F32(g.DOutput), dsT = Pointer(g.DFinalState), dzT = Pointer(g.DFinalNormaliser);
        float* dqOut = CpuBackend.F32(g.DQ), dkOut = CpuBackend.F32(g.DK), dvOut = CpuBackend.F32(g.DV);
        float* ds0 = Pointer(g.DInitialState), dz0 = Pointer(g.DInitialNormaliser);
        float scale = p.Scale, eps = p.Epsilon;
        bool normalise = p.Normalise;
        long stateSize = (long)dv * ldk, stateTSize = (long)dk * ldv;
        long size = AlignedFloats.Size(chunks * stateSize, (long)chunks * ldk, stateTSize, ldk,
            C * ldk, C * ldk, C * ldv, C * ldv, (long)dk * C, (long)dv * C, C * C, C * C, C * C, C * C, C * ldv,
            stateSize, stateSize, stateTSize, (long)dv * C, C * ldk, C * ldk, C * ldv, C, C);
        HeadSequence.ParallelOverHeads(s, threads, () => new AlignedFloats(size), (b, h, ws) =>
        {
            var seq = new HeadSequence(s, b, h);
            ws.Reset();
            float* states = ws.Take(chunks * stateSize), zs = ws.Take((long)chunks * ldk), stateT = ws.Take(stateTSize), z = ws.Take(ldk);
            float* qc = ws.Take(C * ldk), kc = ws.Take(C * ldk), vc = ws.Take(C * ldv), dnum = ws.Take(C * ldv);
            float* kt = ws.Take((long)dk * C), vt = ws.Take((long)dv * C), pm = ws.Take(C * C), pt = ws.Take(C * C), gm = ws.Take(C * C), gt = ws.Take(C * C), num = ws.Take(C * ldv);
            float* state = ws.Take(stateSize), dS = ws.Take(stateSize), dST = ws.Take(stateTSize), dnumT = ws.Take((long)dv * C);
            float* dq = ws.Take(C * ldk), dk_ = ws.Take(C * ldk), dv_ = ws.Take(C * ldv), den = ws.Take(C), dden = ws.Take(C);

            // forward: keep S (Dv x Dk here, as dQ' = dNum S_0 wants it) and z at the start of every chunk
            LoadState(state, ldk, s0 == null ? null : s0 + seq.StateOffset, dv, dk);
            LoadVector(z, ldk, z0 == null ? null : z0 + seq.NormaliserOffset, dk);
            for (int c = 0; c < chunks; c++)
            {
                int c0 = c * C, n = Math.Min(C, s.Steps - c0);
                new ReadOnlySpan<float>(state, (int)stateSize).CopyTo(new Span<float>(states + c * stateSize, (int)stateSize));
                new ReadOnlySpan<float>(z, ldk).CopyTo(new Span<float>(zs + c * ldk, ldk));
                Pack(seq, k, kc, ldk, c0, n, dk, 1f, keys: true);
                Pack(seq, v, vc, ldv, c0, n, dv, 1f, keys: false);
                // S += V^T K
                Transpose(vc, ldv, vt, C, n, dv);
                Multiply(vt, C, kc, ldk, state, ldk, dv, ldk, n, accumulate: true);
                if (normalise) for (int i = 0; i < n; i++) TensorPrimitives.Add(new ReadOnlySpan<float>(z, dk), new ReadOnlySpan<float>(kc + i * ldk, dk), new Span<float>(z, dk));
            }

            // backward: dS in the state's layout (Dv x Dk, padded), dz
            LoadState(dS, ldk, dsT == null ? null : dsT + seq.StateOffset, dv, dk);
            LoadVector(z, ldk, dzT == null ? null : dzT + seq.NormaliserOffset, dk); // z now holds dz
            new Span<float>(stateT, (int)stateTSize).Clear();
            for (int c = chunks - 1; c >= 0; c--)
            {
                int c0 = c * C, n = Math.Min(C, s.Steps - c0);
                float* chunkState = states + c * stateSize, chunkZ = zs + c * ldk;
                Pack(seq, q, qc, ldk, c0, n, dk, scale, keys: true);
                Pack(seq, k, kc, ldk, c0, n, dk, 1f, keys: true);
                Pack(seq, v, vc, ldv, c0, n, dv, 1f, keys: false);
                Pack(seq, dO, dnum, ldv, c0, n, dv, 1f, keys: false);
                Transpose(kc, ldk, kt, C, n, dk);
                Transpose(vc, ldv, vt, C, n, dv);
                // P is needed either way; Num only for the normaliser's gradient
                if (normalise)
                {
                    Transpose(chunkState, ldk, stateT, ldv, dv, dk);
                    IntraChunk(qc, ldk, kt, vc, ldv, stateT, num, pm, n, dk);
                }
                else CausalScores(qc, ldk, kt, pm, n, dk);
                for (int i = 0; i < n; i++)
                {
                    if (!normalise) { dden[i] = 0f; continue; }
                    den[i] = Denominator(qc + i * ldk, chunkZ, pm + i * C, i, dk, eps);
                    var dnumI = new Span<float>(dnum + i * ldv, dv);
                    dden[i] = -TensorPrimitives.Dot(dnumI, new ReadOnlySpan<float>(num + i * ldv, dv)) / (den[i] * den[i]);
                    TensorPrimitives.Divide(dnumI, den[i], dnumI);
                }
                // G = (dNum V^T + dden 1^T) ⊙ M
                Multiply(dnum, ldv, vt, C, gm, C, n, C, dv, accumulate: false);
                for (int i = 0; i < n; i++)
                {
                    float* gi = gm + i * C;
                    for (int j = 0; j <= i; j++) gi[j] += dden[i];
                    new Span<float>(gi + i + 1, C - i - 1).Clear();
                }
                // dQ' = dNum S_0 + G K + dden z_0^T
                Multiply(dnum, ldv, chunkState, ldk, dq, ldk, n, ldk, dv, accumulate: false);
                Multiply(gm, C, kc, ldk, dq, ldk, n, ldk, n, accumulate: true);
                for (int i = 0; i < n; i++)
                {
                    float* dqi = dq + i * ldk, row = seq.KeyRow(dqOut, c0 + i);
                    for (int col = 0; col < dk; col++) row[col] = scale * (dqi[col] + dden[i] * chunkZ[col]);
                }
                // dK = G^T Q' + V dS + 1 dz^T
                Transpose(gm, C, gt, C, n, n);
                Multiply(gt, C, qc, ldk, dk_, ldk, n, ldk, n, accumulate: false);
                Multiply(vc, ldv, dS, ldk, dk_, ldk, n, ldk, dv, accumulate: true);
                for (int i = 0; i < n; i++)
                {
                    float* dki = dk_ + i * ldk, row = seq.KeyRow(dkOut, c0 + i);
                    for (int col = 0; col < dk; col++) row[col] = dki[col] + z[col];
                }
                // dV = P^T dNum + K dS^T
                Transpose(pm, C, pt, C, n, n);
                Transpose(dS, ldk, dST, ldv, dv, dk);
                Multiply(pt, C, dnum, ldv, dv_, ldv, n, ldv, n, accumulate: false);
                Multiply(kc, ldk, dST, ldv, dv_, ldv, n, ldv, dk, accumulate: true);
                for (int i = 0; i < n; i++) new ReadOnlySpan<float>(dv_ + i * ldv, dv).CopyTo(new Span<float>(seq.ValueRow(dvOut, c0 + i), dv));
                // dS += dNum^T Q'; dz += Q'^T dden
                Transpose(dnum, ldv, dnumT, C, n, dv);
                Multiply(dnumT, C, qc, ldk, dS, ldk, dv, ldk, n, accumulate: true);
                if (normalise)
                    for (int i = 0; i < n; i++)
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(qc + i * ldk, dk), dden[i], new ReadOnlySpan<float>(z, dk), new Span<float>(z, dk));
            }
            StoreState(dS, ldk, ds0 == null ? null : ds0 + seq.StateOffset, dv, dk);
            if (dz0 != null) new ReadOnlySpan<float>(z, dk).CopyTo(new Span<float>(dz0 + seq.NormaliserOffset, dk));
        });
    }

    /// <summary>Num = Q' S_0^T + P V with P = (Q' K^T) ⊙ M left in pm (rows i &lt; n, C columns,
    /// zero above the diagonal).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void IntraChunk(float* qc, int ldk, float* kt, float* vc, int ldv, float* stateT, float* num, float* pm, int n, int dk)
    {
        Multiply(qc, ldk, stateT, ldv, num, ldv, n, ldv, dk, accumulate: false);
        CausalScores(qc, ldk, kt, pm, n, dk);
        Multiply(pm, C, vc, ldv, num, ldv, n, ldv, n, accumulate: true);
    }

    /// <summary>P = (Q' K^T) ⊙ M from K^T (dk x C).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CausalScores(float* qc, int ldk, float* kt, float* pm, int n, int dk)
    {
        Multiply(qc, ldk, kt, C, pm, C, n, C, dk, accumulate: false);
        for (int i = 0; i < n; i++) new Span<float>(pm + i * C + i + 1, C - i - 1).Clear();
    }

    /// <summary>z_i . q'_i + eps = z_0 . q'_i + sum_{j &lt;= i} P[i, j] + eps.</summary>
    private static float Denominator(float* qi, float* z0, float* pi, int i, int dk, float eps) =>
        TensorPrimitives.Dot(new ReadOnlySpan<float>(qi, dk), new ReadOnlySpan<float>(z0, dk)) + TensorPrimitives.Sum(new ReadOnlySpan<float>(pi, i + 1)) + eps;

    /// <summary>Rows c0 .. c0 + n of one head into a packed n x width buffer (stride ld), times
    /// <paramref name="factor"/>; padding columns are left as they are (zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Pack(in HeadSequence seq, float* tensor, float* packed, int ld, int c0, int n, int width, float factor, bool keys)
    {
        for (int i = 0; i < n; i++)
        {
            float* row = keys ? seq.KeyRow(tensor, c0 + i) : seq.ValueRow(tensor, c0 + i);
            var destination = new Span<float>(packed + i * ld, width);
            if (factor == 1f) new ReadOnlySpan<float>(row, width).CopyTo(destination);
            else TensorPrimitives.Multiply(new ReadOnlySpan<float>(row, width), factor, destination);
        }
    }

    /// <summary>S^T (dk x ld) from S [dv, dk] (zeros when null); padding columns zeroed.</summary>
    private static void LoadStateTransposed(float* stateT, int ld, float* source, int dv, int dk)
    {
        new Span<float>(stateT, dk * ld).Clear();
        if (source != null) Transpose(source, dk, stateT, ld, dv, dk);
    }
}
