using System.Runtime.CompilerServices;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>BLIS-style blocked GEMM, specialised per micro-kernel. For one batch entry the loops are:
/// <code>
/// for jc in 0..N step NC            column panel
///   for pc in 0..K step KC          pack B panel KC x NC into NR-wide slivers (L2)
///     for ic in 0..M step MC        pack A block MC x KC into MR-tall slivers (L2)
///       for jr in 0..nc step NR     one B sliver KC x NR stays in L1 (or L1 and L2) ...
///         for ir in 0..mc step MR   ... while A slivers stream from L2 through the micro-kernel
/// </code>
/// Invariants: C[ic.., jc..] receives alpha * (partial product over [pc, pc + kc)) plus beta * C on the
/// first k block (beta == 0 never reads C) and plus C on later ones; every element sums its k blocks
/// in the same order whatever the threading, so results do not depend on the thread count. Block
/// steps are balanced (K = 300 runs as 150 + 150, not 256 + 44); MC, NC are multiples of MR, NR.
/// Partial tiles at the edges run the full kernel on zero-padded slivers into a tile buffer, then merge.
/// <para>Threads. One large matrix with M or N long enough for four slivers a thread (<see
/// cref="InParts"/>): one part of C a thread (columns or rows, whichever packs less), each a
/// one-thread GEMM of its own. Otherwise (<see
/// cref="Cooperative"/>; small M and N, deep K): the threads first pack B for every k
/// block of the column panel into one shared buffer (claiming k blocks), wait until all of it is
/// packed, then claim items from one counter: k block by k block, runs of MR-row slivers of C (guided:
/// large runs first, shrinking towards the end of each k block). An item packs its own A block and runs
/// the micro-kernel over the panel's KC x NC block of B for that k block, so all threads read the same
/// block of B at a time (each keeps it in its L2) and a slow core simply takes fewer items. An item
/// starts once its slivers are done for the previous k block, which keeps each element's sum in k-block
/// order; claims run in order, so it has nearly always been met. Many matrices (batch) or small ones: each thread
/// takes whole batch entries with private buffers. The threads are <see cref="GemmThreads"/> (the
/// calling thread is one of them). Waiting only ever happens on work that a running thread has
/// already claimed, so a worker that starts late never stalls the others.</para></summary>
internal static unsafe class BlockedGemm<TKernel> where TKernel : struct, IGemmMicroKernel
{
    // Blocking, in elements: KC, MC and NC come from the kernel (its BlockDepth, BlockRows, BlockColumns).
    // The B panel KC x NC sits in L2 or L3 (shared by the threads). FASTWEIGHTS_CPU_GEMM_BLOCKING=
    // KCxMCxNC (e.g. 256x504x512) overrides all three, so that benchmarks can compare blockings.
    // Mutable only so that a benchmark lab (or a test) can sweep them.
    private static readonly int[]? s_blocking = ParseBlocking(Environment.GetEnvironmentVariable("FASTWEIGHTS_CPU_GEMM_BLOCKING"));
    internal static int Kc = s_blocking?[0] ?? TKernel.BlockDepth;
    internal static int Mc = RoundUp(s_blocking?[1] ?? TKernel.BlockRows, TKernel.Mr);
    internal static int Nc = RoundUp(s_blocking?[2] ?? TKernel.BlockColumns, TKernel.Nr);
    /// <summary>Largest shared B buffer (K x panel width) of the cooperative path: 16 MB.</summary>
    internal static long SharedPanelFloats = 4L << 20;

    /// <summary>Below this many flops per thread, splitting a GEMM costs more than it saves.</summary>
    private const double MinFlopsPerThread = 4e6;

