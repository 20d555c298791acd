using System.Runtime.CompilerServices;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>BLIS-style blocked GEMM, specialised per micro-kernel. For one batch entry and one thread's
/// share of C (rows [m0, m1), columns [n0, n1)) the loops are:
/// <code>
/// for jc in n0..n1 step NC          B panel KC x NC (L3)
///   for pc in 0..K step KC          pack B panel into NR-wide slivers
///     for ic in m0..m1 step MC      pack A block MC x KC (L2) into MR-tall slivers
///       for jr in 0..nc step NR     one B sliver KC x NR stays in L1 ...
///         for ir in 0..mc step MR   ... while A slivers stream from L2 through the micro-kernel
/// </code>
/// Invariants: C[ic.., jc..] receives alpha * (partial product over [pc, pc + kc)) plus beta * C on the
/// first k block (beta == 0 never reads C) and plus C on later ones. Block steps are balanced
/// (K = 300 runs as 150 + 150, not 256 + 44) and MC, NC are multiples of MR, NR. Partial tiles at the
/// edges run the full kernel on zero-padded slivers into a small tile buffer, then merge.
/// <para>Threads: the work items are (batch entry, part of C); a matrix is split into as many parts as
/// threads along M (each thread packs its own A rows and its own copy of B, which is a cheap
/// contiguous copy when B is not transposed), or along N when M is short or both operands are
/// transposed. Items are claimed from a shared counter, so no thread waits on another mid-GEMM.</para></summary>
internal static unsafe class BlockedGemm<TKernel> where TKernel : struct, IGemmMicroKernel
{
    // Blocking, in elements. KC x NR floats of B (32 KB for 256 x 32) stay in the 48 KB L1 with an
    // A sliver streaming past; MC x KC floats of A (~0.5 MB) sit in the 2 MB L2; NC bounds the B panel.
    public static int Kc = 256;
    public static int Mc = RoundUp(504, TKernel.Mr);
    public static int Nc = RoundUp(4096, TKernel.Nr);

    /// <summary>Below this many flops per thread, splitting a GEMM costs more than it saves.</summary>
    private const double MinFlopsPerThread = 4e6;

    private readonly struct Job
    {
        public GemmOperand A { get; init; }
        public GemmOperand B { get; init; }
        public float* C { get; init; }
        public int M { get; init; }
        public int N { get; init; }
        public int K { get; init; }
        public float Alpha { get; init; }
        public float Beta { get; init; }
        public int Parts { get; init; }
        public bool SplitN { get; init; }
    }

    public static void Run(in GemmProblem p, int maxThreads)
    {
        int mr = TKernel.Mr, nr = TKernel.Nr;
        double flops = 2.0 * p.M * p.N * p.K * p.Batch;
        int threads = (int)Math.Clamp(flops / MinFlopsPerThread, 1, Math.Max(1, maxThreads));
        int mSlivers = (p.M + mr - 1) / mr, nSlivers = (p.N + nr - 1) / nr;
        int parts = p.Batch >= threads ? 1 : (threads + p.Batch - 1) / p.Batch;
        bool splitN = (p.TransposeA && p.TransposeB && nSlivers >= parts) || (mSlivers < parts && nSlivers > mSlivers);
        parts = Math.Min(parts, splitN ? nSlivers : mSlivers);
        var job = new Job
        {
            A = GemmOperand.A(p), B = GemmOperand.B(p), C = CpuBackend.F32(p.C),
            M = p.M, N = p.N, K = p.K, Alpha = p.Alpha, Beta = p.Beta, Parts = parts, SplitN = splitN,
        };
        int items = p.Batch * parts;
        int workers = Math.Min(threads, items);
        if (workers <= 1)
        {
            for (int item = 0; item < items; item++) RunItem(job, item);
            return;
        }
        int next = 0;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, _ =>
        {
            for (int item; (item = Interlocked.Increment(ref next) - 1) < items;) RunItem(job, item);
        });
    }

    private static void RunItem(in Job job, int item)
    {
        int batch = item / job.Parts, part = item % job.Parts;
        int m0 = 0, m1 = job.M, n0 = 0, n1 = job.N;
        if (job.SplitN) (n0, n1) = PartRange(job.N, TKernel.Nr, part, job.Parts);
        else (m0, m1) = PartRange(job.M, TKernel.Mr, part, job.Parts);
        Tile(job.A.AtBatch(batch), job.B.AtBatch(batch), job.C + (long)batch * job.M * job.N, job.N, job.K,
            m0, m1, n0, n1, job.Alpha, job.Beta, GemmWorkspace.ForThisThread);
    }

    // Part `part` of `parts` of [0, extent), in whole slivers of `width`.
    private static (int Start, int End) PartRange(int extent, int width, int part, int parts)
    {
        int slivers = (extent + width - 1) / width;
        int s0 = (int)((long)slivers * part / parts), s1 = (int)((long)slivers * (part + 1) / parts);
        return (s0 * width, Math.Min(extent, s1 * width));
    }

    /// <summary>C[m0..m1, n0..n1] = alpha op(A) op(B) + beta C for one batch entry; ldc = n.
    /// Fully optimised from the first call: a GEMM calls it only a few times, too few for tiering.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile(in GemmOperand a, in GemmOperand b, float* c, int n, int k,
        int m0, int m1, int n0, int n1, float alpha, float beta, GemmWorkspace ws)
    {
        int mr = TKernel.Mr, nr = TKernel.Nr;
        int kcStep = BalancedStep(k, Kc, 1);
        int mcStep = BalancedStep(m1 - m0, Mc, mr);
        int ncStep = BalancedStep(n1 - n0, Nc, nr);
        float* packedA = ws.A((long)mcStep * kcStep);
        float* packedB = ws.B((long)ncStep * kcStep);
        float* scratch = a.Type == DType.F32 ? null : ws.Scratch(GemmPacking.ScratchFloats(mr, nr, kcStep, mcStep, ncStep));
        float* tile = ws.Tile(mr * nr);
        for (int jc = n0; jc < n1; jc += ncStep)
        {
            int nc = Math.Min(ncStep, n1 - jc);
            for (int pc = 0; pc < k; pc += kcStep)
            {
                int kc = Math.Min(kcStep, k - pc);
                GemmPacking.PackB(b, pc, jc, kc, nc, nr, packedB, scratch);
                float betaBlock = pc == 0 ? beta : 1f;
                for (int ic = m0; ic < m1; ic += mcStep)
                {
                    int mc = Math.Min(mcStep, m1 - ic);
                    GemmPacking.PackA(a, ic, pc, mc, kc, mr, packedA, scratch);
                    for (int jr = 0; jr < nc; jr += nr)
                    {
                        int nrEdge = Math.Min(nr, nc - jr);
                        float* bSliver = packedB + (long)jr * kc;
                        float* cColumn = c + jc + jr;
                        for (int ir = 0; ir < mc; ir += mr)
                        {
                            int mrEdge = Math.Min(mr, mc - ir);
                            float* aSliver = packedA + (long)ir * kc;
                            float* cTile = cColumn + (long)(ic + ir) * n;
                            if (mrEdge == mr && nrEdge == nr)
                                TKernel.Run(kc, aSliver, bSliver, cTile, n, alpha, betaBlock);
                            else
                            {
                                TKernel.Run(kc, aSliver, bSliver, tile, nr, 1f, 0f);
                                MergeTile(tile, nr, cTile, n, mrEdge, nrEdge, alpha, betaBlock);
                            }
                        }
                    }
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
}
