using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using FastWeights.Engine.Ops;
using static FastWeights.Engine.Cpu.Rnn.CellMath;
using V = System.Runtime.Intrinsics.Vector256<float>;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>BPTT of one head, reverse time, split over parties by units as in <see cref="RnnForward"/>.
/// Per step each party turns the gradient reaching h_t (dy_t + dh_t from step t+1) of its units into
/// the gates' recurrent-part gradients dq_t (= da, or r da_n for GRU's n gate) and dx_t (= da; GRU's
/// n gate: da_n), writes dq_t [Bp, G*Dh] and h_{t-1} [Bp, Dh] into the call's buffers; after the
/// step's barrier (every party's dq_t written) it forms dh_{t-1} of its units as
/// dh_{t-1} (+)= dq_t R_h[:, its units] (W_p [G*Dh, Up] packed once). dq_t lives in its own slice of
/// the [T, Bp, G*Dh] buffer, so the next step's writes never meet this step's reads: one barrier per
/// step. After the loop the driver forms dR_h = dq^T h_{t-1} over all (t, b) as one GEMM; padded
/// batch rows hold zeros in both and add nothing.</summary>
internal sealed unsafe class RnnBackward : IDisposable
{
    private readonly RnnRecurrence.View _v;
    private readonly int _head, _bp;
    private readonly float* _y, _saved, _dy, _dx, _dBias, _dq, _hPrev;
    private readonly nint[] _init, _dFinal, _dInit;
    private readonly Party[] _parties;
    private readonly StepBarrier _barrier;

    private sealed class Party(RnnParties.Units units, int gates, int batchPadded, int batch, int headDim) : IDisposable
    {
        public readonly RnnParties.Units Units = units;
        public readonly NativeFloats Packed = new((long)gates * headDim * units.Padded);
        public readonly NativeFloats DhNext = new((long)batchPadded * units.Padded);   // gradient reaching h_t from later steps
        public readonly NativeFloats DcNext = new((long)batch * units.Padded);         // LSTM, sLSTM: reaching c_t
        public readonly NativeFloats DnNext = new((long)batch * units.Padded);         // sLSTM: reaching n_t
        public readonly NativeFloats DBias = new(gates * units.Padded);                // [g][jj], sum of dq over (t, b)

        public void Dispose() { Packed.Dispose(); DhNext.Dispose(); DcNext.Dispose(); DnNext.Dispose(); DBias.Dispose(); }
    }

    /// <summary>dq: [T, Bp, G*Dh] and hPrev: [T, Bp, Dh], both zeroed by the caller (see <see cref="BatchPadded"/>).</summary>
    public RnnBackward(RnnRecurrence.View v, int head, int parties, float* y, float* saved, float* dy, float* dx, float* dBias,
        float* dq, float* hPrev, nint[] init, nint[] dFinal, nint[] dInit)
    {
        _v = v; _head = head; _y = y; _saved = saved; _dy = dy; _dx = dx; _dBias = dBias; _dq = dq; _hPrev = hPrev;
        _init = init; _dFinal = dFinal; _dInit = dInit;
        _bp = BatchPadded(v.B);
        var split = RnnParties.Split(v.Dh, parties);
        _parties = split.Select(u => new Party(u, v.G, _bp, v.B, v.Dh)).ToArray();
        _barrier = new StepBarrier(_parties.Length);
        float* r = v.RHead(head);
        foreach (var p in _parties)
            StepProduct.Pack(v.G * v.Dh, p.Units.Padded, new Columns(r, v.Dh, p.Units.Start, p.Units.Count), p.Packed.Pointer);
    }

    public static int BatchPadded(int batch) => (batch + StepProduct.RowBlock - 1) / StepProduct.RowBlock * StepProduct.RowBlock;

    /// <summary>w[l, c] = R_h[l, start + c] for c &lt; count, else 0.</summary>
    private readonly struct Columns(float* r, int headDim, int start, int count) : StepProduct.ISource
    {
        public float At(int l, int c) => c < count ? r[(long)l * headDim + start + c] : 0f;
    }

