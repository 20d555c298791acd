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
internal sealed unsafe class RnnBackward : IPartyHead
{
    private readonly RnnRecurrence.View _v;
    private readonly int _head, _bp;
    private readonly float* _y, _saved, _dy, _dx, _dBias, _dq, _hPrev;
    private readonly nint[] _init, _dFinal, _dInit;
    private readonly Party[] _parties;
    private readonly NativeFloats _zeros;                 // stands for an absent initial state

    private sealed class Party(RnnParties.Units units, int gates, int batchPadded, int batch, int headDim) : IDisposable
    {
        public readonly RnnParties.Units Units = units;
        public readonly NativeFloats Packed = new((long)gates * headDim * units.Padded, zeroed: false);
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
        Barrier = new StepBarrier(_parties.Length);
        _zeros = new NativeFloats((v.Dh + 7) & ~7);
    }

    public static int BatchPadded(int batch) => (batch + StepProduct.RowBlock - 1) / StepProduct.RowBlock * StepProduct.RowBlock;

    /// <summary>w[l, c] = R_h[l, start + c] for c &lt; count (column start + c of R_h, element stride
    /// Dh), else 0.</summary>
    private readonly struct Columns(float* r, int start, int count) : StepProduct.IColumns
    {
        public float* Column(int c) => c < count ? r + start + c : null;
    }

    public StepBarrier Barrier { get; }

