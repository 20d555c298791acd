using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>The AVX-512 register block: a 14 x 32 tile of C held in 28 zmm accumulators (with the
/// two B vectors and one broadcast, 31 of the 32 registers). Per k it loads one 32-wide row of the
/// packed B sliver, broadcasts 14 values of the packed A sliver and issues 28 FMAs: enough independent
/// chains to cover the FMA latency on both ports, with loads well under the load ports' rate.
/// Written out so the JIT keeps every accumulator in a register. The C tile is prefetched while
/// the k loop runs.</summary>
internal static unsafe class MicroKernel512
{
    public const int MR = 14, NR = 32;

    /// <summary>C[0..14, 0..32) (row stride ldc) = alpha * sum_k a[k*14 + i] b[k*32 + j]
    /// + (readC ? beta * C : 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int kc, float* a, float* b, float* c, long ldc, float alpha, float beta, bool readC)
    {
        Vector512<float> c00 = Vector512<float>.Zero, c01 = Vector512<float>.Zero;
        Vector512<float> c10 = Vector512<float>.Zero, c11 = Vector512<float>.Zero;
        Vector512<float> c20 = Vector512<float>.Zero, c21 = Vector512<float>.Zero;
        Vector512<float> c30 = Vector512<float>.Zero, c31 = Vector512<float>.Zero;
        Vector512<float> c40 = Vector512<float>.Zero, c41 = Vector512<float>.Zero;
        Vector512<float> c50 = Vector512<float>.Zero, c51 = Vector512<float>.Zero;
        Vector512<float> c60 = Vector512<float>.Zero, c61 = Vector512<float>.Zero;
        Vector512<float> c70 = Vector512<float>.Zero, c71 = Vector512<float>.Zero;
        Vector512<float> c80 = Vector512<float>.Zero, c81 = Vector512<float>.Zero;
        Vector512<float> c90 = Vector512<float>.Zero, c91 = Vector512<float>.Zero;
        Vector512<float> c100 = Vector512<float>.Zero, c101 = Vector512<float>.Zero;
        Vector512<float> c110 = Vector512<float>.Zero, c111 = Vector512<float>.Zero;
        Vector512<float> c120 = Vector512<float>.Zero, c121 = Vector512<float>.Zero;
        Vector512<float> c130 = Vector512<float>.Zero, c131 = Vector512<float>.Zero;
        for (int i = 0; i < 14; i++) { Sse.Prefetch0(c + i * ldc); Sse.Prefetch0(c + i * ldc + 16); }
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            { var ai = Vector512.Create(a[0]); c00 = Avx512F.FusedMultiplyAdd(ai, b0, c00); c01 = Avx512F.FusedMultiplyAdd(ai, b1, c01); }
            { var ai = Vector512.Create(a[1]); c10 = Avx512F.FusedMultiplyAdd(ai, b0, c10); c11 = Avx512F.FusedMultiplyAdd(ai, b1, c11); }
            { var ai = Vector512.Create(a[2]); c20 = Avx512F.FusedMultiplyAdd(ai, b0, c20); c21 = Avx512F.FusedMultiplyAdd(ai, b1, c21); }
            { var ai = Vector512.Create(a[3]); c30 = Avx512F.FusedMultiplyAdd(ai, b0, c30); c31 = Avx512F.FusedMultiplyAdd(ai, b1, c31); }
            { var ai = Vector512.Create(a[4]); c40 = Avx512F.FusedMultiplyAdd(ai, b0, c40); c41 = Avx512F.FusedMultiplyAdd(ai, b1, c41); }
            { var ai = Vector512.Create(a[5]); c50 = Avx512F.FusedMultiplyAdd(ai, b0, c50); c51 = Avx512F.FusedMultiplyAdd(ai, b1, c51); }
            { var ai = Vector512.Create(a[6]); c60 = Avx512F.FusedMultiplyAdd(ai, b0, c60); c61 = Avx512F.FusedMultiplyAdd(ai, b1, c61); }
            { var ai = Vector512.Create(a[7]); c70 = Avx512F.FusedMultiplyAdd(ai, b0, c70); c71 = Avx512F.FusedMultiplyAdd(ai, b1, c71); }
            { var ai = Vector512.Create(a[8]); c80 = Avx512F.FusedMultiplyAdd(ai, b0, c80); c81 = Avx512F.FusedMultiplyAdd(ai, b1, c81); }
            { var ai = Vector512.Create(a[9]); c90 = Avx512F.FusedMultiplyAdd(ai, b0, c90); c91 = Avx512F.FusedMultiplyAdd(ai, b1, c91); }
            { var ai = Vector512.Create(a[10]); c100 = Avx512F.FusedMultiplyAdd(ai, b0, c100); c101 = Avx512F.FusedMultiplyAdd(ai, b1, c101); }
            { var ai = Vector512.Create(a[11]); c110 = Avx512F.FusedMultiplyAdd(ai, b0, c110); c111 = Avx512F.FusedMultiplyAdd(ai, b1, c111); }
            { var ai = Vector512.Create(a[12]); c120 = Avx512F.FusedMultiplyAdd(ai, b0, c120); c121 = Avx512F.FusedMultiplyAdd(ai, b1, c121); }
            { var ai = Vector512.Create(a[13]); c130 = Avx512F.FusedMultiplyAdd(ai, b0, c130); c131 = Avx512F.FusedMultiplyAdd(ai, b1, c131); }
            a += 14;
            b += 32;
        }
        var va = Vector512.Create(alpha);
        if (readC)
        {
            var vb = Vector512.Create(beta);
            Store(c + 0 * ldc, c00 * va, c01 * va, vb);
            Store(c + 1 * ldc, c10 * va, c11 * va, vb);
            Store(c + 2 * ldc, c20 * va, c21 * va, vb);
            Store(c + 3 * ldc, c30 * va, c31 * va, vb);
            Store(c + 4 * ldc, c40 * va, c41 * va, vb);
            Store(c + 5 * ldc, c50 * va, c51 * va, vb);
            Store(c + 6 * ldc, c60 * va, c61 * va, vb);
            Store(c + 7 * ldc, c70 * va, c71 * va, vb);
            Store(c + 8 * ldc, c80 * va, c81 * va, vb);
            Store(c + 9 * ldc, c90 * va, c91 * va, vb);
            Store(c + 10 * ldc, c100 * va, c101 * va, vb);
            Store(c + 11 * ldc, c110 * va, c111 * va, vb);
            Store(c + 12 * ldc, c120 * va, c121 * va, vb);
            Store(c + 13 * ldc, c130 * va, c131 * va, vb);
        }
        else
        {
            Vector512.Store(c00 * va, c + 0 * ldc); Vector512.Store(c01 * va, c + 0 * ldc + 16);
            Vector512.Store(c10 * va, c + 1 * ldc); Vector512.Store(c11 * va, c + 1 * ldc + 16);
            Vector512.Store(c20 * va, c + 2 * ldc); Vector512.Store(c21 * va, c + 2 * ldc + 16);
            Vector512.Store(c30 * va, c + 3 * ldc); Vector512.Store(c31 * va, c + 3 * ldc + 16);
            Vector512.Store(c40 * va, c + 4 * ldc); Vector512.Store(c41 * va, c + 4 * ldc + 16);
            Vector512.Store(c50 * va, c + 5 * ldc); Vector512.Store(c51 * va, c + 5 * ldc + 16);
            Vector512.Store(c60 * va, c + 6 * ldc); Vector512.Store(c61 * va, c + 6 * ldc + 16);
            Vector512.Store(c70 * va, c + 7 * ldc); Vector512.Store(c71 * va, c + 7 * ldc + 16);
            Vector512.Store(c80 * va, c + 8 * ldc); Vector512.Store(c81 * va, c + 8 * ldc + 16);
            Vector512.Store(c90 * va, c + 9 * ldc); Vector512.Store(c91 * va, c + 9 * ldc + 16);
            Vector512.Store(c100 * va, c + 10 * ldc); Vector512.Store(c101 * va, c + 10 * ldc + 16);
            Vector512.Store(c110 * va, c + 11 * ldc); Vector512.Store(c111 * va, c + 11 * ldc + 16);
            Vector512.Store(c120 * va, c + 12 * ldc); Vector512.Store(c121 * va, c + 12 * ldc + 16);
            Vector512.Store(c130 * va, c + 13 * ldc); Vector512.Store(c131 * va, c + 13 * ldc + 16);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* row, Vector512<float> v0, Vector512<float> v1, Vector512<float> beta)
    {
        Vector512.Store(Avx512F.FusedMultiplyAdd(beta, Vector512.Load(row), v0), row);
        Vector512.Store(Avx512F.FusedMultiplyAdd(beta, Vector512.Load(row + 16), v1), row + 16);
    }
}