    public void Run(int party)
    {
        var v = _v;
        var p = _parties[party];
        var units = p.Units;
        int up = units.Padded, rows = v.G * v.Dh;
        for (int b = 0; b < v.B; b++)
            for (int jj = 0; jj < units.Count; jj++)
            {
                long at = v.StateIndex(b, _head, units.Start + jj);
                p.DhNext.Pointer[b * up + jj] = RnnRecurrence.State(_dFinal[0], at);
                if (v.Cell == RnnCell.Lstm && _dFinal.Length > 1) p.DcNext.Pointer[b * up + jj] = RnnRecurrence.State(_dFinal[1], at);
            }
        for (int t = v.T - 1; t >= 0; t--)
        {
            float* dq = _dq + (long)t * _bp * rows;
            for (int b = 0; b < v.B; b++)
                for (int jj = 0; jj < units.Count; jj += V.Count)
                    Cell(p, b, t, jj, Math.Min(V.Count, units.Count - jj), dq, _hPrev + (long)t * _bp * v.Dh);
            _barrier.Wait();
            // dh_{t-1} (+)= dq_t R_h[:, units]   ([Bp, G*Dh] x [G*Dh, Up])
            StepProduct.Multiply(dq, rows, _bp, rows, p.Packed.Pointer, up, p.DhNext.Pointer, up, accumulate: true);
        }
        for (int b = 0; b < v.B; b++)
            for (int jj = 0; jj < units.Count; jj++)
            {
                long at = v.StateIndex(b, _head, units.Start + jj);
                int k = b * up + jj;
                if (_dInit[0] != 0) ((float*)_dInit[0])[at] = p.DhNext.Pointer[k];
                if (_dInit.Length > 1 && _dInit[1] != 0) ((float*)_dInit[1])[at] = p.DcNext.Pointer[k];
                if (_dInit.Length > 2 && _dInit[2] != 0) ((float*)_dInit[2])[at] = p.DnNext.Pointer[k];
                if (_dInit.Length > 3 && _dInit[3] != 0) ((float*)_dInit[3])[at] = 0f;
            }
        if (_dBias != null)
            for (int g = 0; g < v.G; g++)
                for (int jj = 0; jj < units.Count; jj++) _dBias[g * v.Hd + _head * v.Dh + units.Start + jj] = p.DBias.Pointer[g * up + jj];
    }

