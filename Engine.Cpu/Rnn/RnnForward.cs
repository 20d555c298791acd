using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using FastWeights.Engine.Ops;
using static FastWeights.Engine.Cpu.Rnn.CellMath;
using V = System.Runtime.Intrinsics.Vector256<float>;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>The forward of one head over all T steps, split over parties by units. Per step each
/// party forms its units' gate pre-activations for the whole (padded) batch,
/// A [Bp, G*Up] = h_{t-1} [Bp, Dh] W_p, with W_p [Dh, G*Up] its rows of R_h transposed (column
/// g*Up + jj = row g*Dh + start + jj of R_h, zero past its units), packed once per call; then runs
/// the cell's pointwise math on 8 units at a time and writes h_t of its units. h_{t-1} and h_t are
/// two shared buffers [Bp, Dh] that swap each step; one barrier per step keeps a party from reading
/// h_t before every party has written it (and from overwriting h_{t-1} while another still reads it).
/// The cell's other states (c; c, n, m) stay with their party ([e][b][jj]).</summary>
internal sealed unsafe class RnnForward : IPartyHead
{
    private readonly RnnRecurrence.View _v;
    private readonly int _head, _bp;
    private readonly float* _y, _saved;
    private readonly nint[] _init, _final;
    private readonly NativeFloats _h;
    private readonly Party[] _parties;

    private sealed class Party(RnnParties.Units units, int gates, int batchPadded, int batch, int extra, int headDim) : IDisposable
    {
        public readonly RnnParties.Units Units = units;
        public readonly int Columns = gates * units.Padded;
        public readonly NativeFloats Packed = new((long)headDim * gates * units.Padded, zeroed: false);
        public readonly NativeFloats A = new((long)batchPadded * gates * units.Padded);
        public readonly NativeFloats Bias = new(gates * units.Padded);           // [g][jj]
        public readonly NativeFloats States = new((long)extra * batch * units.Padded);   // [e][b][jj]

        public void Dispose() { Packed.Dispose(); A.Dispose(); Bias.Dispose(); States.Dispose(); }
    }

    public RnnForward(RnnRecurrence.View v, int head, int parties, float* y, float* saved, nint[] init, nint[] final)
    {
        _v = v; _head = head; _y = y; _saved = saved; _init = init; _final = final;
        _bp = RoundUp(v.B, StepProduct.RowBlock);
        _h = new NativeFloats(2L * _bp * v.Dh);
        var split = RnnParties.Split(v.Dh, parties);
        _parties = split.Select(u => new Party(u, v.G, _bp, v.B, v.Cell.ExtraStates(), v.Dh)).ToArray();
        Barrier = new StepBarrier(_parties.Length);
        for (int b = 0; b < v.B; b++)
            for (int j = 0; j < v.Dh; j++) _h.Pointer[b * v.Dh + j] = RnnRecurrence.State(init[0], v.StateIndex(b, head, j));
    }

    /// <summary>w[l, c] = R_h[g*Dh + start + jj, l] for column c = g*padded + jj, jj &lt; count (row
    /// g*Dh + start + jj of R_h, element stride 1); else 0.</summary>
    private readonly struct TransposedRows(float* r, int headDim, int start, int count, int padded) : StepProduct.IColumns
    {
        public float* Column(int c)
        {
            int g = c / padded, jj = c - g * padded;
            return jj < count ? r + (long)(g * headDim + start + jj) * headDim : null;
        }
    }

    public StepBarrier Barrier { get; }

