using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using FastWeights.Engine.Cpu.LinearAttention;
using FastWeights.Engine.Ops;
using static FastWeights.Engine.Cpu.LinearAttention.ChunkMatMul;

namespace FastWeights.Engine.Cpu.FastWeights;

/// <summary>The (gated) delta rule in chunks of <see cref="ChunkSize"/> tokens in the WY form on
/// the CPU, one (batch, head) per work item, every step a small matrix product
/// (<see cref="ChunkMatMul"/>); the per-chunk math is in <see cref="DeltaChunk"/>. The backward
/// reruns the forward keeping, per chunk, the chunk-start state S_0, X, Kk and U' (no T x Dk x Dv
/// tensor: chunks x (Dv Dk + 2 C^2 + C Dv) floats per work item), then sweeps the chunks in
/// reverse carrying dS.</summary>
internal static unsafe class ChunkedDeltaRule
{
    /// <summary>64 tokens: the C x C factors (X, Kk, P: 16 KB each) and a chunk's rows stay in L2
    /// with Dk, Dv up to 256; the in-chunk work (C^2 D) stays at or below the state work (C D^2)
    /// for D &gt;= 64, and the C^3 / 48 forward substitution is small beside both.</summary>
    public const int ChunkSize = 64;
    private const int C = ChunkSize;

    public static void Forward(DeltaRuleProblem p, Tensor output, Tensor? finalState, int threads)
    {
        var s = p.Shape;
        float* o = CpuBackend.F32(output);
        float* initial = p.InitialState is null ? null : CpuBackend.F32(p.InitialState);
        float* final = finalState is null ? null : CpuBackend.F32(finalState);
        HeadSequence.ParallelOverHeads(s, threads, () => new DeltaChunk(p, 0), (b, h, chunk) =>
        {
            var seq = new HeadSequence(s, b, h);
            chunk.LoadState(initial == null ? null : initial + seq.StateOffset);
            for (int c0 = 0; c0 < s.Steps; c0 += C)
            {
                int n = Math.Min(C, s.Steps - c0);
                chunk.Load(seq, c0, n, queries: true);
                chunk.Factor();
                chunk.ComputeOutput();
                for (int i = 0; i < n; i++)
                    new ReadOnlySpan<float>(chunk.Output + i * chunk.Ldv, s.ValueDim).CopyTo(new Span<float>(seq.ValueRow(o, c0 + i), s.ValueDim));
                chunk.Advance();
            }
            // the final state may be the initial one: this head's slice was read at the start
            chunk.StoreState(final == null ? null : final + seq.StateOffset);
        });
    }