    public static void Run(in GemmProblem p, int maxThreads)
    {
        var a = GemmOperand.A(p);
        var b = GemmOperand.B(p);
        float* c = CpuBackend.F32(p.C);
        long matrix = (long)p.M * p.N;
        double flopsPerMatrix = 2.0 * p.M * p.N * p.K;
        int threads = (int)Math.Clamp(flopsPerMatrix * p.Batch / MinFlopsPerThread, 1, Math.Max(1, maxThreads));
        if (threads == 1)
        {
            var ws = GemmWorkspace.ForThisThread;
            for (int batch = 0; batch < p.Batch; batch++)
                OneThread(a.AtBatch(batch), b.AtBatch(batch), c + batch * matrix, p.M, p.N, p.K, p.Alpha, p.Beta, ws);
        }
        else if (p.Batch >= 4 * threads || flopsPerMatrix < MinFlopsPerThread * threads)
        {
            // Whole batch entries per thread.
            int m = p.M, n = p.N, k = p.K, count = p.Batch;
            float alpha = p.Alpha, beta = p.Beta;
            int next = 0;
            RunOnThreads(threads, _ =>
            {
                var ws = GemmWorkspace.ForThisThread;
                for (int batch; (batch = Interlocked.Increment(ref next) - 1) < count;)
                    OneThread(a.AtBatch(batch), b.AtBatch(batch), c + batch * matrix, m, n, k, alpha, beta, ws);
            });
        }
        else
        {
            for (int batch = 0; batch < p.Batch; batch++)
                if (PartsAxis(p.M, p.N, p.K, threads) is bool byColumns)
                    InParts(a.AtBatch(batch), b.AtBatch(batch), c + batch * matrix, p.M, p.N, p.K, p.Alpha, p.Beta, threads, byColumns);
                else Cooperative(a.AtBatch(batch), b.AtBatch(batch), c + batch * matrix, p.M, p.N, p.K, p.Alpha, p.Beta, threads);
        }
    }

    /// <summary>How one matrix splits into a part a thread (<see cref="InParts"/>), or null when it does
    /// not: true for C's columns, false for its rows. An axis qualifies when it gives every thread at
    /// least four slivers; of two that do, the one that packs less in all wins (ties: columns). Column
    /// parts pack B once between them but each packs all of A, once a column panel of its own (M K
    /// ceil(w / NC) floats for a part w wide, against M K ceil(N / NC) on one thread); row parts pack A
    /// once between them but each packs all of B (K N floats). At 2048^3 column parts add nothing (two
    /// panels of NC 1024 either way); for x W^T at 2048 x 1536 x 512 row parts (the rule of the first
    /// version: the longer axis) packed the transposed W twice, where column parts add nothing either.</summary>
    internal static bool? PartsAxis(int m, int n, int k, int threads)
    {
        bool columns = n >= threads * 4 * TKernel.Nr, rows = m >= threads * 4 * TKernel.Mr;
        if (!columns || !rows) return columns ? true : rows ? false : null;
        int width = (n + threads - 1) / threads;
        double extraColumns = (double)m * k * (threads * (long)((width + Nc - 1) / Nc) - (n + Nc - 1) / Nc);
        double extraRows = (double)k * n * (threads - 1);
        return extraColumns <= extraRows;
    }

    /// <summary>One matrix on <paramref name="threads"/> threads as that many parts, each its own
    /// one-thread GEMM with its own buffers: C's columns or rows (<see cref="PartsAxis"/>) in equal runs
    /// of whole slivers. Nothing is shared and nothing waits but the end; against <see
    /// cref="Cooperative"/> that ran 4-6% faster on two Emerald Rapids cores at 1024^3 and 2048^3
    /// (medians of six rounds, bench/results/2026-12-08-cpu-xeon-gemm-parts.txt) although the threads
    /// no longer balance their load. The parts start on the one-thread tile grid, so every element is
    /// summed exactly as on one thread. Parts are claimed from a counter, so a helper that never starts
    /// only leaves more parts to the others.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void InParts(GemmOperand a, GemmOperand b, float* c, int m, int n, int k, float alpha, float beta, int threads, bool byColumns)
    {
        int extent = byColumns ? n : m, unit = byColumns ? TKernel.Nr : TKernel.Mr;
        int step = RoundUp((extent + threads - 1) / threads, unit);
        int parts = (extent + step - 1) / step;
        int next = 0;
        RunOnThreads(threads, _ =>
        {
            var ws = GemmWorkspace.ForThisThread;
            for (int part; (part = Interlocked.Increment(ref next) - 1) < parts;)
            {
                int first = part * step, count = Math.Min(step, extent - first);
                if (byColumns) OneThread(a, b.OpColumnsFrom(first), c + first, m, count, k, alpha, beta, ws, n);
                else OneThread(a.OpRowsFrom(first), b, c + (long)first * n, count, n, k, alpha, beta, ws, n);
            }
        });
    }

