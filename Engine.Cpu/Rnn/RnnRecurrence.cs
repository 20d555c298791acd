using System.Numerics.Tensors;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>Head-wise recurrent cells on the CPU. Every (batch, head) pair is an independent
/// recurrence (R is block-diagonal), so work items are those pairs, each walking time with its
/// head's R rows (contiguous Dh vectors, hot in cache) dotted with h_{t-1}.
/// Saved per (b, t), for the backward: the cell's activated gates, then its extra states
/// (see RnnCells.SavedPerUnit / ExtraStates), each a block of H*Dh values.</summary>
internal static unsafe class RnnRecurrence
{
    private readonly struct View(RnnProblem p)
    {
        public readonly int T = p.Steps, H = p.Heads, Dh = p.HeadDim, G = p.Gates, Hd = p.Hidden;
        public readonly int SavedWidth = (p.Cell.SavedPerUnit() + p.Cell.ExtraStates()) * p.Hidden;
        public readonly float* X = CpuBackend.F32(p.Preactivations), R = CpuBackend.F32(p.RecurrentWeights);
        public readonly float* Bias = p.RecurrentBias is null ? null : CpuBackend.F32(p.RecurrentBias);
        public long XIndex(int b, int t, int g, int h, int j) => ((long)b * T + t) * G * Hd + g * Hd + h * Dh + j;
        public float* RRow(int h, int g, int j) => R + ((long)h * G * Dh + g * Dh + j) * Dh;
        public float BiasAt(int g, int h, int j) => Bias == null ? 0f : Bias[g * Hd + h * Dh + j];
    }

    private static float* Ptr(Tensor? t) => t is null ? null : CpuBackend.F32(t);

    // Pointers of optional state tensors (0 where absent), as nint so they fit in arrays and lambdas.
    private static nint[] Pointers(IReadOnlyList<Tensor?> tensors) => tensors.Select(t => (nint)Ptr(t)).ToArray();