    /// <summary>Reverse sweep over chunks carrying dS (Dv x Dk, seeded by dFinalState); per chunk,
    /// given dO and dS_C (the gradient reaching the chunk-end state), with the forward's S_0, X, Kk,
    /// U' and K_d = diag(tail) K, B_K = diag(beta gamma) K:
    ///   dU' = P^T dO + K_d dS_C^T;  dR = X^T dU'  (U' = X R)
    ///   dS_0 = gamma_{n-1} dS_C + dO^T diag(gamma) Q' - dR^T B_K   (becomes the previous chunk's dS_C)
    ///   H = (dO U'^T) ⊙ Gamma ⊙ M:  dQ' = diag(gamma) dO S_0 + H K;  dq = scale dQ'
    ///   dK_d = U' dS_C;  dB_K = -dR S_0;  dV = diag(beta) dR  (R = diag(beta) V - B_K S_0^T)
    ///   G = strictly_lower(-dR U'^T) (dA = -X^T dX X^T with dX = dU' R^T), F = diag(beta) (G ⊙ Gamma):
    ///   dK = H^T Q' + diag(tail) U' dS_C + diag(beta gamma) dB_K + (F + F^T) K
    ///   dbeta_i = dR_i . v_i + gamma_i dB_K_i . k_i + sum_{j&lt;i} G_ij Kk_ij
    /// Ungated this is DESIGN.md's written-out backward with dU = dU', dW = -dU' S_0 folded through
    /// R. Gated, the decays add dg (g = in-chunk cumulative log alpha):
    ///   dg_i += gamma_i (dO S_0)_i . q'_i + beta_i gamma_i dB_K_i . k_i
    ///   d(Gamma_ij) Gamma_ij from P and Kk: (dO U'^T)_ij P_ij and beta_i G_ij Kk_ij, +dg_i, -dg_j
    ///   dg_{n-1} += gamma_{n-1} &lt;dS_C, S_0&gt; + sum_i e_i, dg_i -= e_i, e_i = tail_i (U' dS_C)_i . k_i
    ///   dlog(alpha_j) = sum_{i&gt;=j} dg_i,  dalpha_j = dlog(alpha_j) / alpha_j.</summary>
    public static void Backward(DeltaRuleProblem p, DeltaRuleGradients g, int threads)
    {
        var s = p.Shape;
        int chunks = (s.Steps + C - 1) / C;
        int dk = s.KeyDim, dv = s.ValueDim, ldk = HeadSequence.Padded(dk), ldv = HeadSequence.Padded(dv);
        long stateSize = (long)dv * ldk, rowsV = C * ldv, square = C * C;
        long extra = BackwardBuffers.Size(chunks, dk, dv);
        float* initial = p.InitialState is null ? null : CpuBackend.F32(p.InitialState);
        var io = new GradientPointers(g);
        HeadSequence.ParallelOverHeads(s, threads, () => new DeltaChunk(p, extra), (b, h, chunk) =>
        {
            var seq = new HeadSequence(s, b, h);
            chunk.RewindExtra();
            var w = new BackwardBuffers(chunk.Take, chunks, dk, dv);
            // forward: keep S_0 (Dv x Ldk, the layout dO S_0 wants), X, Kk and U' of every chunk
            chunk.LoadState(initial == null ? null : initial + seq.StateOffset);
            for (int c = 0; c < chunks; c++)
            {
                int c0 = c * C, n = Math.Min(C, s.Steps - c0);
                chunk.Load(seq, c0, n, queries: false);
                Transpose(chunk.StateT, ldv, w.States + c * stateSize, ldk, dk, dv);
                chunk.Factor();
                new ReadOnlySpan<float>(chunk.Inverse, C * C).CopyTo(new Span<float>(w.Inverses + c * square, C * C));
                new ReadOnlySpan<float>(chunk.KeyGram, C * C).CopyTo(new Span<float>(w.KeyGrams + c * square, C * C));
                new ReadOnlySpan<float>(chunk.NewValues, n * ldv).CopyTo(new Span<float>(w.AllNewValues + c * rowsV, n * ldv));
                chunk.Advance();
            }
            // backward: dS (Dv x Ldk) from the final state's gradient
            new Span<float>(w.DState, (int)stateSize).Clear();
            if (io.DFinal != null)
                for (int r = 0; r < dv; r++)
                    new ReadOnlySpan<float>(io.DFinal + seq.StateOffset + (long)r * dk, dk).CopyTo(new Span<float>(w.DState + r * ldk, dk));
            for (int c = chunks - 1; c >= 0; c--)
            {
                int c0 = c * C, n = Math.Min(C, s.Steps - c0);
                chunk.Load(seq, c0, n, queries: true);
                ChunkBackward(chunk, w, seq, io, c0, w.States + c * stateSize, w.Inverses + c * square, w.KeyGrams + c * square, w.AllNewValues + c * rowsV, p.Scale);
            }
            if (io.DInitial != null)
                for (int r = 0; r < dv; r++)
                    new ReadOnlySpan<float>(w.DState + r * ldk, dk).CopyTo(new Span<float>(io.DInitial + seq.StateOffset + (long)r * dk, dk));
        });
    }

