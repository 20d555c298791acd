using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>Head-wise recurrent cells on the CPU. Heads are independent recurrences (R is
/// block-diagonal): with at least as many heads as threads, heads run in parallel, one thread each;
/// otherwise each head's units are split over the threads (<see cref="RnnParties"/>), which meet once
/// per step. Per step and party: the batch's gate pre-activations of its units from one register-
/// blocked product against its slice of R packed once per call (<see cref="StepProduct"/>), then the
/// cell's pointwise math on 8 units at a time (<see cref="RnnForward"/>, <see cref="RnnBackward"/>).
/// Saved per (b, t), for the backward: the cell's activated gates, then its extra states (see
/// RnnCells.SavedPerUnit / ExtraStates), each a block of H*Dh values.
/// The backward keeps the recurrent-part gradients dq [T, Bp, G*Dh] and h_{t-1} [T, Bp, Dh] of a head
/// and forms dR_h = dq^T h_{t-1} as one GEMM after the time loop.</summary>
internal static unsafe class RnnRecurrence
{
    /// <summary>Below this many flops in one step's product (2 Bp G Dh^2), a head runs on one thread:
    /// the per-step barrier would cost more than the split saves. Mutable so that tests can force the
    /// split at small sizes.</summary>
    internal static double MinFlopsToSplitStep = 2e5;

    internal sealed class View(RnnProblem p)
    {
        public readonly RnnCell Cell = p.Cell;
        public readonly int B = p.Batch, T = p.Steps, H = p.Heads, Dh = p.HeadDim, G = p.Gates, Hd = p.Hidden;
        public readonly int SavedWidth = (p.Cell.SavedPerUnit() + p.Cell.ExtraStates()) * p.Hidden;
        public readonly float* X = CpuBackend.F32(p.Preactivations), R = CpuBackend.F32(p.RecurrentWeights);
        public readonly float* Bias = p.RecurrentBias is null ? null : CpuBackend.F32(p.RecurrentBias);
        public float* RHead(int h) => R + (long)h * G * Dh * Dh;
        public float BiasAt(int g, int h, int j) => Bias == null ? 0f : Bias[g * Hd + h * Dh + j];
        /// <summary>Index of unit (h, j) of batch row b in a state tensor [B, H*Dh].</summary>
        public long StateIndex(int b, int h, int j) => (long)b * Hd + h * Dh + j;
    }

    private static float* Ptr(Tensor? t) => t is null ? null : CpuBackend.F32(t);

    // Pointers of optional state tensors (0 where absent), as nint so they fit in arrays and lambdas.
    private static nint[] Pointers(IReadOnlyList<Tensor?> tensors) => tensors.Select(t => (nint)Ptr(t)).ToArray();

    public static float State(nint tensor, long at) => tensor == 0 ? 0f : ((float*)tensor)[at];

    public static void Forward(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finals, Tensor? saved, int threads)
    {
        var v = new View(p);
        nint y = (nint)CpuBackend.F32(outputs), sv = (nint)Ptr(saved);
        var init = Pointers(p.InitialStates);
        var fin = Pointers(finals);
        ForEachHead(v, threads, (h, parties) => RnnParties.Run(parties, v.Dh, count => new RnnForward(v, h, count, (float*)y, (float*)sv, init, fin)));
    }

    public static void Backward(RnnProblem p, Tensor outputs, Tensor saved, RnnGradients grads, int threads)
    {
        var v = new View(p);
        nint y = (nint)CpuBackend.F32(outputs), sv = (nint)CpuBackend.F32(saved), dy = (nint)CpuBackend.F32(grads.DOutputs);
        nint dx = (nint)CpuBackend.F32(grads.DPreactivations), dBias = (nint)Ptr(grads.DRecurrentBias);
        var init = Pointers(p.InitialStates);
        var dFin = Pointers(grads.DFinalStates);
        var dInit = Pointers(grads.DInitialStates);
        var backend = (CpuBackend)p.Preactivations.Backend;
        int bp = RnnBackward.BatchPadded(v.B), rows = v.G * v.Dh;
        ForEachHead(v, threads, (h, parties) =>
        {
            // The time loop writes every real batch row (b < B) whole; the padded rows must hold zeros.
            using var dqAll = Tensor.Empty(backend, new Shape(v.T * bp, rows));       // [t][b][row]
            using var hPrevAll = Tensor.Empty(backend, new Shape(v.T * bp, v.Dh));    // [t][b][j]
            nint dq = (nint)CpuBackend.F32(dqAll), hPrev = (nint)CpuBackend.F32(hPrevAll);
            ZeroPaddedRows((float*)dq, v.T, v.B, bp, rows);
            ZeroPaddedRows((float*)hPrev, v.T, v.B, bp, v.Dh);
            RnnParties.Run(parties, v.Dh, count =>
                new RnnBackward(v, h, count, (float*)y, (float*)sv, (float*)dy, (float*)dx, (float*)dBias, (float*)dq, (float*)hPrev, init, dFin, dInit));
            // dR_h = dq^T h_{t-1} over all (t, b): [G*Dh, T*Bp] x [T*Bp, Dh]
            Ops.Gemm.Forward(dqAll, hPrevAll, grads.DRecurrentWeights.SliceRows(h, 1).Reshape(new Shape(rows, v.Dh)), transposeA: true);
        });
    }

    // Rows [batch, padded) of each step's block of a [T, padded, width] buffer set to 0.
    private static void ZeroPaddedRows(float* buffer, int steps, int batch, int padded, int width)
    {
        for (int t = 0; t < steps; t++)
            new Span<float>(buffer + ((long)t * padded + batch) * width, (padded - batch) * width).Clear();
    }

    // Heads in parallel when there are at least as many as threads; otherwise one head at a time,
    // its units split over the threads when a step's product is large enough.
    private static void ForEachHead(View v, int threads, Action<int, int> body)
    {
        if (v.H >= threads && threads > 1)
            Parallel.For(0, v.H, new ParallelOptions { MaxDegreeOfParallelism = threads }, h => body(h, 1));
        else
        {
            double stepFlops = 2.0 * RnnBackward.BatchPadded(v.B) * v.G * v.Dh * v.Dh;
            int parties = stepFlops >= MinFlopsToSplitStep ? threads : 1;
            for (int h = 0; h < v.H; h++) body(h, parties);
        }
    }
}
