using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>f32 GEMM in the BLIS style, row-major: C = alpha op(A) op(B) + beta C.
/// Loops, outermost first:
///   jc over N in blocks of NC    — the packed KC x NC panel of B lives in L3
///   pc over K in blocks of KC    — beta is applied on the first pc block only
///   ic over M in blocks of MC    — each worker packs its MC x KC panel of A (L2)
///   jr over NC in slivers of NR  — one KC x NR sliver of B stays in L1 across the ir loop
///   ir over MC in slivers of MR  — the micro-kernel: an MR x NR tile of C in registers
/// Packed slivers are zero-padded to full MR / NR, so the micro-kernel always runs full tiles;
/// partial tiles of C are written through a small buffer.</summary>
internal static unsafe class BlockedGemm
{
    private const int KC = 256;
    private const int NC = 3072;
    private const int MCMax = 238; // 17 slivers of 14 rows
    private static readonly bool Wide = Vector512.IsHardwareAccelerated;
    private static readonly int MR = Wide ? MicroKernel512.MR : MicroKernel256.MR;
    private static readonly int NR = Wide ? MicroKernel512.NR : MicroKernel256.NR;

    [ThreadStatic] private static NativeBuffer? t_packA;
    [ThreadStatic] private static NativeBuffer? t_edge;
    [ThreadStatic] private static NativeBuffer? t_packB; // owned by the calling thread; workers only read it