    private readonly struct GradientPointers(DeltaRuleGradients g)
    {
        public readonly float* DOutput = CpuBackend.F32(g.DOutput), DFinal = g.DFinalState is null ? null : CpuBackend.F32(g.DFinalState);
        public readonly float* DQ = CpuBackend.F32(g.DQ), DK = CpuBackend.F32(g.DK), DV = CpuBackend.F32(g.DV), DBeta = CpuBackend.F32(g.DBeta);
        public readonly float* DAlpha = g.DAlpha is null ? null : CpuBackend.F32(g.DAlpha), DInitial = g.DInitialState is null ? null : CpuBackend.F32(g.DInitialState);
    }

    private delegate float* Carve(long count);

    /// <summary>The backward's buffers, carved from the chunk workspace once per work item (the
    /// carving restarts at the same place each time: same pointers, contents overwritten).</summary>
    private readonly struct BackwardBuffers
    {
        /// <summary>Floats the regions need: the constructor run against a counter.</summary>
        public static long Size(int chunks, int dk, int dv)
        {
            long total = 0;
            _ = new BackwardBuffers(count => { total += (count + 15) & ~15L; return null; }, chunks, dk, dv);
            return total;
        }

        public readonly float* States, Inverses, KeyGrams, AllNewValues;
        public readonly float* DOut, DNewValues, DResiduals, TailKeys, DState, DStateT;
        public readonly float* ScoresT, InverseT, DScores, DScoresT, Symmetric, NewValuesT, DOutT, DResidualsT;
        public readonly float* DQuery, DKey, DResidualsS0, DLogDecay, DBeta;

        public BackwardBuffers(Carve take, int chunks, int dk, int dv)
        {
            int ldk = HeadSequence.Padded(dk), ldv = HeadSequence.Padded(dv);
            long stateSize = (long)dv * ldk, rowsK = C * ldk, rowsV = C * ldv, square = C * C, valuesT = (long)dv * C;
            States = take(chunks * stateSize); Inverses = take(chunks * square); KeyGrams = take(chunks * square); AllNewValues = take(chunks * rowsV);
            DOut = take(rowsV); DNewValues = take(rowsV); DResiduals = take(rowsV); TailKeys = take(rowsK);
            DState = take(stateSize); DStateT = take((long)dk * ldv);
            ScoresT = take(square); InverseT = take(square); DScores = take(square); DScoresT = take(square); Symmetric = take(square);
            NewValuesT = take(valuesT); DOutT = take(valuesT); DResidualsT = take(valuesT);
            DQuery = take(rowsK); DKey = take(rowsK); DResidualsS0 = take(rowsK); DLogDecay = take(C); DBeta = take(C);
        }
    }

