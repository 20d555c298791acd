using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

using FastWeights.Engine.Cpu.Gemm;

namespace FastWeights.Engine.Cpu.LinearAttention;

/// <summary>Small dense products for the chunked form, on row-major buffers a few hundred wide:
/// C[m x n] (+)= A[m x k] B[k x n], on the generic <see cref="RegisterTile"/>: column blocks of two
/// vectors (32 columns of Vector512, 16 of Vector256), each walked in row blocks of 8 (Vector512: 16
/// accumulators, 2 B loads and 8 broadcasts per 16 FMAs) or 6 (Vector256: 12 accumulators, enough
/// independent FMAs in flight to cover two FMA pipes' latency), then 4 and 1; a last 16 columns of
/// Vector512 take one-vector tiles. n must be a multiple of 16: callers pad B and C with zero
/// columns. Without Vector256 either, a scalar loop.</summary>
internal static unsafe class ChunkMatMul
{
    /// <summary>Where A may be nonzero. Lower: A[i, l] = 0 for l &gt; i; Upper: A[i, l] = 0 for
    /// l &lt; i (the chunked forms' causal factors and their transposes). The vector paths then run
    /// each row block only over the depth its rows can reach (about half the work); the scalar loop
    /// runs the full depth, which gives the same result.</summary>
    public enum Triangle { Full, Lower, Upper }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate, Triangle triangle = Triangle.Full)
    {
        if (Vector512.IsHardwareAccelerated) Columns<RegisterTile.Lanes512, Vector512<float>>(a, lda, b, ldb, c, ldc, m, n, k, accumulate, triangle);
        else if (Vector256.IsHardwareAccelerated) Columns<RegisterTile.Lanes256, Vector256<float>>(a, lda, b, ldb, c, ldc, m, n, k, accumulate, triangle);
        else Scalar(a, lda, b, ldb, c, ldc, m, n, k, accumulate);
    }

    // Column blocks of two vectors, then (Vector512, n = 16 mod 32) one of one vector.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Columns<TL, TVec>(float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate, Triangle triangle)
        where TL : struct, RegisterTile.ILanes<TVec> where TVec : struct
    {
        int lanes = TL.Count, j = 0;
        for (; j + 2 * lanes <= n; j += 2 * lanes)
            Rows<TL, TVec, RegisterTile.Two>(a, lda, b + j, ldb, c + j, ldc, m, k, accumulate, triangle);
        for (; j < n; j += lanes)
            Rows<TL, TVec, RegisterTile.One>(a, lda, b + j, ldb, c + j, ldc, m, k, accumulate, triangle);
    }

    // Row blocks of 8 (Vector512) or 6 (Vector256), then 4, then 1, over one column block.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rows<TL, TVec, TV>(float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int k, bool accumulate, Triangle triangle)
        where TL : struct, RegisterTile.ILanes<TVec> where TVec : struct where TV : struct, RegisterTile.ICount
    {
        int i = 0;
        if (TL.EightRows)
            for (; i + 8 <= m; i += 8) Block<TL, TVec, RegisterTile.Eight, TV>(a, lda, b, ldb, c, ldc, i, k, accumulate, triangle);
        else
            for (; i + 6 <= m; i += 6) Block<TL, TVec, RegisterTile.Six, TV>(a, lda, b, ldb, c, ldc, i, k, accumulate, triangle);
        for (; i + 4 <= m; i += 4) Block<TL, TVec, RegisterTile.Four, TV>(a, lda, b, ldb, c, ldc, i, k, accumulate, triangle);
        for (; i < m; i++) Block<TL, TVec, RegisterTile.One, TV>(a, lda, b, ldb, c, ldc, i, k, accumulate, triangle);
    }

    // Rows i .. i + R - 1 of C over the depths of A they can reach.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block<TL, TVec, TR, TV>(float* a, int lda, float* b, int ldb, float* c, int ldc, int i, int k, bool accumulate, Triangle triangle)
        where TL : struct, RegisterTile.ILanes<TVec> where TVec : struct where TR : struct, RegisterTile.ICount where TV : struct, RegisterTile.ICount
    {
        int depth = Depth(triangle, i, TR.Count, k, out int first);
        RegisterTile.Multiply<TL, TVec, TR, TV>(a + (long)i * lda + first, lda, depth, b + (long)first * ldb, ldb, c + (long)i * ldc, ldc, accumulate);
    }

    /// <summary>The depths rows i .. i + rows - 1 of A can reach: all k; for Lower [0, i + rows);
    /// for Upper [i, k).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Depth(Triangle triangle, int i, int rows, int k, out int first)
    {
        first = triangle == Triangle.Upper ? Math.Min(i, k) : 0;
        return triangle == Triangle.Lower ? Math.Min(k, i + rows) : k - first;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scalar(float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate)
    {
        for (int i = 0; i < m; i++)
        {
            float* ci = c + (long)i * ldc;
            if (!accumulate) new Span<float>(ci, n).Clear();
            for (int l = 0; l < k; l++)
            {
                float x = a[(long)i * lda + l];
                float* bl = b + (long)l * ldb;
                for (int j = 0; j < n; j++) ci[j] += x * bl[j];
            }
        }
    }

    /// <summary>dst[j, i] = src[i, j] for i &lt; rows, j &lt; cols; nothing else of dst is written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose(float* src, int lds, float* dst, int ldd, int rows, int cols)
    {
        // 8 x 8 tiles keep both sides within a few cache lines
        for (int i0 = 0; i0 < rows; i0 += 8)
            for (int j0 = 0; j0 < cols; j0 += 8)
            {
                int i1 = Math.Min(rows, i0 + 8), j1 = Math.Min(cols, j0 + 8);
                if (Avx.IsSupported && i1 - i0 == 8 && j1 - j0 == 8)
                {
                    GemmPacking.Transpose8x8(src + (long)i0 * lds + j0, lds, dst + (long)j0 * ldd + i0, ldd);
                    continue;
                }
                for (int i = i0; i < i1; i++)
                    for (int j = j0; j < j1; j++) dst[(long)j * ldd + i] = src[(long)i * lds + j];
            }
    }
}