    /// <summary>One matrix product of a batch; a, b, c point at the batch's first elements.
    /// Threads split C into column (or, when C is tall, row) ranges aligned to the register block;
    /// each thread runs the whole blocked product on its range with its own packing buffers, so
    /// the threads never wait for each other.</summary>
    public static void Multiply(float* a, float* b, float* c, int m, int n, int k, bool transposeA, bool transposeB, float alpha, float beta, int threads)
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            for (long i = 0; i < (long)m * n; i++) c[i] = beta == 0f ? 0f : beta * c[i];
            return;
        }
        if (!Vector256.IsHardwareAccelerated)
        {
            ScalarGemm.Multiply(a, b, c, m, n, k, transposeA, transposeB, alpha, beta);
            return;
        }
        int lda = transposeA ? m : k, ldb = transposeB ? k : n;
        if ((long)m * n * k < 64L * 64 * 64) threads = 1;
        bool splitColumns = n / NR >= m / MR;
        int unit = splitColumns ? NR : MR, extent = splitColumns ? n : m;
        int parts = Math.Max(1, Math.Min(threads, (extent + unit - 1) / unit));
        if (parts == 1)
        {
            MultiplyBlock(a, lda, b, ldb, c, n, m, n, k, transposeA, transposeB, alpha, beta);
            return;
        }
        int units = (extent + unit - 1) / unit;
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, part =>
        {
            int from = units * part / parts * unit, to = Math.Min(extent, units * (part + 1) / parts * unit);
            if (to <= from) return;
            if (splitColumns)
                MultiplyBlock(a, lda, transposeB ? b + (long)from * ldb : b + from, ldb, c + from, n, m, to - from, k, transposeA, transposeB, alpha, beta);
            else
                MultiplyBlock(transposeA ? a + from : a + (long)from * lda, lda, b, ldb, c + (long)from * n, n, to - from, n, k, transposeA, transposeB, alpha, beta);
        });
    }

    // The single-threaded blocked product with explicit leading dimensions.
    private static void MultiplyBlock(float* a, int lda, float* b, int ldb, float* c, long ldc, int m, int n, int k, bool transposeA, bool transposeB, float alpha, float beta)
    {
        t_packB = NativeBuffer.Ensure(t_packB, (long)KC * Math.Min(NC, RoundUp(n, NR)));
        t_packA = NativeBuffer.Ensure(t_packA, (long)RoundUp(Math.Min(MCMax, m), MR) * KC);
        t_edge = NativeBuffer.Ensure(t_edge, (long)MR * NR);
        float* packB = t_packB.Pointer, packA = t_packA.Pointer, edge = t_edge.Pointer;
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            int slivers = (nc + NR - 1) / NR;
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                bool first = pc == 0;
                float betaHere = first ? beta : 1f;
                bool readC = !first || beta != 0f;
                PackB(b, ldb, transposeB, pc, kc, jc, nc, packB);
                for (int ic = 0; ic < m; ic += MCMax)
                {
                    int rows = Math.Min(MCMax, m - ic);
                    PackA(a, lda, transposeA, ic, rows, pc, kc, packA);
                    for (int s = 0; s < slivers; s++)
                    {
                        int j = jc + s * NR, cols = Math.Min(NR, n - j);
                        float* bSliver = packB + (long)s * kc * NR;
                        for (int ir = 0; ir < rows; ir += MR)
                        {
                            int mr = Math.Min(MR, rows - ir);
                            float* aSliver = packA + (long)ir * kc;
                            float* cTile = c + (long)(ic + ir) * ldc + j;
                            if (mr == MR && cols == NR) Kernel(kc, aSliver, bSliver, cTile, ldc, alpha, betaHere, readC);
                            else EdgeTile(kc, aSliver, bSliver, cTile, ldc, mr, cols, alpha, betaHere, readC, edge);
                        }
                    }
                }
            }
        }
    }

    private static void Kernel(int kc, float* a, float* b, float* c, long ldc, float alpha, float beta, bool readC)
    {
        if (Wide) MicroKernel512.Run(kc, a, b, c, ldc, alpha, beta, readC);
        else MicroKernel256.Run(kc, a, b, c, ldc, alpha, beta, readC);
    }

    // A partial tile: the full register block into a scratch tile, then the valid part into C.
    private static void EdgeTile(int kc, float* a, float* b, float* c, long ldc, int mr, int nr, float alpha, float beta, bool readC, float* scratch)
    {
        Kernel(kc, a, b, scratch, NR, 1f, 0f, false);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
            {
                float v = alpha * scratch[i * NR + j];
                c[i * ldc + j] = readC ? v + beta * c[i * ldc + j] : v;
            }
    }

    // Packs rows [i0, i0 + rows) x columns [p0, p0 + kc) of op(A) as slivers of MR rows:
    // sliver s holds, for each k, its MR values contiguously (zero past the last row).
    private static void PackA(float* a, int lda, bool transposed, int i0, int rows, int p0, int kc, float* dst)
    {
        int mr = MR;
        for (int s = 0; s < rows; s += mr)
        {
            float* d = dst + (long)s * kc;
            int valid = Math.Min(mr, rows - s);
            if (transposed)
            {
                // stored [K, M]: the MR values of one k are contiguous in memory
                for (int k = 0; k < kc; k++)
                {
                    float* src = a + (long)(p0 + k) * lda + i0 + s;
                    for (int r = 0; r < valid; r++) d[k * mr + r] = src[r];
                    for (int r = valid; r < mr; r++) d[k * mr + r] = 0f;
                }
            }
            else
            {
                for (int r = 0; r < valid; r++)
                {
                    float* src = a + (long)(i0 + s + r) * lda + p0;
                    for (int k = 0; k < kc; k++) d[k * mr + r] = src[k];
                }
                for (int r = valid; r < mr; r++)
                    for (int k = 0; k < kc; k++) d[k * mr + r] = 0f;
            }
        }
    }

    // Packs rows [p0, p0 + kc) x columns [j0, j0 + cols) of op(B) as slivers of NR columns:
    // sliver s holds, for each k, its NR values contiguously (zero past the last column).
    private static void PackB(float* b, int ldb, bool transposed, int p0, int kc, int j0, int cols, float* dst)
    {
        int nr = NR;
        for (int s = 0; s < cols; s += nr)
        {
            float* d = dst + (long)(s / nr) * kc * nr;
            int valid = Math.Min(nr, cols - s);
            if (!transposed)
            {
                for (int k = 0; k < kc; k++)
                {
                    float* src = b + (long)(p0 + k) * ldb + j0 + s;
                    float* row = d + k * nr;
                    if (valid == nr)
                    {
                        for (int v = 0; v < nr; v += Vector256<float>.Count) Vector256.Store(Vector256.Load(src + v), row + v);
                    }
                    else
                    {
                        for (int c = 0; c < valid; c++) row[c] = src[c];
                        for (int c = valid; c < nr; c++) row[c] = 0f;
                    }
                }
            }
            else
            {
                // stored [N, K]: one column of op(B) is contiguous in memory
                for (int c = 0; c < valid; c++)
                {
                    float* src = b + (long)(j0 + s + c) * ldb + p0;
                    for (int k = 0; k < kc; k++) d[k * nr + c] = src[k];
                }
                for (int c = valid; c < nr; c++)
                    for (int k = 0; k < kc; k++) d[k * nr + c] = 0f;
            }
        }
    }

    private static int RoundUp(int x, int multiple) => (x + multiple - 1) / multiple * multiple;
}

/// <summary>A 64-byte aligned native float buffer that only grows.</summary>
internal sealed unsafe class NativeBuffer
{
    private NativeBuffer(long floats)
    {
        Floats = floats;
        Pointer = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
    }

    public long Floats { get; }
    public float* Pointer { get; }

    public static NativeBuffer Ensure(NativeBuffer? buffer, long floats) =>
        buffer is not null && buffer.Floats >= floats ? buffer : new NativeBuffer(Math.Max(floats, (buffer?.Floats ?? 0) * 2));

    ~NativeBuffer() => NativeMemory.AlignedFree(Pointer);
}