    /// <summary>One chunk of the reverse sweep (the math is in <see cref="Backward"/>'s summary);
    /// writes the chunk's dq, dk, dv, dbeta (and dalpha) rows and turns w.DState from dS_C into dS_0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ChunkBackward(DeltaChunk ch, in BackwardBuffers w, in HeadSequence seq, in GradientPointers io, int c0,
        float* s0, float* x, float* kk, float* up, float scale)
    {
        int n = ch.N, dk = ch.Dk, dv = ch.Dv, ldk = ch.Ldk, ldv = ch.Ldv;
        bool gated = ch.Gated;
        float* dS = w.DState, dg = w.DLogDecay, dbeta = w.DBeta;
        new Span<float>(dg, C).Clear();
        for (int i = 0; i < n; i++)
            new ReadOnlySpan<float>(seq.ValueRow(io.DOutput, c0 + i), dv).CopyTo(new Span<float>(w.DOut + i * ldv, dv));
        ch.CausalScores();

        // K_d = diag(tail) K; dK starts as diag(tail) U' dS_C (e_i = tail_i (U' dS_C)_i . k_i for dg)
        Multiply(up, ldv, dS, ldk, w.DKey, ldk, n, ldk, dv, accumulate: false);
        float* kd = ch.Keys;
        if (gated)
        {
            kd = w.TailKeys;
            float e = 0f;
            for (int i = 0; i < n; i++)
            {
                var dki = new Span<float>(w.DKey + i * ldk, dk);
                float ei = ch.Tail[i] * TensorPrimitives.Dot(dki, new ReadOnlySpan<float>(ch.Keys + i * ldk, dk));
                dg[i] -= ei;
                e += ei;
                TensorPrimitives.Multiply(dki, ch.Tail[i], dki);
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(ch.Keys + i * ldk, dk), ch.Tail[i], new Span<float>(kd + i * ldk, dk));
            }
            dg[n - 1] += e + ch.GammaLast * TensorPrimitives.Dot(new ReadOnlySpan<float>(dS, (int)(dv * ldk)), new ReadOnlySpan<float>(s0, (int)(dv * ldk)));
        }

        // dU' = P^T dO + K_d dS_C^T;  dR = X^T dU'
        Transpose(ch.Scores, C, w.ScoresT, C, n, n);
        Multiply(w.ScoresT, C, w.DOut, ldv, w.DNewValues, ldv, n, ldv, n, accumulate: false, Triangle.Upper);
        Transpose(dS, ldk, w.DStateT, ldv, dv, dk);
        Multiply(kd, ldk, w.DStateT, ldv, w.DNewValues, ldv, n, ldv, dk, accumulate: true);
        Transpose(x, C, w.InverseT, C, n, n);
        Multiply(w.InverseT, C, w.DNewValues, ldv, w.DResiduals, ldv, n, ldv, n, accumulate: false, Triangle.Upper);

        // dv = diag(beta) dR;  dbeta_i = dR_i . v_i + ...
        for (int i = 0; i < n; i++)
        {
            var dri = new ReadOnlySpan<float>(w.DResiduals + i * ldv, dv);
            dbeta[i] = TensorPrimitives.Dot(dri, new ReadOnlySpan<float>(ch.Values + i * ldv, dv));
            TensorPrimitives.Multiply(dri, ch.Beta[i], new Span<float>(seq.ValueRow(io.DV, c0 + i), dv));
        }

        // dP = (dO U'^T) ⊙ M; dg from Gamma in P: dP_ij P_ij; H = dP ⊙ Gamma (in place)
        Transpose(up, ldv, w.NewValuesT, C, n, dv);
        Multiply(w.DOut, ldv, w.NewValuesT, C, w.DScores, C, n, C, dv, accumulate: false);
        for (int i = 0; i < n; i++)
        {
            float* di = w.DScores + i * C;
            new Span<float>(di + i + 1, C - i - 1).Clear();
            if (!gated) continue;
            float* pi = ch.Scores + i * C, gi = ch.Decay + i * C;
            for (int j = 0; j < i; j++)
            {
                float r = di[j] * pi[j];
                dg[i] += r;
                dg[j] -= r;
            }
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(di, i + 1), new ReadOnlySpan<float>(gi, i + 1), new Span<float>(di, i + 1));
        }

        // dQ' = diag(gamma) dO S_0 + H K;  dq = scale dQ'
        Multiply(w.DOut, ldv, s0, ldk, w.DQuery, ldk, n, ldk, dv, accumulate: false);
        if (gated)
            for (int i = 0; i < n; i++)
            {
                var dqi = new Span<float>(w.DQuery + i * ldk, dk);
                dg[i] += ch.Gamma[i] * TensorPrimitives.Dot(dqi, new ReadOnlySpan<float>(ch.Queries + i * ldk, dk));
                TensorPrimitives.Multiply(dqi, ch.Gamma[i], dqi);
            }
        Multiply(w.DScores, C, ch.Keys, ldk, w.DQuery, ldk, n, ldk, n, accumulate: true, Triangle.Lower);
        for (int i = 0; i < n; i++)
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(w.DQuery + i * ldk, dk), scale, new Span<float>(seq.KeyRow(io.DQ, c0 + i), dk));

        // dK += H^T Q'
        Transpose(w.DScores, C, w.DScoresT, C, n, n);
        Multiply(w.DScoresT, C, ch.Queries, ldk, w.DKey, ldk, n, ldk, n, accumulate: true, Triangle.Upper);

        // dB_K = -dR S_0: dK += diag(beta gamma) dB_K; dbeta_i += gamma_i dB_K_i . k_i; dg_i += beta_i gamma_i dB_K_i . k_i
        Multiply(w.DResiduals, ldv, s0, ldk, w.DResidualsS0, ldk, n, ldk, dv, accumulate: false);
        for (int i = 0; i < n; i++)
        {
            var y = new ReadOnlySpan<float>(w.DResidualsS0 + i * ldk, dk);
            float yk = TensorPrimitives.Dot(y, new ReadOnlySpan<float>(ch.Keys + i * ldk, dk));
            float bg = ch.Beta[i] * ch.Gamma[i];
            dbeta[i] -= ch.Gamma[i] * yk;
            dg[i] -= bg * yk;
            var dki = new Span<float>(w.DKey + i * ldk, dk);
            TensorPrimitives.MultiplyAdd(y, -bg, dki, dki);
        }

        // G = strictly_lower(-dR U'^T); dbeta_i += sum_j G_ij Kk_ij; F = diag(beta)(G ⊙ Gamma); dK += (F + F^T) K
        float* ga = w.ScoresT; // P^T is no longer needed
        Multiply(w.DResiduals, ldv, w.NewValuesT, C, ga, C, n, C, dv, accumulate: false);
        float* f2 = w.Symmetric;
        for (int i = 0; i < n; i++)
        {
            float* gi = ga + i * C, kki = kk + i * C, fi = f2 + i * C;
            float sum = 0f;
            for (int j = 0; j < i; j++)
            {
                float gij = -gi[j];
                float r = gij * kki[j];
                sum += r;
                if (gated)
                {
                    dg[i] += ch.Beta[i] * r;
                    dg[j] -= ch.Beta[i] * r;
                    gij *= ch.Decay[i * C + j];
                }
                fi[j] = ch.Beta[i] * gij;
            }
            dbeta[i] += sum;
            fi[i] = 0f;
        }
        // F strictly lower: F + F^T is F below the diagonal and its mirror above
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) f2[i * C + j] = f2[j * C + i];
        Multiply(f2, C, ch.Keys, ldk, w.DKey, ldk, n, ldk, n, accumulate: true);
        for (int i = 0; i < n; i++)
        {
            new ReadOnlySpan<float>(w.DKey + i * ldk, dk).CopyTo(new Span<float>(seq.KeyRow(io.DK, c0 + i), dk));
            io.DBeta[seq.Token(c0 + i)] = dbeta[i];
        }

        // dS_0 = gamma_{n-1} dS_C + (dO^T diag(gamma)) Q' + dR^T (-B_K)
        if (gated) TensorPrimitives.Multiply(new ReadOnlySpan<float>(dS, dv * ldk), ch.GammaLast, new Span<float>(dS, dv * ldk));
        Transpose(w.DOut, ldv, w.DOutT, C, n, dv);
        if (gated)
            for (int r = 0; r < dv; r++)
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(w.DOutT + r * C, n), new ReadOnlySpan<float>(ch.Gamma, n), new Span<float>(w.DOutT + r * C, n));
        Multiply(w.DOutT, C, ch.Queries, ldk, dS, ldk, dv, ldk, n, accumulate: true);
        Transpose(w.DResiduals, ldv, w.DResidualsT, C, n, dv);
        Multiply(w.DResidualsT, C, ch.NegBetaGammaKeys, ldk, dS, ldk, dv, ldk, n, accumulate: true);

        // dlog(alpha_j) = sum_{i>=j} dg_i
        if (gated)
        {
            float acc = 0f;
            for (int i = n - 1; i >= 0; i--)
            {
                acc += dg[i];
                io.DAlpha[seq.Token(c0 + i)] = acc / ch.Alpha[i];
            }
        }
    }
}