    public static void Forward(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finals, Tensor? saved, int threads)
    {
        var v = new View(p);
        float* y = CpuBackend.F32(outputs), sv = Ptr(saved);
        int extra = p.Cell.ExtraStates(), nSaved = p.Cell.SavedPerUnit();
        var init = Pointers(p.InitialStates);
        var fin = Pointers(finals);
        ForEachPair(p, threads, (b, h) =>
        {
            int dh = v.Dh, hd = v.Hd;
            var hPrev = new float[dh];
            var states = new float[extra, dh];                 // c | c, n, m
            var a = new float[v.G * dh];
            var q = new float[dh];                             // GRU: R_n h + b_hn
            long stateAt = (long)b * hd + h * dh;
            for (int j = 0; j < dh; j++)
            {
                hPrev[j] = init[0] == 0 ? 0f : ((float*)init[0])[stateAt + j];
                for (int e = 0; e < extra; e++) states[e, j] = init[e + 1] == 0 ? 0f : ((float*)init[e + 1])[stateAt + j];
            }
            for (int t = 0; t < v.T; t++)
            {
                // a = x + b + R h_{t-1}, gate-major rows of this head
                for (int g = 0; g < v.G; g++)
                    for (int j = 0; j < dh; j++)
                    {
                        float rh = TensorPrimitives.Dot(new ReadOnlySpan<float>(v.RRow(h, g, j), dh), hPrev) + v.BiasAt(g, h, j);
                        float xg = v.X[v.XIndex(b, t, g, h, j)];
                        if (p.Cell == RnnCell.Gru && g == 2) { q[j] = rh; a[g * dh + j] = xg; }
                        else a[g * dh + j] = xg + rh;
                    }
                float* savedRow = sv == null ? null : sv + ((long)b * v.T + t) * v.SavedWidth;
                for (int j = 0; j < dh; j++)
                {
                    int u = h * dh + j;
                    float hNew;
                    switch (p.Cell)
                    {
                        case RnnCell.Lstm:
                        {
                            float i = CellMath.Sigmoid(a[j]), f = CellMath.Sigmoid(a[dh + j]), gg = MathF.Tanh(a[2 * dh + j]), o = CellMath.Sigmoid(a[3 * dh + j]);
                            float c = f * states[0, j] + i * gg;
                            states[0, j] = c;
                            hNew = o * MathF.Tanh(c);
                            if (savedRow != null) { savedRow[u] = i; savedRow[hd + u] = f; savedRow[2 * hd + u] = gg; savedRow[3 * hd + u] = o; savedRow[4 * hd + u] = c; }
                            break;
                        }
                        case RnnCell.Gru:
                        {
                            float r = CellMath.Sigmoid(a[j]), z = CellMath.Sigmoid(a[dh + j]);
                            float n = MathF.Tanh(a[2 * dh + j] + r * q[j]);
                            hNew = (1f - z) * n + z * hPrev[j];
                            if (savedRow != null) { savedRow[u] = r; savedRow[hd + u] = z; savedRow[2 * hd + u] = n; savedRow[3 * hd + u] = q[j]; }
                            break;
                        }
                        case RnnCell.SLstm:
                        {
                            float logF = CellMath.LogSigmoid(a[dh + j]), iTilde = a[j];
                            float mPrev = states[2, j];
                            float m = MathF.Max(logF + mPrev, iTilde);
                            float ip = MathF.Exp(iTilde - m), fp = MathF.Exp(logF + mPrev - m);
                            float z = MathF.Tanh(a[2 * dh + j]), o = CellMath.Sigmoid(a[3 * dh + j]);
                            float c = fp * states[0, j] + ip * z, n = fp * states[1, j] + ip;
                            states[0, j] = c; states[1, j] = n; states[2, j] = m;
                            hNew = o * c / n;
                            if (savedRow != null)
                            {
                                savedRow[u] = ip; savedRow[hd + u] = fp; savedRow[2 * hd + u] = z; savedRow[3 * hd + u] = o; savedRow[4 * hd + u] = m;
                                savedRow[5 * hd + u] = c; savedRow[6 * hd + u] = n; savedRow[7 * hd + u] = m;
                            }
                            break;
                        }
                        default:
                            hNew = MathF.Tanh(a[j]);
                            break;
                    }
                    y[((long)b * v.T + t) * hd + u] = hNew;
                }
                for (int j = 0; j < dh; j++) hPrev[j] = y[((long)b * v.T + t) * hd + h * dh + j];
                _ = nSaved;
            }
            for (int j = 0; j < dh; j++)
            {
                if (fin[0] != 0) ((float*)fin[0])[stateAt + j] = hPrev[j];
                for (int e = 0; e < extra; e++) if (fin[e + 1] != 0) ((float*)fin[e + 1])[stateAt + j] = states[e, j];
            }
        });
    }