    public void Run(int party)
    {
        var v = _v;
        var p = _parties[party];
        var units = p.Units;
        int up = units.Padded, rows = v.G * v.Dh;
        // Every party packs its own columns of R, as in the forward.
        StepProduct.Pack(rows, up, new Columns(v.RHead(_head), units.Start, units.Count), v.Dh, p.Packed.Pointer);
        for (int b = 0; b < v.B; b++)
            for (int jj = 0; jj < units.Count; jj++)
            {
                long at = v.StateIndex(b, _head, units.Start + jj);
                p.DhNext.Pointer[b * up + jj] = RnnRecurrence.State(_dFinal[0], at);
                if (v.Cell == RnnCell.Lstm && _dFinal.Length > 1) p.DcNext.Pointer[b * up + jj] = RnnRecurrence.State(_dFinal[1], at);
            }
        for (int t = v.T - 1; t >= 0; t--)
        {
            RnnParties.StepHook?.Invoke((nint)v.X, party, t);
            float* dq = _dq + (long)t * _bp * rows;
            for (int b = 0; b < v.B; b++) Row(p, b, t, dq, _hPrev + (long)t * _bp * v.Dh);
            Barrier.Wait();
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

    // Batch row b at step t: the party's units, 8 at a time, one method per cell (as in the forward).
    private void Row(Party p, int b, int t, float* dq, float* hPrevStep)
    {
        var v = _v;
        int up = p.Units.Padded, j = p.Units.Start, u = _head * v.Dh + j;
        long stateAt = v.StateIndex(b, _head, j);
        float* saved = _saved + ((long)b * v.T + t) * v.SavedWidth + u;
        float* savedPrev = t > 0 ? saved - v.SavedWidth : null;
        // A state at t-1: saved quantity q of step t-1, or at t = 0 the initial state (zeros if absent).
        float* Before(int q, int state) => savedPrev != null ? savedPrev + q * v.Hd : InitialState(state, stateAt);
        int c = v.Cell == RnnCell.SLstm ? 5 : 4;     // where c sits in the saved row (LSTM i, f, g, o, c; sLSTM i', f', z, o, m, c, n, m)
        var row = new RowPointers(saved, Before(c, 1), Before(c + 1, 2), Before(c + 2, 3),
            dq + (long)b * v.G * v.Dh + j, _dx + ((long)b * v.T + t) * v.G * v.Hd + u, p.DBias.Pointer,
            p.DhNext.Pointer + (long)b * up, p.DcNext.Pointer + (long)b * up, p.DnNext.Pointer + (long)b * up,
            t > 0 ? _y + ((long)b * v.T + t - 1) * v.Hd + u : InitialState(0, stateAt),
            hPrevStep + (long)b * v.Dh + j, _dy + ((long)b * v.T + t) * v.Hd + u, _y + ((long)b * v.T + t) * v.Hd + u, v.Dh, v.Hd, up);
        switch (v.Cell)
        {
            case RnnCell.Lstm: ForUnits<LstmUnits, RowPointers>(row, p.Units.Count); break;
            case RnnCell.Gru: ForUnits<GruUnits, RowPointers>(row, p.Units.Count); break;
            case RnnCell.SLstm: ForUnits<SLstmUnits, RowPointers>(row, p.Units.Count); break;
            default: ForUnits<ElmanUnits, RowPointers>(row, p.Units.Count); break;
        }
    }

    /// <summary>The initial state's row for unit (b, start) of the party, or a row of zeros when absent.</summary>
    private float* InitialState(int state, long at) => state < _init.Length && _init[state] != 0 ? (float*)_init[state] + at : _zeros.Pointer;

    /// <summary>Where batch row b's quantities start at this step (unit jj of the party at + jj): the
    /// saved row of t (quantity q at + q*hd), the states c, n, m at t-1 (see Row), the dq_t and dx_t
    /// rows (gate g at + g*headDim, + g*hd), the bias sum, the gradients reaching h, c, n from later
    /// steps, h_{t-1} and its copy for dR, dy_t and h_t.</summary>
    private readonly struct RowPointers(float* saved, float* cPrev, float* nPrev, float* mPrev, float* dq, float* dx, float* dBias,
        float* dh, float* dc, float* dn, float* hPrev, float* hPrevCopy, float* dy, float* h, int headDim, int hd, int up)
    {
        public readonly float* Saved = saved, CPrev = cPrev, NPrev = nPrev, MPrev = mPrev, Dq = dq, Dx = dx, DBias = dBias;
        public readonly float* Dh = dh, Dc = dc, Dn = dn, HPrev = hPrev, HPrevCopy = hPrevCopy, Dy = dy, H = h;
        public readonly int HeadDim = headDim, Hd = hd, Up = up;

        /// <summary>Saved quantity q at step t.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public V SavedAt<TL>(int q, int jj, int n) where TL : struct, ILanes => TL.Load(Saved + q * Hd + jj, n);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public GateGradients<TL> GatesAt<TL>(int jj, int n) where TL : struct, ILanes => new(Dq + jj, Dx + jj, DBias + jj, HeadDim, Hd, Up, n);

        /// <summary>h_{t-1}, also copied for dR.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public V HPrevAt<TL>(int jj, int n) where TL : struct, ILanes
        {
            V hPrev = TL.Load(HPrev + jj, n);
            TL.Store(hPrev, HPrevCopy + jj, n);
            return hPrev;
        }

        /// <summary>The gradient reaching h_t: dy_t + what steps after t sent back.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public V DhAt<TL>(int jj, int n) where TL : struct, ILanes => TL.Load(Dy + jj, n) + Vector256.Load(Dh + jj);
    }

    // Each cell's pointwise work on units [jj, jj + n) of a row, for CellMath.ForUnits.
    private readonly struct LstmUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes
        {
            var gates = row.GatesAt<TL>(jj, n);
            row.HPrevAt<TL>(jj, n);
            V dH = row.DhAt<TL>(jj, n), one = V.One;
            float* dc = row.Dc + jj;
            // dc = dc_{t+1} + dh o (1 - tanh^2 c); da_i = dc g i(1-i), da_f = dc c_{t-1} f(1-f),
            // da_g = dc i (1-g^2), da_o = dh tanh(c) o(1-o); dc_{t-1} = dc f
            V i = row.SavedAt<TL>(0, jj, n), f = row.SavedAt<TL>(1, jj, n), g = row.SavedAt<TL>(2, jj, n), o = row.SavedAt<TL>(3, jj, n);
            V c = row.SavedAt<TL>(4, jj, n), cPrev = TL.Load(row.CPrev + jj, n);
            V tc = Tanh(c);
            V dcv = Vector256.Load(dc) + dH * o * (one - tc * tc);
            V di = dcv * g * i * (one - i), df = dcv * cPrev * f * (one - f), dg = dcv * i * (one - g * g), dO = dH * tc * o * (one - o);
            gates.Put(0, di, di); gates.Put(1, df, df); gates.Put(2, dg, dg); gates.Put(3, dO, dO);
            Vector256.Store(dcv * f, dc);
            Vector256.Store(V.Zero, row.Dh + jj);
        }
    }

    private readonly struct GruUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes
        {
            var gates = row.GatesAt<TL>(jj, n);
            V hPrev = row.HPrevAt<TL>(jj, n);
            V dH = row.DhAt<TL>(jj, n), one = V.One;
            // dn = dh (1-z), dz = dh (h_{t-1} - n), da_n = dn (1-n^2); dq_r = da_n q r(1-r),
            // dq_z = dz z(1-z), dq_n = da_n r (through r (R_n h + b_hn)); dh_{t-1} = dh z + dq R
            V r = row.SavedAt<TL>(0, jj, n), z = row.SavedAt<TL>(1, jj, n), nGate = row.SavedAt<TL>(2, jj, n), q = row.SavedAt<TL>(3, jj, n);
            V daN = dH * (one - z) * (one - nGate * nGate);
            V dr = daN * q * r * (one - r), dz = dH * (hPrev - nGate) * z * (one - z);
            gates.Put(0, dr, dr); gates.Put(1, dz, dz); gates.Put(2, daN * r, daN);
            Vector256.Store(dH * z, row.Dh + jj);
        }
    }

