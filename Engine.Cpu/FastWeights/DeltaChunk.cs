using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using FastWeights.Engine.Cpu.LinearAttention;
using FastWeights.Engine.Ops;
using static FastWeights.Engine.Cpu.LinearAttention.ChunkMatMul;

namespace FastWeights.Engine.Cpu.FastWeights;

/// <summary>One chunk of the (gated) delta rule in the WY form, the forward pieces shared by the
/// forward op and the backward's recomputation. For the chunk's n &lt;= C rows Q' = scale Q, K, V,
/// betas, and (gated) the in-chunk cumulative log-decays g_i = sum_{j&lt;=i} log alpha_j, with
/// gamma_i = exp(g_i), tail_i = exp(g_{n-1} - g_i), Gamma_ij = exp(g_i - g_j) (j &lt;= i):
///   unrolling S_i = alpha_i S_{i-1} + u'_i k_i^T from the chunk-start state S_0 gives
///   S_i = gamma_i S_0 + sum_{j&lt;=i} Gamma_ij u'_j k_j^T, and u'_i = beta_i (v_i - alpha_i S_{i-1} k_i) is
///   (I + diag(beta) Kk) U' = diag(beta) V - diag(beta gamma) K S_0^T,  Kk = strictly_lower((K K^T) ⊙ Gamma)
/// so with X = (I + diag(beta) Kk)^-1 and R = diag(beta) V - diag(beta gamma) K S_0^T:
///   U' = X R;  O = diag(gamma) Q' S_0^T + P U',  P = (Q' K^T) ⊙ Gamma ⊙ M (M causal, diagonal in);
///   S_C = gamma_{n-1} S_0 + U'^T diag(tail) K.
/// Ungated, every decay is 1 and this is DESIGN.md's form (X diag(beta) = T, X R = U - W S_0^T).
/// The state is kept transposed (S^T: Dk x Dv, rows padded to Ldv) so the products run along Dv.
/// Internal rows are padded to multiples of 16 with zero columns; in C-wide buffers only the first
/// n rows and columns of a short last chunk mean anything, and every product over the chunk's
/// tokens has depth n, so what lies past them is never read into a result that is kept.</summary>
internal sealed unsafe class DeltaChunk : IDisposable
{
    public const int C = ChunkedDeltaRule.ChunkSize;
    private readonly AlignedFloats _memory;
    private readonly float* _q, _k, _v, _beta, _alpha;
    private readonly float _scale;
    private readonly float* _extraStart, _extraEnd;
    private float* _extraNext;
    public readonly int Dk, Dv, Ldk, Ldv;
    public readonly bool Gated;

    // rows of the chunk: Q' (C x Ldk), K (C x Ldk), -diag(beta gamma) K (C x Ldk), V, R, U', O (C x Ldv)
    public readonly float* Queries, Keys, NegBetaGammaKeys, Values, Residuals, NewValues, Output;
    // K^T and (diag(tail) K)^T: Dk x C
    public readonly float* KeysT, TailKeysT;
    // C x C: Kk (strictly lower), X = (I + diag(beta) Kk)^-1, Gamma, P
    public readonly float* KeyGram, Inverse, Decay, Scores;
    // per row: beta, alpha, g, gamma, tail
    public readonly float* Beta, Alpha, LogDecay, Gamma, Tail;
    // the running state S^T (Dk x Ldv)
    public readonly float* StateT;
    /// <summary>Rows in the current chunk and gamma_{n-1} (the whole chunk's decay; 1 ungated).</summary>
    public int N;
    public float GammaLast = 1f;