    /// <summary>BPTT per (batch, head), reverse time. With da the gradient of a gate's
    /// pre-activation: dx = da (GRU's n gate: da_n), the recurrent part's gradient dq (= da, or for
    /// GRU's n gate r * da_n) gives dR += dq h_{t-1}^T, dbias += dq, dh_{t-1} += R^T dq. dR and dbias
    /// are summed over the batch per head (local sums, added under a per-head lock).</summary>
    public static void Backward(RnnProblem p, Tensor outputs, Tensor saved, RnnGradients grads, int threads)
    {
        var v = new View(p);
        float* y = CpuBackend.F32(outputs), sv = CpuBackend.F32(saved), dy = CpuBackend.F32(grads.DOutputs);
        float* dx = CpuBackend.F32(grads.DPreactivations), dR = CpuBackend.F32(grads.DRecurrentWeights), dBias = Ptr(grads.DRecurrentBias);
        var init = Pointers(p.InitialStates);
        var dFin = Pointers(grads.DFinalStates);
        var dInit = Pointers(grads.DInitialStates);
        int dh = v.Dh, hd = v.Hd, gates = v.G;
        new Span<float>(dR, checked((int)grads.DRecurrentWeights.ElementCount)).Clear();
        if (dBias != null) new Span<float>(dBias, gates * hd).Clear();
        var locks = Enumerable.Range(0, v.H).Select(_ => new object()).ToArray();
        ForEachPair(p, threads, (b, h) =>
        {
            long stateAt = (long)b * hd + h * dh;
            var dhNext = new float[dh];                  // gradient reaching h_t from later steps
            var dcNext = new float[dh];                  // LSTM / sLSTM: reaching c_t; sLSTM also n_t
            var dnNext = new float[dh];
            var dq = new float[gates * dh];              // recurrent-part gradients of this step
            var hPrev = new float[dh];
            var localR = new float[gates * dh * dh];
            var localBias = new float[gates * dh];
            if (dFin[0] != 0) for (int j = 0; j < dh; j++) dhNext[j] = ((float*)dFin[0])[stateAt + j];
            if (p.Cell == RnnCell.Lstm && dFin.Length > 1 && dFin[1] != 0) for (int j = 0; j < dh; j++) dcNext[j] = ((float*)dFin[1])[stateAt + j];
            for (int t = v.T - 1; t >= 0; t--)
            {
                float* row = sv + ((long)b * v.T + t) * v.SavedWidth;
                float* rowPrev = t > 0 ? sv + ((long)b * v.T + t - 1) * v.SavedWidth : null;
                for (int j = 0; j < dh; j++)
                    hPrev[j] = t > 0 ? y[((long)b * v.T + t - 1) * hd + h * dh + j] : init[0] == 0 ? 0f : ((float*)init[0])[stateAt + j];
                for (int j = 0; j < dh; j++)
                {
                    int u = h * dh + j;
                    float dH = dy[((long)b * v.T + t) * hd + u] + dhNext[j];
                    switch (p.Cell)
                    {
                        case RnnCell.Lstm:
                        {
                            float i = row[u], f = row[hd + u], g = row[2 * hd + u], o = row[3 * hd + u], c = row[4 * hd + u];
                            float cPrev = t > 0 ? rowPrev![4 * hd + u] : init[1] == 0 ? 0f : ((float*)init[1])[stateAt + j];
                            float tc = MathF.Tanh(c);
                            float dc = dcNext[j] + dH * o * (1f - tc * tc);
                            dq[j] = dc * g * i * (1f - i);
                            dq[dh + j] = dc * cPrev * f * (1f - f);
                            dq[2 * dh + j] = dc * i * (1f - g * g);
                            dq[3 * dh + j] = dH * tc * o * (1f - o);
                            dcNext[j] = dc * f;
                            for (int gg = 0; gg < 4; gg++) dx[v.XIndex(b, t, gg, h, j)] = dq[gg * dh + j];
                            dhNext[j] = 0f;
                            break;
                        }
                        case RnnCell.Gru:
                        {
                            float r = row[u], z = row[hd + u], n = row[2 * hd + u], q = row[3 * hd + u];
                            float dn = dH * (1f - z), dz = dH * (hPrev[j] - n);
                            float daN = dn * (1f - n * n);
                            dq[j] = daN * q * r * (1f - r);
                            dq[dh + j] = dz * z * (1f - z);
                            dq[2 * dh + j] = daN * r;          // through r * (R_n h + b_hn)
                            dx[v.XIndex(b, t, 0, h, j)] = dq[j];
                            dx[v.XIndex(b, t, 1, h, j)] = dq[dh + j];
                            dx[v.XIndex(b, t, 2, h, j)] = daN;
                            dhNext[j] = dH * z;
                            break;
                        }
                        case RnnCell.SLstm:
                        {
                            // m is a stabiliser: h does not depend on it, so no gradient flows through it.
                            float ip = row[u], fp = row[hd + u], z = row[2 * hd + u], o = row[3 * hd + u];
                            float c = row[5 * hd + u], n = row[6 * hd + u];
                            float cPrev = t > 0 ? rowPrev![5 * hd + u] : init[1] == 0 ? 0f : ((float*)init[1])[stateAt + j];
                            float nPrev = t > 0 ? rowPrev![6 * hd + u] : init[2] == 0 ? 0f : ((float*)init[2])[stateAt + j];
                            float fTilde = v.X[v.XIndex(b, t, 1, h, j)] + v.BiasAt(1, h, j) + TensorPrimitives.Dot(new ReadOnlySpan<float>(v.RRow(h, 1, j), dh), hPrev);
                            float dO = dH * c / n;
                            float dc = dcNext[j] + dH * o / n;
                            float dn = dnNext[j] - dH * o * c / (n * n);
                            float dfp = dc * cPrev + dn * nPrev, dip = dc * z + dn, dz = dc * ip;
                            dq[j] = dip * ip;                                        // i~
                            dq[dh + j] = dfp * fp * (1f - CellMath.Sigmoid(fTilde));  // f~ through log sigmoid
                            dq[2 * dh + j] = dz * (1f - z * z);
                            dq[3 * dh + j] = dO * o * (1f - o);
                            dcNext[j] = dc * fp;
                            dnNext[j] = dn * fp;
                            for (int gg = 0; gg < 4; gg++) dx[v.XIndex(b, t, gg, h, j)] = dq[gg * dh + j];
                            dhNext[j] = 0f;
                            break;
                        }
                        default:
                        {
                            float hv = y[((long)b * v.T + t) * hd + u];
                            dq[j] = dH * (1f - hv * hv);
                            dx[v.XIndex(b, t, 0, h, j)] = dq[j];
                            dhNext[j] = 0f;
                            break;
                        }
                    }
                }
                // dh_{t-1} += R^T dq;  dR += dq h_{t-1}^T;  dbias += dq
                for (int g = 0; g < gates; g++)
                    for (int j = 0; j < dh; j++)
                    {
                        float d = dq[g * dh + j];
                        if (d == 0f) continue;
                        var rRow = new ReadOnlySpan<float>(v.RRow(h, g, j), dh);
                        TensorPrimitives.MultiplyAdd(rRow, d, dhNext, dhNext);
                        var acc = localR.AsSpan((g * dh + j) * dh, dh);
                        TensorPrimitives.MultiplyAdd(hPrev, d, acc, acc);
                        localBias[g * dh + j] += d;
                    }
            }
            for (int j = 0; j < dh; j++)
            {
                if (dInit[0] != 0) ((float*)dInit[0])[stateAt + j] = dhNext[j];
                if (dInit.Length > 1 && dInit[1] != 0) ((float*)dInit[1])[stateAt + j] = dcNext[j];
                if (dInit.Length > 2 && dInit[2] != 0) ((float*)dInit[2])[stateAt + j] = dnNext[j];
                if (dInit.Length > 3 && dInit[3] != 0) ((float*)dInit[3])[stateAt + j] = 0f;
            }
            lock (locks[h])
            {
                float* headR = dR + (long)h * gates * dh * dh;
                for (int i = 0; i < localR.Length; i++) headR[i] += localR[i];
                if (dBias != null)
                    for (int g = 0; g < gates; g++)
                        for (int j = 0; j < dh; j++) dBias[g * hd + h * dh + j] += localBias[g * dh + j];
            }
        });
    }

    private static void ForEachPair(RnnProblem p, int threads, Action<int, int> body)
    {
        int items = p.Batch * p.Heads;
        if (items <= 1 || threads == 1) { for (int i = 0; i < items; i++) body(i / p.Heads, i % p.Heads); return; }
        Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = threads }, i => body(i / p.Heads, i % p.Heads));
    }
}