    private readonly struct SLstmUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes
        {
            var gates = row.GatesAt<TL>(jj, n);
            row.HPrevAt<TL>(jj, n);
            V dH = row.DhAt<TL>(jj, n), one = V.One;
            float* dc = row.Dc + jj, dn = row.Dn + jj;
            // m is a stabiliser: h does not depend on it, so no gradient flows through it.
            // h = o c/n: do = dh c/n, dc += dh o/n, dn -= dh o c/n^2; c = f' c_{t-1} + i' z, n = f' n_{t-1} + i':
            // df' = dc c_{t-1} + dn n_{t-1}, di' = dc z + dn, dz = dc i'; i' = exp(i~ - m): da_i = di' i';
            // f' = sigmoid(f~) e^{m_{t-1} - m}: da_f = df' f' (1 - sigmoid(f~)); sigmoid(f~) = exp(log f' + m - m_{t-1})
            V ip = row.SavedAt<TL>(0, jj, n), fp = row.SavedAt<TL>(1, jj, n), z = row.SavedAt<TL>(2, jj, n), o = row.SavedAt<TL>(3, jj, n);
            V m = row.SavedAt<TL>(4, jj, n), c = row.SavedAt<TL>(5, jj, n), nn = row.SavedAt<TL>(6, jj, n);
            V cPrev = TL.Load(row.CPrev + jj, n), nPrev = TL.Load(row.NPrev + jj, n), mPrev = TL.Load(row.MPrev + jj, n);
            V sigmoidF = Exp(Vector256.Log(fp) + m - mPrev);
            V dO = dH * c / nn, dcv = Vector256.Load(dc) + dH * o / nn, dnv = Vector256.Load(dn) - dH * o * c / (nn * nn);
            V dfp = dcv * cPrev + dnv * nPrev, dip = dcv * z + dnv, dz = dcv * ip;
            V gi = dip * ip, gf = dfp * fp * (one - sigmoidF), gz = dz * (one - z * z), go = dO * o * (one - o);
            gates.Put(0, gi, gi); gates.Put(1, gf, gf); gates.Put(2, gz, gz); gates.Put(3, go, go);
            Vector256.Store(dcv * fp, dc);
            Vector256.Store(dnv * fp, dn);
            Vector256.Store(V.Zero, row.Dh + jj);
        }
    }

    private readonly struct ElmanUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes
        {
            var gates = row.GatesAt<TL>(jj, n);
            row.HPrevAt<TL>(jj, n);
            V dH = row.DhAt<TL>(jj, n);
            // h = tanh(a): da = dh (1 - h^2)
            V hv = TL.Load(row.H + jj, n);
            V da = dH * (V.One - hv * hv);
            gates.Put(0, da, da);
            Vector256.Store(V.Zero, row.Dh + jj);
        }
    }

    /// <summary>Where gate g's gradients go: dq_g to the step's buffer (stride dh per gate) and the
    /// bias sum (stride up), dx_g to the pre-activations' gradient (stride hd).</summary>
    private readonly struct GateGradients<TL>(float* dqRow, float* dxRow, float* dBias, int dh, int hd, int up, int n) where TL : struct, ILanes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Put(int g, V dq, V dx)
        {
            TL.Store(dq, dqRow + g * dh, n);
            TL.Store(dx, dxRow + g * hd, n);
            Vector256.Store(Vector256.Load(dBias + g * up) + dq, dBias + g * up);
        }
    }

    public void Dispose()
    {
        foreach (var p in _parties) p.Dispose();
        _zeros.Dispose();
    }
}