    public DeltaChunk(DeltaRuleProblem p, long extraFloats)
    {
        var s = p.Shape;
        (Dk, Dv) = (s.KeyDim, s.ValueDim);
        (Ldk, Ldv) = (HeadSequence.Padded(Dk), HeadSequence.Padded(Dv));
        Gated = p.Alpha is not null;
        _q = CpuBackend.F32(p.Q); _k = CpuBackend.F32(p.K); _v = CpuBackend.F32(p.V); _beta = CpuBackend.F32(p.Beta);
        _alpha = p.Alpha is null ? null : CpuBackend.F32(p.Alpha);
        _scale = p.Scale;
        long rowsK = C * Ldk, rowsV = C * Ldv, keysT = (long)Dk * C, square = C * C;
        _memory = new AlignedFloats(AlignedFloats.Size(rowsK, rowsK, rowsK, rowsV, rowsV, rowsV, rowsV, keysT, keysT,
            square, square, square, square, C, C, C, C, C, (long)Dk * Ldv) + extraFloats);
        Queries = _memory.Take(rowsK); Keys = _memory.Take(rowsK); NegBetaGammaKeys = _memory.Take(rowsK);
        Values = _memory.Take(rowsV); Residuals = _memory.Take(rowsV); NewValues = _memory.Take(rowsV); Output = _memory.Take(rowsV);
        KeysT = _memory.Take(keysT); TailKeysT = _memory.Take(keysT);
        KeyGram = _memory.Take(square); Inverse = _memory.Take(square); Decay = _memory.Take(square); Scores = _memory.Take(square);
        Beta = _memory.Take(C); Alpha = _memory.Take(C); LogDecay = _memory.Take(C); Gamma = _memory.Take(C); Tail = _memory.Take(C);
        StateT = _memory.Take((long)Dk * Ldv);
        _extraStart = _extraNext = _memory.Take(extraFloats);
        _extraEnd = _extraStart + extraFloats;
        if (!Gated)
        {
            new Span<float>(Alpha, C).Fill(1f); new Span<float>(Gamma, C).Fill(1f); new Span<float>(Tail, C).Fill(1f);
        }
    }

    /// <summary>More zeroed floats from the same block (the backward's buffers); RewindExtra
    /// starts carving them again from the first (same pointers, contents kept).</summary>
    public float* Take(long count)
    {
        float* region = _extraNext;
        _extraNext += (count + 15) & ~15L;
        if (_extraNext > _extraEnd) throw new InvalidOperationException($"delta-rule chunk workspace overrun by {_extraNext - _extraEnd} floats");
        return region;
    }

    public void RewindExtra() => _extraNext = _extraStart;

    /// <summary>S^T from S [Dv, Dk] (zeros when null).</summary>
    public void LoadState(float* source)
    {
        new Span<float>(StateT, Dk * Ldv).Clear();
        if (source != null) Transpose(source, Dk, StateT, Ldv, Dv, Dk);
    }

    public void StoreState(float* destination)
    {
        if (destination != null) Transpose(StateT, Ldv, destination, Dk, Dk, Dv);
    }