    /// <summary>C = alpha op(A) op(B) + beta C for one batch entry (or one part of one, C's rows
    /// <paramref name="ldc"/> apart; 0: n) on this thread, with its own buffers. Fully optimised from
    /// the first call: a GEMM calls it only a few times, too few for tiering.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OneThread(in GemmOperand a, in GemmOperand b, float* c, int m, int n, int k, float alpha, float beta, GemmWorkspace ws, int ldc = 0)
    {
        if (ldc == 0) ldc = n;
        int mr = TKernel.Mr, nr = TKernel.Nr;
        int kcStep = BalancedStep(k, Kc, 1);
        int mcStep = BalancedStep(m, Mc, mr);
        int ncStep = BalancedStep(n, Nc, nr);
        float* packedA = ws.A((long)mcStep * kcStep);
        float* packedB = ws.B((long)ncStep * kcStep);
        float* scratch = a.Type == DType.F32 ? null : ws.Scratch(GemmPacking.ScratchFloats(mr, nr, kcStep, mcStep, ncStep));
        float* tile = ws.Tile(mr * nr);
        for (int jc = 0; jc < n; jc += ncStep)
        {
            int nc = Math.Min(ncStep, n - jc);
            for (int pc = 0; pc < k; pc += kcStep)
            {
                int kc = Math.Min(kcStep, k - pc);
                GemmPacking.PackB(b, pc, jc, kc, nc, nr, packedB, scratch);
                for (int ic = 0; ic < m; ic += mcStep)
                {
                    int mc = Math.Min(mcStep, m - ic);
                    GemmPacking.PackA(a, ic, pc, mc, kc, mr, packedA, scratch);
                    Block(packedA, packedB, c + (long)ic * ldc + jc, ldc, mc, nc, kc, alpha, pc == 0 ? beta : 1f, tile);
                }
            }
        }
    }

    /// <summary>One matrix on <paramref name="threads"/> threads: shared packed B, items of rows claimed
    /// dynamically in k-block-major order (see the class summary). Fully optimised from the first call,
    /// like OneThread.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Cooperative(GemmOperand a, GemmOperand b, float* c, int m, int n, int k, float alpha, float beta, int threads)
    {
        int mr = TKernel.Mr, nr = TKernel.Nr;
        int kcStep = BalancedStep(k, Kc, 1);
        int kBlocks = (k + kcStep - 1) / kcStep;
        // Panel width: at most NC, and K x width within the shared buffer's budget.
        int ncMax = (int)Math.Clamp(SharedPanelFloats / Math.Max(1, k) / nr * nr, nr, Nc);
        int ncStep = BalancedStep(n, ncMax, nr);
        int mcStep = Mc; // largest item; items shrink towards the end of each k block (ClaimItem)
        int slivers = (m + mr - 1) / mr;
        float* shared = GemmWorkspace.ForThisThread.SharedPanel((long)ncStep * k);
        for (int jc = 0; jc < n; jc += ncStep)
        {
            int nc = Math.Min(ncStep, n - jc);
            long ncPadded = RoundUp(nc, nr);
            // Counters: k blocks claimed, k blocks packed, items claimed (entries 64 bytes apart, so the
            // threads' counters do not share a line); then one flag per (k block, sliver): done.
            var state = new int[3 * 16 + kBlocks * slivers];
            RunOnThreads(threads, _ =>
            {
                // Buffers first: nothing may fail once an item is claimed.
                var ws = GemmWorkspace.ForThisThread;
                float* packedA = ws.A((long)mcStep * kcStep);
                float* tile = ws.Tile(mr * nr);
                float* scratch = a.Type == DType.F32 ? null : ws.Scratch(GemmPacking.ScratchFloats(mr, nr, kcStep, mcStep, (int)ncPadded));
                // Phase 1: B for k block q lives at shared + pc * ncPadded (kc rows of ncPadded).
                for (int q; (q = Interlocked.Increment(ref state[0]) - 1) < kBlocks;)
                {
                    int pc = q * kcStep;
                    GemmPacking.PackB(b, pc, jc, Math.Min(kcStep, k - pc), nc, nr, shared + pc * ncPadded, scratch);
                    Interlocked.Increment(ref state[16]);
                }
                // Wait for blocks that other running threads are still packing.
                var spin = new SpinWait();
                while (Volatile.Read(ref state[16]) < kBlocks) spin.SpinOnce(sleep1Threshold: -1);
                // Phase 2: items (k block q, slivers [first, first + count)), k block by k block, so that
                // every thread works on the same KC x NC block of B (kept in its L2) at a time. An item
                // waits until the same slivers are done for k block q - 1: C sums its k blocks in order.
                // Claims run in order, so that wait is met at once unless the rows are very few.
                for (int q, first, count; (count = ClaimItem(ref state[32], slivers, kBlocks, threads, out q, out first)) > 0;)
                {
                    int pc = q * kcStep, kc = Math.Min(kcStep, k - pc);
                    if (q > 0)
                        for (int s = first; s < first + count; s++)
                            while (Volatile.Read(ref state[48 + (q - 1) * slivers + s]) == 0) spin.SpinOnce(sleep1Threshold: -1);
                    int ic = first * mr, mc = Math.Min(count * mr, m - ic);
                    GemmPacking.PackA(a, ic, pc, mc, kc, mr, packedA, scratch);
                    Block(packedA, shared + pc * ncPadded, c + (long)ic * n + jc, n, mc, nc, kc, alpha, pc == 0 ? beta : 1f, tile);
                    for (int s = first; s < first + count; s++) Volatile.Write(ref state[48 + q * slivers + s], 1);
                }
            });
        }
    }