    // Units [start + jj, start + jj + n) of batch row b at step t.
    private void Cell(Party p, int b, int t, int jj, int n, float* dq, float* hPrevStep)
    {
        var v = _v;
        int up = p.Units.Padded, j = p.Units.Start + jj, u = _head * v.Dh + j;
        float* row = _saved + ((long)b * v.T + t) * v.SavedWidth + u;
        float* rowPrev = t > 0 ? _saved + ((long)b * v.T + t - 1) * v.SavedWidth + u : null;
        float* dqRow = dq + (long)b * v.G * v.Dh + j;
        float* dxRow = _dx + ((long)b * v.T + t) * v.G * v.Hd + u;
        float* dh = p.DhNext.Pointer + (long)b * up + jj, dc = p.DcNext.Pointer + (long)b * up + jj, dn = p.DnNext.Pointer + (long)b * up + jj;
        float* dBias = p.DBias.Pointer + jj;
        long stateAt = v.StateIndex(b, _head, j);
        var saved = new SavedRows(row, rowPrev, v.Hd, n);
        var gates = new GateGradients(dqRow, dxRow, dBias, v.Dh, v.Hd, up, n);
        V hPrev = t > 0 ? Load(_y + ((long)b * v.T + t - 1) * v.Hd + u, n) : Load(InitialState(0, stateAt), n);
        Store(hPrev, hPrevStep + (long)b * v.Dh + j, n);
        V dH = Load(_dy + ((long)b * v.T + t) * v.Hd + u, n) + Vector256.Load(dh);
        V one = V.One;
        switch (v.Cell)
        {
            case RnnCell.Lstm:
            {
                // dc = dc_{t+1} + dh o (1 - tanh^2 c); da_i = dc g i(1-i), da_f = dc c_{t-1} f(1-f),
                // da_g = dc i (1-g^2), da_o = dh tanh(c) o(1-o); dc_{t-1} = dc f
                V i = saved.At(0), f = saved.At(1), g = saved.At(2), o = saved.At(3), c = saved.At(4), cPrev = saved.Before(4, InitialState(1, stateAt));
                V tc = Tanh(c);
                V dcv = Vector256.Load(dc) + dH * o * (one - tc * tc);
                V di = dcv * g * i * (one - i), df = dcv * cPrev * f * (one - f), dg = dcv * i * (one - g * g), dO = dH * tc * o * (one - o);
                gates.Put(0, di, di); gates.Put(1, df, df); gates.Put(2, dg, dg); gates.Put(3, dO, dO);
                Vector256.Store(dcv * f, dc);
                Vector256.Store(V.Zero, dh);
                break;
            }
            case RnnCell.Gru:
            {
                // dn = dh (1-z), dz = dh (h_{t-1} - n), da_n = dn (1-n^2); dq_r = da_n q r(1-r),
                // dq_z = dz z(1-z), dq_n = da_n r (through r (R_n h + b_hn)); dh_{t-1} = dh z + dq R
                V r = saved.At(0), z = saved.At(1), nGate = saved.At(2), q = saved.At(3);
                V daN = dH * (one - z) * (one - nGate * nGate);
                V dr = daN * q * r * (one - r), dz = dH * (hPrev - nGate) * z * (one - z);
                gates.Put(0, dr, dr); gates.Put(1, dz, dz); gates.Put(2, daN * r, daN);
                Vector256.Store(dH * z, dh);
                break;
            }
            case RnnCell.SLstm:
            {
                // m is a stabiliser: h does not depend on it, so no gradient flows through it.
                // h = o c/n: do = dh c/n, dc += dh o/n, dn -= dh o c/n^2; c = f' c_{t-1} + i' z, n = f' n_{t-1} + i':
                // df' = dc c_{t-1} + dn n_{t-1}, di' = dc z + dn, dz = dc i'; i' = exp(i~ - m): da_i = di' i';
                // f' = sigmoid(f~) e^{m_{t-1} - m}: da_f = df' f' (1 - sigmoid(f~)); sigmoid(f~) = exp(log f' + m - m_{t-1})
                V ip = saved.At(0), fp = saved.At(1), z = saved.At(2), o = saved.At(3), m = saved.At(4), c = saved.At(5), nn = saved.At(6);
                V cPrev = saved.Before(5, InitialState(1, stateAt)), nPrev = saved.Before(6, InitialState(2, stateAt)), mPrev = saved.Before(7, InitialState(3, stateAt));
                V sigmoidF = Exp(Vector256.Log(fp) + m - mPrev);
                V dO = dH * c / nn, dcv = Vector256.Load(dc) + dH * o / nn, dnv = Vector256.Load(dn) - dH * o * c / (nn * nn);
                V dfp = dcv * cPrev + dnv * nPrev, dip = dcv * z + dnv, dz = dcv * ip;
                V gi = dip * ip, gf = dfp * fp * (one - sigmoidF), gz = dz * (one - z * z), go = dO * o * (one - o);
                gates.Put(0, gi, gi); gates.Put(1, gf, gf); gates.Put(2, gz, gz); gates.Put(3, go, go);
                Vector256.Store(dcv * fp, dc);
                Vector256.Store(dnv * fp, dn);
                Vector256.Store(V.Zero, dh);
                break;
            }
            default:
            {
                // h = tanh(a): da = dh (1 - h^2)
                V hv = Load(_y + ((long)b * v.T + t) * v.Hd + u, n);
                V da = dH * (one - hv * hv);
                gates.Put(0, da, da);
                Vector256.Store(V.Zero, dh);
                break;
            }
        }
    }

    private float* InitialState(int state, long at) => _init[state] == 0 ? null : (float*)_init[state] + at;

    /// <summary>Saved quantity q of one batch row's 8 units at step t (row) and t-1 (rowPrev, null at t = 0).</summary>
    private readonly struct SavedRows(float* row, float* rowPrev, int hd, int n)
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public V At(int q) => Load(row + q * hd, n);

        /// <summary>A state at t-1: saved quantity q of the previous step, or the initial state (null: zeros) at t = 0.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public V Before(int q, float* initial) => rowPrev != null ? Load(rowPrev + q * hd, n) : Load(initial, n);
    }

    /// <summary>Where gate g's gradients go: dq_g to the step's buffer (stride dh per gate) and the
    /// bias sum (stride up), dx_g to the pre-activations' gradient (stride hd).</summary>
    private readonly struct GateGradients(float* dqRow, float* dxRow, float* dBias, int dh, int hd, int up, int n)
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Put(int g, V dq, V dx)
        {
            Store(dq, dqRow + g * dh, n);
            Store(dx, dxRow + g * hd, n);
            Vector256.Store(Vector256.Load(dBias + g * up) + dq, dBias + g * up);
        }
    }

    public void Dispose()
    {
        foreach (var p in _parties) p.Dispose();
    }
}
