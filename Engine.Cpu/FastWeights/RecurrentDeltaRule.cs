using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.FastWeights;

/// <summary>The delta rule in its recurrent form on the CPU, one (batch, head) per work item, the
/// state's rows as contiguous Dk vectors so every row operation is a SIMD dot product or axpy.
/// The backward walks time in reverse; S_{t-1} comes from recomputation: the forward is rerun
/// keeping a checkpoint of S every <see cref="CheckpointInterval"/> steps, and each interval's
/// states are rebuilt from its checkpoint before it is walked backwards.</summary>
internal static unsafe class RecurrentDeltaRule
{
    public const int CheckpointInterval = 32;

    /// <summary>Pointers and strides of one (batch, head) sequence.</summary>
    private readonly struct Sequence(DeltaRuleProblem p, int b, int h)
    {
        public readonly FastWeightShape S = p.Shape;
        public readonly float* Q = CpuBackend.F32(p.Q), K = CpuBackend.F32(p.K), V = CpuBackend.F32(p.V), Beta = CpuBackend.F32(p.Beta);
        public readonly float* Alpha = p.Alpha is null ? null : CpuBackend.F32(p.Alpha);
        public readonly int B = b, H = h;
        public long Token(int t) => ((long)B * S.Steps + t) * S.Heads + H;
        public float* Key(int t) => K + Token(t) * S.KeyDim;
        public float* Query(int t) => Q + Token(t) * S.KeyDim;
        public float* Value(int t) => V + Token(t) * S.ValueDim;
        public float BetaAt(int t) => Beta[Token(t)];
        public float AlphaAt(int t) => Alpha == null ? 1f : Alpha[Token(t)];
        public long StateOffset => ((long)B * S.Heads + H) * S.ValueDim * S.KeyDim;
    }

    public static void Forward(DeltaRuleProblem p, Tensor output, Tensor? finalState, int threads)
    {
        var s = p.Shape;
        float* o = CpuBackend.F32(output);
        float* initial = p.InitialState is null ? null : CpuBackend.F32(p.InitialState);
        float* final = finalState is null ? null : CpuBackend.F32(finalState);
        ParallelOverHeads(s, threads, (b, h) =>
        {
            var seq = new Sequence(p, b, h);
            int dk = s.KeyDim, dv = s.ValueDim;
            var state = new float[dv * dk];
            if (initial != null) new ReadOnlySpan<float>(initial + seq.StateOffset, state.Length).CopyTo(state);
            for (int t = 0; t < s.Steps; t++)
            {
                Step(seq, t, state);
                float* ot = o + seq.Token(t) * dv;
                var q = new ReadOnlySpan<float>(seq.Query(t), dk);
                for (int r = 0; r < dv; r++) ot[r] = p.Scale * TensorPrimitives.Dot(state.AsSpan(r * dk, dk), q);
            }
            if (final != null) state.CopyTo(new Span<float>(final + seq.StateOffset, state.Length));
        });
    }

    // S <- alpha S + u k^T with u = beta (v - alpha S k), row by row.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Step(in Sequence seq, int t, Span<float> state)
    {
        int dk = seq.S.KeyDim, dv = seq.S.ValueDim;
        var k = new ReadOnlySpan<float>(seq.Key(t), dk);
        float* v = seq.Value(t);
        float beta = seq.BetaAt(t), alpha = seq.AlphaAt(t);
        for (int r = 0; r < dv; r++)
        {
            var row = state.Slice(r * dk, dk);
            float u = beta * (v[r] - alpha * TensorPrimitives.Dot(row, k));
            if (alpha != 1f) TensorPrimitives.Multiply(row, alpha, row);
            TensorPrimitives.MultiplyAdd(k, u, row, row);
        }
    }

