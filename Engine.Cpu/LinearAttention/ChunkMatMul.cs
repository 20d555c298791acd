using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

using FastWeights.Engine.Cpu.Gemm;

namespace FastWeights.Engine.Cpu.LinearAttention;

/// <summary>Small dense products for the chunked form, on row-major buffers a few hundred wide:
/// C[m x n] (+)= A[m x k] B[k x n]. Register block of 8 rows x 32 columns (16 Vector512
/// accumulators, each B row loaded once per 8 rows, A broadcast), then 4-row, 1-row and
/// 16-column edges.
/// n must be a multiple of 16: callers pad B and C with zero columns. Without AVX-512: 6 x 16
/// blocks of Vector256 (AVX2, then 4 x 16 and 1 x 16 edges); without either, a scalar loop.</summary>
internal static unsafe class ChunkMatMul
{
    /// <summary>Where A may be nonzero. Lower: A[i, l] = 0 for l &gt; i; Upper: A[i, l] = 0 for
    /// l &lt; i (the chunked forms' causal factors and their transposes). The AVX2 path then runs
    /// each row block only over the depth its rows can reach (about half the work); the other
    /// paths run the full depth, which gives the same result.</summary>
    public enum Triangle { Full, Lower, Upper }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate, Triangle triangle = Triangle.Full)
    {
        if (!Vector512.IsHardwareAccelerated)
        {
            if (Vector256.IsHardwareAccelerated) Multiply256(a, lda, b, ldb, c, ldc, m, n, k, accumulate, triangle);
            else Scalar(a, lda, b, ldb, c, ldc, m, n, k, accumulate);
            return;
        }
        int j = 0;
        for (; j + 32 <= n; j += 32)
        {
            int i = 0;
            for (; i + 8 <= m; i += 8) Block8x32(a + (long)i * lda, lda, b + j, ldb, c + (long)i * ldc + j, ldc, k, accumulate);
            for (; i + 4 <= m; i += 4) Block4x32(a + (long)i * lda, lda, b + j, ldb, c + (long)i * ldc + j, ldc, k, accumulate);
            for (; i < m; i++) Block1x32(a + (long)i * lda, b + j, ldb, c + (long)i * ldc + j, k, accumulate);
        }
        if (j < n)
        {
            int i = 0;
            for (; i + 4 <= m; i += 4) Block4x16(a + (long)i * lda, lda, b + j, ldb, c + (long)i * ldc + j, ldc, k, accumulate);
            for (; i < m; i++) Block1x16(a + (long)i * lda, b + j, ldb, c + (long)i * ldc + j, k, accumulate);
        }
    }

    /// <summary>8 rows x 32 columns: 16 accumulators, 2 B loads and 8 broadcasts per 16 FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block8x32(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, bool accumulate)
    {
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
        if (accumulate)
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16);
            c40 = Vector512.Load(c + 4 * ldc); c41 = Vector512.Load(c + 4 * ldc + 16);
            c50 = Vector512.Load(c + 5 * ldc); c51 = Vector512.Load(c + 5 * ldc + 16);
            c60 = Vector512.Load(c + 6 * ldc); c61 = Vector512.Load(c + 6 * ldc + 16);
            c70 = Vector512.Load(c + 7 * ldc); c71 = Vector512.Load(c + 7 * ldc + 16);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = Vector512<float>.Zero;
        float* a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda, a6 = a + 6 * lda, a7 = a + 7 * lda;
        for (int l = 0; l < k; l++)
        {
            float* bl = b + (long)l * ldb;
            var b0 = Vector512.Load(bl);
            var b1 = Vector512.Load(bl + 16);
            var x = Vector512.Create(a[l]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[l]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[l]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[l]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a4[l]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a5[l]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a6[l]);
            c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a7[l]);
            c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
        }
        c00.Store(c); c01.Store(c + 16);
        c10.Store(c + ldc); c11.Store(c + ldc + 16);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 16);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 16);
        c60.Store(c + 6 * ldc); c61.Store(c + 6 * ldc + 16);
        c70.Store(c + 7 * ldc); c71.Store(c + 7 * ldc + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block4x32(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, bool accumulate)
    {
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if (accumulate)
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector512<float>.Zero;
        float* a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda;
        for (int l = 0; l < k; l++)
        {
            float* bl = b + (long)l * ldb;
            var b0 = Vector512.Load(bl);
            var b1 = Vector512.Load(bl + 16);
            var x = Vector512.Create(a[l]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[l]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[l]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[l]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
        }
        c00.Store(c); c01.Store(c + 16);
        c10.Store(c + ldc); c11.Store(c + ldc + 16);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block4x16(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, bool accumulate)
    {
        Vector512<float> c0, c1, c2, c3;
        if (accumulate) { c0 = Vector512.Load(c); c1 = Vector512.Load(c + ldc); c2 = Vector512.Load(c + 2 * ldc); c3 = Vector512.Load(c + 3 * ldc); }
        else c0 = c1 = c2 = c3 = Vector512<float>.Zero;
        float* a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda;
        for (int l = 0; l < k; l++)
        {
            var bl = Vector512.Load(b + (long)l * ldb);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[l]), bl, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[l]), bl, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[l]), bl, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[l]), bl, c3);
        }
        c0.Store(c); c1.Store(c + ldc); c2.Store(c + 2 * ldc); c3.Store(c + 3 * ldc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block1x32(float* a, float* b, int ldb, float* c, int k, bool accumulate)
    {
        var c0 = accumulate ? Vector512.Load(c) : Vector512<float>.Zero;
        var c1 = accumulate ? Vector512.Load(c + 16) : Vector512<float>.Zero;
        for (int l = 0; l < k; l++)
        {
            var x = Vector512.Create(a[l]);
            float* bl = b + (long)l * ldb;
            c0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bl), c0);
            c1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bl + 16), c1);
        }
        c0.Store(c); c1.Store(c + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block1x16(float* a, float* b, int ldb, float* c, int k, bool accumulate)
    {
        var c0 = accumulate ? Vector512.Load(c) : Vector512<float>.Zero;
        for (int l = 0; l < k; l++) c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[l]), Vector512.Load(b + (long)l * ldb), c0);
        c0.Store(c);
    }

    /// <summary>AVX2: blocks of 6 rows x 16 columns (two Vector256 per row, 12 accumulators: enough
    /// independent FMAs in flight to cover two FMA pipes' latency), then 4 x 16 and 1 x 16 edges.
    /// A row block of a triangular A runs over depths [first, first + depth) only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Multiply256(float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate, Triangle triangle)
    {
        for (int j = 0; j < n; j += 16)
        {
            int i = 0;
            for (; i + 6 <= m; i += 6)
            {
                int depth = Depth(triangle, i, 6, k, out int first);
                Block6x16(a + (long)i * lda + first, lda, b + (long)first * ldb + j, ldb, c + (long)i * ldc + j, ldc, depth, accumulate);
            }
            for (; i + 4 <= m; i += 4)
            {
                int depth = Depth(triangle, i, 4, k, out int first);
                Block4x16x256(a + (long)i * lda + first, lda, b + (long)first * ldb + j, ldb, c + (long)i * ldc + j, ldc, depth, accumulate);
            }
            for (; i < m; i++)
            {
                int depth = Depth(triangle, i, 1, k, out int first);
                float* ci = c + (long)i * ldc + j, ai = a + (long)i * lda + first, bf = b + (long)first * ldb + j;
                var c0 = accumulate ? Vector256.Load(ci) : Vector256<float>.Zero;
                var c1 = accumulate ? Vector256.Load(ci + 8) : Vector256<float>.Zero;
                for (int l = 0; l < depth; l++)
                {
                    var x = Vector256.Create(ai[l]);
                    float* bl = bf + (long)l * ldb;
                    c0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bl), c0);
                    c1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(bl + 8), c1);
                }
                c0.Store(ci); c1.Store(ci + 8);
            }
        }
    }

    /// <summary>The depths rows i .. i + rows - 1 of A can reach: all k; for Lower [0, i + rows);
    /// for Upper [i, k).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Depth(Triangle triangle, int i, int rows, int k, out int first)
    {
        first = triangle == Triangle.Upper ? Math.Min(i, k) : 0;
        return triangle == Triangle.Lower ? Math.Min(k, i + rows) : k - first;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Block4x16x256(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, bool accumulate)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if (accumulate)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector256<float>.Zero;
        float* a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda;
        for (int l = 0; l < k; l++)
        {
            float* bl = b + (long)l * ldb;
            var b0 = Vector256.Load(bl);
            var b1 = Vector256.Load(bl + 8);
            var x = Vector256.Create(a[l]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[l]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[l]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[l]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block6x16(float* a, int lda, float* b, int ldb, float* c, int ldc, int k, bool accumulate)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (accumulate)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
            c40 = Vector256.Load(c + 4 * ldc); c41 = Vector256.Load(c + 4 * ldc + 8);
            c50 = Vector256.Load(c + 5 * ldc); c51 = Vector256.Load(c + 5 * ldc + 8);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = Vector256<float>.Zero;
        float* a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda;
        for (int l = 0; l < k; l++)
        {
            float* bl = b + (long)l * ldb;
            var b0 = Vector256.Load(bl);
            var b1 = Vector256.Load(bl + 8);
            var x = Vector256.Create(a[l]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[l]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[l]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[l]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a4[l]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a5[l]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 8);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 8);
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
