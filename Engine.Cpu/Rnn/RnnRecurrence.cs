using System.Numerics.Tensors;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>Head-wise recurrent cells on the CPU. Heads are independent recurrences (R is
/// block-diagonal), so each head runs on its own: per step one GEMM gives the recurrent
/// pre-activations of the whole batch, A [B, G*Dh] = h_{t-1} [B, Dh] R_h^T, then the cell's
/// pointwise math runs per (batch row, unit). Heads run in parallel when there are enough of them,
/// otherwise the per-step GEMM uses the threads.
/// Saved per (b, t), for the backward: the cell's activated gates, then its extra states (see
/// RnnCells.SavedPerUnit / ExtraStates), each a block of H*Dh values.
/// The backward keeps the recurrent-part gradients dq [T, B, G*Dh] and h_{t-1} [T, B, Dh] of a head
/// and forms dR_h = dq^T h_{t-1} as one GEMM after the time loop.</summary>
internal static unsafe class RnnRecurrence
{
    private sealed class View(RnnProblem p)
    {
        public readonly RnnCell Cell = p.Cell;
        public readonly int B = p.Batch, T = p.Steps, H = p.Heads, Dh = p.HeadDim, G = p.Gates, Hd = p.Hidden;
        public readonly int SavedWidth = (p.Cell.SavedPerUnit() + p.Cell.ExtraStates()) * p.Hidden;
        public readonly float* X = CpuBackend.F32(p.Preactivations), R = CpuBackend.F32(p.RecurrentWeights);
        public readonly float* Bias = p.RecurrentBias is null ? null : CpuBackend.F32(p.RecurrentBias);
        public long XIndex(int b, int t, int g, int h, int j) => ((long)b * T + t) * G * Hd + g * Hd + h * Dh + j;
        public float* RHead(int h) => R + (long)h * G * Dh * Dh;
        public float BiasAt(int g, int h, int j) => Bias == null ? 0f : Bias[g * Hd + h * Dh + j];
    }

    private static float* Ptr(Tensor? t) => t is null ? null : CpuBackend.F32(t);

    // Pointers of optional state tensors (0 where absent), as nint so they fit in arrays and lambdas.
    private static nint[] Pointers(IReadOnlyList<Tensor?> tensors) => tensors.Select(t => (nint)Ptr(t)).ToArray();

    private static float State(nint tensor, long at) => tensor == 0 ? 0f : ((float*)tensor)[at];

    public static void Forward(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finals, Tensor? saved, int threads)
    {
        var v = new View(p);
        float* y = CpuBackend.F32(outputs), sv = Ptr(saved);
        var init = Pointers(p.InitialStates);
        var fin = Pointers(finals);
        int extra = p.Cell.ExtraStates();
        ForEachHead(v, threads, (h, _) =>
        {
            int dh = v.Dh, hd = v.Hd, rows = v.G * dh;
            var hPrev = new float[v.B * dh];
            var hNew = new float[v.B * dh];
            var a = new float[v.B * rows];
            var states = new float[extra * v.B * dh];      // [e][b][j]
            var rT = new float[dh * rows];                  // R_h^T [Dh, G*Dh], so each step reads rows of it
            float* rh = v.RHead(h);
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < dh; k++) rT[k * rows + r] = rh[(long)r * dh + k];
            for (int b = 0; b < v.B; b++)
                for (int j = 0; j < dh; j++)
                {
                    long at = (long)b * hd + h * dh + j;
                    hPrev[b * dh + j] = State(init[0], at);
                    for (int e = 0; e < extra; e++) states[(e * v.B + b) * dh + j] = State(init[e + 1], at);
                }
            fixed (float* pPrev = hPrev, pA = a, pRT = rT)
                for (int t = 0; t < v.T; t++)
                {
                    // A = h_{t-1} R_h^T
                    SmallRowsProduct.Multiply(pPrev, v.B, dh, pRT, rows, pA, accumulate: false);
                    for (int b = 0; b < v.B; b++)
                    {
                        float* savedRow = sv == null ? null : sv + ((long)b * v.T + t) * v.SavedWidth;
                        for (int j = 0; j < dh; j++)
                        {
                            int u = h * dh + j;
                            float Pre(int g) => v.X[v.XIndex(b, t, g, h, j)] + a[b * rows + g * dh + j] + v.BiasAt(g, h, j);
                            float hv;
                            switch (v.Cell)
                            {
                                case RnnCell.Lstm:
                                {
                                    ref float c = ref states[b * dh + j];
                                    float i = CellMath.Sigmoid(Pre(0)), f = CellMath.Sigmoid(Pre(1)), g = MathF.Tanh(Pre(2)), o = CellMath.Sigmoid(Pre(3));
                                    c = f * c + i * g;
                                    hv = o * MathF.Tanh(c);
                                    if (savedRow != null) { savedRow[u] = i; savedRow[hd + u] = f; savedRow[2 * hd + u] = g; savedRow[3 * hd + u] = o; savedRow[4 * hd + u] = c; }
                                    break;
                                }
                                case RnnCell.Gru:
                                {
                                    float r = CellMath.Sigmoid(Pre(0)), z = CellMath.Sigmoid(Pre(1));
                                    float q = a[b * rows + 2 * dh + j] + v.BiasAt(2, h, j);
                                    float n = MathF.Tanh(v.X[v.XIndex(b, t, 2, h, j)] + r * q);
                                    hv = (1f - z) * n + z * hPrev[b * dh + j];
                                    if (savedRow != null) { savedRow[u] = r; savedRow[hd + u] = z; savedRow[2 * hd + u] = n; savedRow[3 * hd + u] = q; }
                                    break;
                                }
                                case RnnCell.SLstm:
                                {
                                    ref float c = ref states[b * dh + j];
                                    ref float n = ref states[(v.B + b) * dh + j];
                                    ref float m = ref states[(2 * v.B + b) * dh + j];
                                    float iTilde = Pre(0), logF = CellMath.LogSigmoid(Pre(1));
                                    float mNew = MathF.Max(logF + m, iTilde);
                                    float ip = MathF.Exp(iTilde - mNew), fp = MathF.Exp(logF + m - mNew);
                                    float z = MathF.Tanh(Pre(2)), o = CellMath.Sigmoid(Pre(3));
                                    c = fp * c + ip * z;
                                    n = fp * n + ip;
                                    m = mNew;
                                    hv = o * c / n;
                                    if (savedRow != null)
                                    {
                                        savedRow[u] = ip; savedRow[hd + u] = fp; savedRow[2 * hd + u] = z; savedRow[3 * hd + u] = o; savedRow[4 * hd + u] = m;
                                        savedRow[5 * hd + u] = c; savedRow[6 * hd + u] = n; savedRow[7 * hd + u] = m;
                                    }
                                    break;
                                }
                                default:
                                    hv = MathF.Tanh(Pre(0));
                                    break;
                            }
                            hNew[b * dh + j] = hv;
                            y[((long)b * v.T + t) * hd + u] = hv;
                        }
                    }
                    hNew.CopyTo(hPrev, 0);
                }
            for (int b = 0; b < v.B; b++)
                for (int j = 0; j < dh; j++)
                {
                    long at = (long)b * hd + h * dh + j;
                    if (fin[0] != 0) ((float*)fin[0])[at] = hPrev[b * dh + j];
                    for (int e = 0; e < extra; e++) if (fin[e + 1] != 0) ((float*)fin[e + 1])[at] = states[(e * v.B + b) * dh + j];
                }
        });
    }

    /// <summary>BPTT per head, reverse time. With da a gate pre-activation's gradient: dx = da (GRU's n
    /// gate: da_n); the recurrent part's gradient dq (= da, or r da_n for GRU's n gate) gives
    /// dh_{t-1} += dq R_h (one GEMM per step), and after the loop dR_h = dq^T h_{t-1} over all
    /// (t, b) (one GEMM) and dbias = the column sums of dq.</summary>
    public static void Backward(RnnProblem p, Tensor outputs, Tensor saved, RnnGradients grads, int threads)
    {
        var v = new View(p);
        float* y = CpuBackend.F32(outputs), sv = CpuBackend.F32(saved), dy = CpuBackend.F32(grads.DOutputs);
        float* dx = CpuBackend.F32(grads.DPreactivations), dBias = Ptr(grads.DRecurrentBias);
        var init = Pointers(p.InitialStates);
        var dFin = Pointers(grads.DFinalStates);
        var dInit = Pointers(grads.DInitialStates);
        ForEachHead(v, threads, (h, _) =>
        {
            int dh = v.Dh, hd = v.Hd, rows = v.G * dh, batch = v.B;
            var dhNext = new float[batch * dh];               // gradient reaching h_t from later steps
            var dcNext = new float[batch * dh];               // LSTM, sLSTM: reaching c_t
            var dnNext = new float[batch * dh];               // sLSTM: reaching n_t
            var backend = (CpuBackend)p.Preactivations.Backend;
            using var dqAll = Tensor.Empty(backend, new Shape(v.T * batch, rows));     // [t][b][row]
            using var hPrevAll = Tensor.Empty(backend, new Shape(v.T * batch, dh));    // [t][b][j]
            for (int b = 0; b < batch; b++)
                for (int j = 0; j < dh; j++)
                {
                    long at = (long)b * hd + h * dh + j;
                    dhNext[b * dh + j] = State(dFin[0], at);
                    if (v.Cell == RnnCell.Lstm && dFin.Length > 1) dcNext[b * dh + j] = State(dFin[1], at);
                }
            float* pDq = CpuBackend.F32(dqAll), pHp = CpuBackend.F32(hPrevAll);
            fixed (float* pDh = dhNext)
            {
                for (int t = v.T - 1; t >= 0; t--)
                {
                    float* dq = pDq + (long)t * batch * rows;
                    float* hPrev = pHp + (long)t * batch * dh;
                    for (int b = 0; b < batch; b++)
                    {
                        float* row = sv + ((long)b * v.T + t) * v.SavedWidth;
                        float* rowPrev = t > 0 ? sv + ((long)b * v.T + t - 1) * v.SavedWidth : null;
                        for (int j = 0; j < dh; j++)
                        {
                            int u = h * dh + j, k = b * dh + j;
                            long stateAt = (long)b * hd + u;
                            hPrev[k] = t > 0 ? y[((long)b * v.T + t - 1) * hd + u] : State(init[0], stateAt);
                            float dH = dy[((long)b * v.T + t) * hd + u] + dhNext[k];
                            float* dqRow = dq + b * rows;
                            switch (v.Cell)
                            {
                                case RnnCell.Lstm:
                                {
                                    float i = row[u], f = row[hd + u], g = row[2 * hd + u], o = row[3 * hd + u], c = row[4 * hd + u];
                                    float cPrev = rowPrev != null ? rowPrev[4 * hd + u] : State(init[1], stateAt);
                                    float tc = MathF.Tanh(c);
                                    float dc = dcNext[k] + dH * o * (1f - tc * tc);
                                    dqRow[j] = dc * g * i * (1f - i);
                                    dqRow[dh + j] = dc * cPrev * f * (1f - f);
                                    dqRow[2 * dh + j] = dc * i * (1f - g * g);
                                    dqRow[3 * dh + j] = dH * tc * o * (1f - o);
                                    dcNext[k] = dc * f;
                                    for (int gg = 0; gg < 4; gg++) dx[v.XIndex(b, t, gg, h, j)] = dqRow[gg * dh + j];
                                    dhNext[k] = 0f;
                                    break;
                                }
                                case RnnCell.Gru:
                                {
                                    float r = row[u], z = row[hd + u], n = row[2 * hd + u], q = row[3 * hd + u];
                                    float dn = dH * (1f - z), dz = dH * (hPrev[k] - n);
                                    float daN = dn * (1f - n * n);
                                    dqRow[j] = daN * q * r * (1f - r);
                                    dqRow[dh + j] = dz * z * (1f - z);
                                    dqRow[2 * dh + j] = daN * r;          // through r (R_n h + b_hn)
                                    dx[v.XIndex(b, t, 0, h, j)] = dqRow[j];
                                    dx[v.XIndex(b, t, 1, h, j)] = dqRow[dh + j];
                                    dx[v.XIndex(b, t, 2, h, j)] = daN;
                                    dhNext[k] = dH * z;
                                    break;
                                }
                                case RnnCell.SLstm:
                                {
                                    // m is a stabiliser: h does not depend on it, so no gradient flows through it.
                                    float ip = row[u], fp = row[hd + u], z = row[2 * hd + u], o = row[3 * hd + u];
                                    float c = row[5 * hd + u], n = row[6 * hd + u];
                                    float cPrev = rowPrev != null ? rowPrev[5 * hd + u] : State(init[1], stateAt);
                                    float nPrev = rowPrev != null ? rowPrev[6 * hd + u] : State(init[2], stateAt);
                                    // f~ again: sigmoid(f~) = exp(log f), and log f = log f' + m_t - m_{t-1}
                                    float mPrev = rowPrev != null ? rowPrev[7 * hd + u] : State(init[3], stateAt);
                                    float sigmoidF = MathF.Exp(MathF.Log(fp) + row[4 * hd + u] - mPrev);
                                    float dO = dH * c / n;
                                    float dc = dcNext[k] + dH * o / n;
                                    float dnv = dnNext[k] - dH * o * c / (n * n);
                                    float dfp = dc * cPrev + dnv * nPrev, dip = dc * z + dnv, dz = dc * ip;
                                    dqRow[j] = dip * ip;
                                    dqRow[dh + j] = dfp * fp * (1f - sigmoidF);
                                    dqRow[2 * dh + j] = dz * (1f - z * z);
                                    dqRow[3 * dh + j] = dO * o * (1f - o);
                                    dcNext[k] = dc * fp;
                                    dnNext[k] = dnv * fp;
                                    for (int gg = 0; gg < 4; gg++) dx[v.XIndex(b, t, gg, h, j)] = dqRow[gg * dh + j];
                                    dhNext[k] = 0f;
                                    break;
                                }
                                default:
                                {
                                    float hv = y[((long)b * v.T + t) * hd + u];
                                    dqRow[j] = dH * (1f - hv * hv);
                                    dx[v.XIndex(b, t, 0, h, j)] = dqRow[j];
                                    dhNext[k] = 0f;
                                    break;
                                }
                            }
                        }
                    }
                    // dh_{t-1} += dq R_h   ([B, G*Dh] x [G*Dh, Dh])
                    SmallRowsProduct.Multiply(dq, batch, rows, v.RHead(h), dh, pDh, accumulate: true);
                }
                // dR_h = dq^T h_{t-1} over all (t, b): [G*Dh, T*B] x [T*B, Dh]
                Ops.Gemm.Forward(dqAll, hPrevAll, grads.DRecurrentWeights.SliceRows(h, 1).Reshape(new Shape(rows, dh)), transposeA: true);
            }
            if (dBias != null)
                for (int r = 0; r < rows; r++)
                {
                    double sum = 0;
                    for (long i = 0; i < (long)v.T * batch; i++) sum += pDq[i * rows + r];
                    dBias[r / dh * hd + h * dh + r % dh] = (float)sum;
                }
            for (int b = 0; b < batch; b++)
                for (int j = 0; j < dh; j++)
                {
                    long at = (long)b * hd + h * dh + j;
                    int k = b * dh + j;
                    if (dInit[0] != 0) ((float*)dInit[0])[at] = dhNext[k];
                    if (dInit.Length > 1 && dInit[1] != 0) ((float*)dInit[1])[at] = dcNext[k];
                    if (dInit.Length > 2 && dInit[2] != 0) ((float*)dInit[2])[at] = dnNext[k];
                    if (dInit.Length > 3 && dInit[3] != 0) ((float*)dInit[3])[at] = 0f;
                }
        });
    }

    // Heads in parallel when there are at least as many as threads; otherwise one head at a time
    // with the threads inside its per-step GEMMs.
    private static void ForEachHead(View v, int threads, Action<int, int> body)
    {
        if (v.H >= threads && threads > 1)
            Parallel.For(0, v.H, new ParallelOptions { MaxDegreeOfParallelism = threads }, h => body(h, 1));
        else
            for (int h = 0; h < v.H; h++) body(h, threads);
    }
}