    /// <summary>Reverse-time backward. With dS the gradient reaching S_t, per step:
    ///   dq_t = scale S_t^T do_t;  dS += scale do_t q_t^T
    ///   e = v_t - alpha S_{t-1} k_t;  u = beta e;  du = dS k_t
    ///   dk_t = dS^T u - alpha S_{t-1}^T (beta du);  dv_t = beta du;  dbeta_t = e . du
    ///   dalpha_t = &lt;dS, S_{t-1}&gt; - beta (S_{t-1} k_t) . du
    ///   dS &lt;- alpha (dS - (beta du) k_t^T)   (the gradient reaching S_{t-1})</summary>
    public static void Backward(DeltaRuleProblem p, DeltaRuleGradients g, int threads)
    {
        var s = p.Shape;
        float* initial = p.InitialState is null ? null : CpuBackend.F32(p.InitialState);
        float* dO = CpuBackend.F32(g.DOutput), dFinal = g.DFinalState is null ? null : CpuBackend.F32(g.DFinalState);
        float* dq = CpuBackend.F32(g.DQ), dk = CpuBackend.F32(g.DK), dv = CpuBackend.F32(g.DV), dbeta = CpuBackend.F32(g.DBeta);
        float* dalpha = g.DAlpha is null ? null : CpuBackend.F32(g.DAlpha), dInitial = g.DInitialState is null ? null : CpuBackend.F32(g.DInitialState);
        ParallelOverHeads(s, threads, (b, h) =>
        {
            var seq = new Sequence(p, b, h);
            int kd = s.KeyDim, vd = s.ValueDim, size = kd * vd, steps = s.Steps;
            int intervals = (steps + CheckpointInterval - 1) / CheckpointInterval;
            // checkpoints[i] = the state before step i * CheckpointInterval
            var checkpoints = new float[Math.Max(1, intervals) * size];
            var state = new float[size];
            if (initial != null) new ReadOnlySpan<float>(initial + seq.StateOffset, size).CopyTo(state);
            for (int t = 0; t < steps; t++)
            {
                if (t % CheckpointInterval == 0) state.CopyTo(checkpoints.AsSpan(t / CheckpointInterval * size, size));
                Step(seq, t, state);
            }
            var dS = new float[size];
            if (dFinal != null) new ReadOnlySpan<float>(dFinal + seq.StateOffset, size).CopyTo(dS);
            // states[j] = S after step t0 + j - 1 (states[0] = the checkpoint)
            var states = new float[(CheckpointInterval + 1) * size];
            var du = new float[vd];
            var sk = new float[vd];
            for (int interval = intervals - 1; interval >= 0; interval--)
            {
                int t0 = interval * CheckpointInterval, t1 = Math.Min(steps, t0 + CheckpointInterval);
                checkpoints.AsSpan(interval * size, size).CopyTo(states);
                for (int t = t0; t < t1; t++)
                {
                    states.AsSpan((t - t0) * size, size).CopyTo(states.AsSpan((t - t0 + 1) * size, size));
                    Step(seq, t, states.AsSpan((t - t0 + 1) * size, size));
                }
                for (int t = t1 - 1; t >= t0; t--)
                {
                    var current = states.AsSpan((t - t0 + 1) * size, size);
                    var previous = states.AsSpan((t - t0) * size, size);
                    long token = seq.Token(t);
                    var q = new ReadOnlySpan<float>(seq.Query(t), kd);
                    var k = new ReadOnlySpan<float>(seq.Key(t), kd);
                    float* v = seq.Value(t), doT = dO + token * vd;
                    float beta = seq.BetaAt(t), alpha = seq.AlphaAt(t);
                    var dqT = new Span<float>(dq + token * kd, kd);
                    var dkT = new Span<float>(dk + token * kd, kd);
                    dqT.Clear();
                    dkT.Clear();
                    float dBetaT = 0f, dAlphaT = 0f;
                    for (int r = 0; r < vd; r++)
                    {
                        var dRow = dS.AsSpan(r * kd, kd);
                        // output: dq += scale S_t[r] do[r];  dS[r] += scale do[r] q
                        TensorPrimitives.MultiplyAdd(current.Slice(r * kd, kd), p.Scale * doT[r], dqT, dqT);
                        TensorPrimitives.MultiplyAdd(q, p.Scale * doT[r], dRow, dRow);
                        var prevRow = previous.Slice(r * kd, kd);
                        sk[r] = TensorPrimitives.Dot(prevRow, k);
                        float e = v[r] - alpha * sk[r];
                        du[r] = TensorPrimitives.Dot(dRow, k);
                        dBetaT += e * du[r];
                        dAlphaT += TensorPrimitives.Dot(dRow, prevRow) - beta * sk[r] * du[r];
                        // dk += dS[r] u[r] - alpha beta du[r] S_{t-1}[r]
                        TensorPrimitives.MultiplyAdd(dRow, beta * e, dkT, dkT);
                        TensorPrimitives.MultiplyAdd(prevRow, -alpha * beta * du[r], dkT, dkT);
                        dv[token * vd + r] = beta * du[r];
                        // dS[r] <- alpha (dS[r] - beta du[r] k)
                        TensorPrimitives.MultiplyAdd(k, -beta * du[r], dRow, dRow);
                        if (alpha != 1f) TensorPrimitives.Multiply(dRow, alpha, dRow);
                    }
                    dbeta[token] = dBetaT;
                    if (dalpha != null) dalpha[token] = dAlphaT;
                }
            }
            if (dInitial != null) dS.CopyTo(new Span<float>(dInitial + seq.StateOffset, size));
        });
    }

    internal static void ParallelOverHeads(FastWeightShape s, int threads, Action<int, int> body)
    {
        int items = s.Batch * s.Heads;
        if (items == 1 || threads == 1) { for (int i = 0; i < items; i++) body(i / s.Heads, i % s.Heads); return; }
        Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = threads }, i => body(i / s.Heads, i % s.Heads));
    }
}