    public void Run(int party)
    {
        var v = _v;
        var p = _parties[party];
        var units = p.Units;
        int extra = v.Cell.ExtraStates();
        // Every party packs its own slice of R (at once, on its own core, whose caches then hold it).
        StepProduct.Pack(v.Dh, p.Columns, new TransposedRows(v.RHead(_head), v.Dh, units.Start, units.Count, units.Padded), 1, p.Packed.Pointer);
        for (int g = 0; g < v.G; g++)
            for (int jj = 0; jj < units.Count; jj++) p.Bias.Pointer[g * units.Padded + jj] = v.BiasAt(g, _head, units.Start + jj);
        for (int e = 0; e < extra; e++)
            for (int b = 0; b < v.B; b++)
                for (int jj = 0; jj < units.Count; jj++)
                    p.States.Pointer[((long)e * v.B + b) * units.Padded + jj] = RnnRecurrence.State(_init[e + 1], v.StateIndex(b, _head, units.Start + jj));
        for (int t = 0; t < v.T; t++)
        {
            RnnParties.StepHook?.Invoke((nint)v.X, party, t);
            float* hPrev = _h.Pointer + (long)(t & 1) * _bp * v.Dh, hNew = _h.Pointer + (long)((t + 1) & 1) * _bp * v.Dh;
            StepProduct.Multiply(hPrev, v.Dh, _bp, v.Dh, p.Packed.Pointer, p.Columns, p.A.Pointer, p.Columns, accumulate: false);
            for (int b = 0; b < v.B; b++) Row(p, b, t, hPrev, hNew);
            Barrier.Wait();
        }
        float* hLast = _h.Pointer + (long)(v.T & 1) * _bp * v.Dh;
        for (int b = 0; b < v.B; b++)
            for (int jj = 0; jj < units.Count; jj++)
            {
                long at = v.StateIndex(b, _head, units.Start + jj);
                if (_final[0] != 0) ((float*)_final[0])[at] = hLast[b * v.Dh + units.Start + jj];
                for (int e = 0; e < extra; e++)
                    if (_final[e + 1] != 0) ((float*)_final[e + 1])[at] = p.States.Pointer[((long)e * v.B + b) * units.Padded + jj];
            }
    }

    // Batch row b at step t: the party's units, 8 at a time. One method per cell, so that each loop
    // keeps its pointers and constants in registers.
    private void Row(Party p, int b, int t, float* hPrev, float* hNew)
    {
        var v = _v;
        int up = p.Units.Padded, u = _head * v.Dh + p.Units.Start;
        var row = new RowPointers(
            p.A.Pointer + (long)b * p.Columns, p.Bias.Pointer,
            v.X + ((long)b * v.T + t) * v.G * v.Hd + u,
            _saved == null ? null : _saved + ((long)b * v.T + t) * v.SavedWidth + u,
            p.States.Pointer + (long)b * up, (long)v.B * up,
            hPrev + (long)b * v.Dh + p.Units.Start, hNew + (long)b * v.Dh + p.Units.Start,
            _y + ((long)b * v.T + t) * v.Hd + u, up, v.Hd);
        switch (v.Cell)
        {
            case RnnCell.Lstm: ForUnits<LstmUnits, RowPointers>(row, p.Units.Count); break;
            case RnnCell.Gru: ForUnits<GruUnits, RowPointers>(row, p.Units.Count); break;
            case RnnCell.SLstm: ForUnits<SLstmUnits, RowPointers>(row, p.Units.Count); break;
            default: ForUnits<ElmanUnits, RowPointers>(row, p.Units.Count); break;
        }
    }

    /// <summary>Where batch row b's quantities start at this step (unit jj of the party at + jj): the
    /// product's row (gate g at + g*up), the bias, the pre-activations (gate g at + g*hd), the saved
    /// row (quantity q at + q*hd; null: nothing saved), the cell's states (state e at + e*stateStride),
    /// h_{t-1}, h_t and the output row.</summary>
    private readonly struct RowPointers(float* a, float* bias, float* x, float* saved, float* state, long stateStride,
        float* hPrev, float* hNew, float* y, int up, int hd)
    {
        public readonly float* A = a, Bias = bias, X = x, Saved = saved, State = state, HPrev = hPrev, HNew = hNew, Y = y;
        public readonly long StateStride = stateStride;
        public readonly int Up = up, Hd = hd;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public StepInputs<TL> At<TL>(int jj, int n) where TL : struct, ILanes =>
            new(A + jj, Bias + jj, X + jj, Saved == null ? null : Saved + jj, Up, Hd, n);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void PutH<TL>(V h, int jj, int n) where TL : struct, ILanes
        {
            TL.Store(h, HNew + jj, n);
            TL.Store(h, Y + jj, n);
        }
    }