    /// <summary>Claims the next item from the shared counter, which runs over k block q, then slivers
    /// of MR rows (q * slivers + first). Guided scheduling within each k block: a share of what remains
    /// of it (at most MC rows, at least 2 slivers), so the threads reach the next k block together.
    /// Returns the count (0 when none remain), the k block and the first sliver.</summary>
    private static int ClaimItem(ref int next, int slivers, int kBlocks, int threads, out int q, out int first)
    {
        while (true)
        {
            int position = Volatile.Read(ref next);
            q = position / slivers;
            first = position - q * slivers;
            if (q >= kBlocks) return 0;
            int remaining = slivers - first;
            int count = Math.Min(remaining, Math.Clamp(remaining / (2 * threads), 2, Mc / TKernel.Mr));
            if (Interlocked.CompareExchange(ref next, position + count, position) == position) return count;
        }
    }

    /// <summary>body(0 .. threads-1) on the persistent GEMM threads (the calling thread is worker 0),
    /// or on the thread pool when those are taken; returns when every claimed item is done.</summary>
    private static void RunOnThreads(int threads, Action<int> body)
    {
        if (!GemmThreads.Shared.TryRun(threads, body))
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }

    /// <summary>The two loops around the micro-kernel: C[0..mc, 0..nc] (row stride ldc) gets
    /// alpha * packedA packedB + beta * C, from an A block of mc / MR slivers and a B panel of nc / NR slivers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block(float* packedA, float* packedB, float* c, int ldc, int mc, int nc, int kc, float alpha, float beta, float* tile)
    {
        int mr = TKernel.Mr, nr = TKernel.Nr;
        for (int jr = 0; jr < nc; jr += nr)
        {
            int nrEdge = Math.Min(nr, nc - jr);
            float* bSliver = packedB + (long)jr * kc;
            for (int ir = 0; ir < mc; ir += mr)
            {
                int mrEdge = Math.Min(mr, mc - ir);
                float* aSliver = packedA + (long)ir * kc;
                float* cTile = c + (long)ir * ldc + jr;
                if (mrEdge == mr && nrEdge == nr)
                    TKernel.Run(kc, aSliver, bSliver, cTile, ldc, alpha, beta);
                else
                {
                    TKernel.Run(kc, aSliver, bSliver, tile, nr, 1f, 0f);
                    MergeTile(tile, nr, cTile, ldc, mrEdge, nrEdge, alpha, beta);
                }
            }
        }
    }

    // c[r, j] = alpha * tile[r, j] + beta * c[r, j] over the valid rows x cols of a partial tile.
    private static void MergeTile(float* tile, int ldt, float* c, int ldc, int rows, int cols, float alpha, float beta)
    {
        for (int r = 0; r < rows; r++)
        {
            float* t = tile + r * ldt, cr = c + (long)r * ldc;
            if (beta == 0f) for (int j = 0; j < cols; j++) cr[j] = alpha * t[j];
            else for (int j = 0; j < cols; j++) cr[j] = alpha * t[j] + beta * cr[j];
        }
    }

    // The largest step <= max (rounded up to a multiple of `multiple`) that splits `extent` into
    // equal blocks: ceil(extent / ceil(extent / max)).
    private static int BalancedStep(int extent, int max, int multiple)
    {
        int blocks = Math.Max(1, (extent + max - 1) / max);
        return RoundUp((extent + blocks - 1) / blocks, multiple);
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    // "KCxMCxNC" -> [KC, MC, NC]; null when unset.
    private static int[]? ParseBlocking(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var parts = text.Split('x');
        if (parts.Length == 3 && parts.All(x => int.TryParse(x, out int v) && v > 0)) return parts.Select(int.Parse).ToArray();
        throw new ArgumentException($"Gemm: FASTWEIGHTS_CPU_GEMM_BLOCKING must be KCxMCxNC with positive integers (e.g. 256x504x512), not '{text}'");
    }
}