    /// <summary>Rows c0 .. c0 + n of one head: Q' (when asked), K, V, K^T, -diag(beta gamma) K,
    /// beta, and (gated) alpha, g, gamma, tail and Gamma.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Load(in HeadSequence seq, int c0, int n, bool queries)
    {
        N = n;
        for (int i = 0; i < n; i++)
        {
            int t = c0 + i;
            new ReadOnlySpan<float>(seq.KeyRow(_k, t), Dk).CopyTo(new Span<float>(Keys + i * Ldk, Dk));
            new ReadOnlySpan<float>(seq.ValueRow(_v, t), Dv).CopyTo(new Span<float>(Values + i * Ldv, Dv));
            if (queries) TensorPrimitives.Multiply(new ReadOnlySpan<float>(seq.KeyRow(_q, t), Dk), _scale, new Span<float>(Queries + i * Ldk, Dk));
            Beta[i] = _beta[seq.Token(t)];
            if (Gated) Alpha[i] = _alpha[seq.Token(t)];
        }
        Transpose(Keys, Ldk, KeysT, C, n, Dk);
        if (Gated) LoadDecays(n);
        for (int i = 0; i < n; i++)
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(Keys + i * Ldk, Dk), -Beta[i] * Gamma[i], new Span<float>(NegBetaGammaKeys + i * Ldk, Dk));
    }

    /// <summary>g_i = g_{i-1} + log alpha_i, gamma_i = exp(g_i), tail_i = exp(g_{n-1} - g_i),
    /// Gamma_ij = exp(g_i - g_j) for j &lt;= i (differences of logs: no 0/0 when gamma underflows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void LoadDecays(int n)
    {
        float g = 0f;
        for (int i = 0; i < n; i++) LogDecay[i] = g += MathF.Log(Alpha[i]);
        var logs = new ReadOnlySpan<float>(LogDecay, n);
        TensorPrimitives.Exp(logs, new Span<float>(Gamma, n));
        GammaLast = Gamma[n - 1];
        TensorPrimitives.Subtract(LogDecay[n - 1], logs, new Span<float>(Tail, n));
        TensorPrimitives.Exp(new ReadOnlySpan<float>(Tail, n), new Span<float>(Tail, n));
        for (int i = 0; i < n; i++)
        {
            var row = new Span<float>(Decay + i * C, i + 1);
            TensorPrimitives.Subtract(LogDecay[i], logs[..(i + 1)], row);
            TensorPrimitives.Exp(row, row);
        }
    }

    /// <summary>Kk = strictly_lower((K K^T) ⊙ Gamma), X = (I + diag(beta) Kk)^-1,
    /// R = diag(beta) V - diag(beta gamma) K S_0^T and U' = X R, from the state now in StateT.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Factor()
    {
        int n = N;
        Multiply(Keys, Ldk, KeysT, C, KeyGram, C, n, C, Dk, accumulate: false);
        if (Gated)
            for (int i = 0; i < n; i++)
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(KeyGram + i * C, i), new ReadOnlySpan<float>(Decay + i * C, i), new Span<float>(KeyGram + i * C, i));
        UnitLowerInverse.Invert(KeyGram, Beta, Inverse, n, C);
        for (int i = 0; i < n; i++)
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(Values + i * Ldv, Dv), Beta[i], new Span<float>(Residuals + i * Ldv, Dv));
        Multiply(NegBetaGammaKeys, Ldk, StateT, Ldv, Residuals, Ldv, n, Ldv, Dk, accumulate: true);
        Multiply(Inverse, C, Residuals, Ldv, NewValues, Ldv, n, Ldv, n, accumulate: false, Triangle.Lower);
    }

    /// <summary>P = (Q' K^T) ⊙ Gamma ⊙ M: rows i &lt; n, zero from column i + 1 to C.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void CausalScores()
    {
        int n = N;
        Multiply(Queries, Ldk, KeysT, C, Scores, C, n, C, Dk, accumulate: false);
        for (int i = 0; i < n; i++)
        {
            new Span<float>(Scores + i * C + i + 1, C - i - 1).Clear();
            if (Gated) TensorPrimitives.Multiply(new ReadOnlySpan<float>(Scores + i * C, i + 1), new ReadOnlySpan<float>(Decay + i * C, i + 1), new Span<float>(Scores + i * C, i + 1));
        }
    }

    /// <summary>O = diag(gamma) Q' S_0^T + P U' into Output (needs Factor first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ComputeOutput()
    {
        int n = N;
        Multiply(Queries, Ldk, StateT, Ldv, Output, Ldv, n, Ldv, Dk, accumulate: false);
        if (Gated) for (int i = 0; i < n; i++) TensorPrimitives.Multiply(new ReadOnlySpan<float>(Output + i * Ldv, Dv), Gamma[i], new Span<float>(Output + i * Ldv, Dv));
        CausalScores();
        Multiply(Scores, C, NewValues, Ldv, Output, Ldv, n, Ldv, n, accumulate: true, Triangle.Lower);
    }

    /// <summary>S^T &lt;- gamma_{n-1} S^T + (diag(tail) K)^T U' (needs Factor first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Advance()
    {
        int n = N;
        float* keysT = KeysT;
        if (Gated)
        {
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(StateT, Dk * Ldv), GammaLast, new Span<float>(StateT, Dk * Ldv));
            for (int r = 0; r < Dk; r++)
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(KeysT + r * C, n), new ReadOnlySpan<float>(Tail, n), new Span<float>(TailKeysT + r * C, n));
            keysT = TailKeysT;
        }
        Multiply(keysT, C, NewValues, Ldv, StateT, Ldv, Dk, Ldv, n, accumulate: true);
    }

    public void Dispose() => _memory.Dispose();
}