    // Each cell's pointwise work on units [jj, jj + n) of a row, for CellMath.ForUnits.
    private readonly struct LstmUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes
        {
            var step = row.At<TL>(jj, n);
            float* state = row.State + jj;
            // c_t = f c_{t-1} + i g, h_t = o tanh(c_t); saved i, f, g, o, c
            V i = Sigmoid(step.Pre(0)), f = Sigmoid(step.Pre(1)), g = Tanh(step.Pre(2)), o = Sigmoid(step.Pre(3));
            V c = Vector256.FusedMultiplyAdd(f, Vector256.Load(state), i * g);
            Vector256.Store(c, state);
            step.Save(0, i); step.Save(1, f); step.Save(2, g); step.Save(3, o); step.Save(4, c);
            row.PutH<TL>(o * Tanh(c), jj, n);
        }
    }

    private readonly struct GruUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes
        {
            var step = row.At<TL>(jj, n);
            // n = tanh(x_n + r (R_n h + b_hn)), h_t = (1 - z) n + z h_{t-1}; saved r, z, n, q = R_n h + b_hn
            V r = Sigmoid(step.Pre(0)), z = Sigmoid(step.Pre(1)), q = step.Recurrent(2);
            V nGate = Tanh(Vector256.FusedMultiplyAdd(r, q, TL.Load(row.X + jj + 2 * row.Hd, n)));
            V hp = TL.Load(row.HPrev + jj, n);
            step.Save(0, r); step.Save(1, z); step.Save(2, nGate); step.Save(3, q);
            row.PutH<TL>(Vector256.FusedMultiplyAdd(z, hp - nGate, nGate), jj, n);
        }
    }

    private readonly struct SLstmUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes
        {
            var step = row.At<TL>(jj, n);
            // m_t = max(log f + m, i~), i' = exp(i~ - m_t), f' = exp(log f + m - m_t),
            // c_t = f' c + i' z, n_t = f' n + i', h_t = o c_t / n_t; saved i', f', z, o, m, then c, n, m
            float* cs = row.State + jj, ns = cs + row.StateStride, ms = ns + row.StateStride;
            V iTilde = step.Pre(0), logF = LogSigmoid(step.Pre(1)), m = Vector256.Load(ms);
            V mNew = Vector256.Max(logF + m, iTilde);
            V ip = Exp(iTilde - mNew), fp = Exp(logF + m - mNew);
            V z = Tanh(step.Pre(2)), o = Sigmoid(step.Pre(3));
            V c = Vector256.FusedMultiplyAdd(fp, Vector256.Load(cs), ip * z);
            V nn = Vector256.FusedMultiplyAdd(fp, Vector256.Load(ns), ip);
            Vector256.Store(c, cs); Vector256.Store(nn, ns); Vector256.Store(mNew, ms);
            step.Save(0, ip); step.Save(1, fp); step.Save(2, z); step.Save(3, o); step.Save(4, mNew); step.Save(5, c); step.Save(6, nn); step.Save(7, mNew);
            row.PutH<TL>(o * c / nn, jj, n);
        }
    }

    private readonly struct ElmanUnits : IUnits<RowPointers>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Apply<TL>(in RowPointers row, int jj, int n) where TL : struct, ILanes =>
            row.PutH<TL>(Tanh(row.At<TL>(jj, n).Pre(0)), jj, n);
    }

    /// <summary>One batch row's 8 units at one step: gate g's recurrent part at a + g*up (bias at
    /// bias + g*up), its input part at x + g*hd (n valid lanes), saved quantity q at saved + q*hd.
    /// A struct of pointers whose methods inline, so the cell code reads like the equations.</summary>
    private readonly struct StepInputs<TL>(float* a, float* bias, float* x, float* saved, int up, int hd, int n) where TL : struct, ILanes
    {
        /// <summary>(R h_{t-1})_g + bias_g</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public V Recurrent(int g) => Vector256.Load(a + g * up) + Vector256.Load(bias + g * up);

        /// <summary>pre_g = (R h_{t-1})_g + bias_g + x_g</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public V Pre(int g) => Recurrent(g) + TL.Load(x + g * hd, n);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Save(int q, V value)
        {
            if (saved != null) TL.Store(value, saved + q * hd, n);
        }
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    public void Dispose()
    {
        foreach (var p in _parties) p.Dispose();
        _h.Dispose();
    }
}
