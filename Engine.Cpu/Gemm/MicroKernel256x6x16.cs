using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>AVX2 micro-kernel (used when Vector512 is not accelerated): a 6 x 16 tile of C in 12
/// Vector256 accumulators, plus 2 B vectors and 1 broadcast: 15 of the 16 ymm registers.</summary>
internal readonly unsafe struct MicroKernel256x6x16 : IGemmMicroKernel
{
    public static int Mr => 6;
    public static int Nr => 16;
    // Measured on Zen 3 (32 KB L1, 512 KB L2; docs/benchmarks.md): a deep KC = 512 matched or beat the
    // textbook 256 at 1024^3 and 2048^3 (it halves the passes over C), although the B sliver (KC x 16,
    // 32 KB) then fills L1 and partly streams from L2, which keeps up (88 bytes per 6 cycles of FMAs).
    // The A block MC x KC = 120 x 512 (240 KB) is about half the L2; MC from 72 to 144 measured the same.
    public static int BlockDepth => 512;
    public static int BlockRows => 120;
    public static int BlockColumns => 512;
    public static bool IsSupported => Vector256.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        // Bring the C tile towards L1 while the k loop runs; it is read (beta != 0) or written at the end.
        if (Sse.IsSupported) for (int r = 0; r < 6; r++)
        {
            Sse.Prefetch0(c + r * ldc);
            Sse.Prefetch0(c + r * ldc + 15);
        }
        Vector256<float> c0_0 = default, c0_1 = default, c1_0 = default, c1_1 = default, c2_0 = default, c2_1 = default;
        Vector256<float> c3_0 = default, c3_1 = default, c4_0 = default, c4_1 = default, c5_0 = default, c5_1 = default;
        for (int l = 0; l < kc; l++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(a[0]);
            c0_0 = Vector256.FusedMultiplyAdd(a0, b0, c0_0); c0_1 = Vector256.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector256.Create(a[1]);
            c1_0 = Vector256.FusedMultiplyAdd(a1, b0, c1_0); c1_1 = Vector256.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector256.Create(a[2]);
            c2_0 = Vector256.FusedMultiplyAdd(a2, b0, c2_0); c2_1 = Vector256.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector256.Create(a[3]);
            c3_0 = Vector256.FusedMultiplyAdd(a3, b0, c3_0); c3_1 = Vector256.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector256.Create(a[4]);
            c4_0 = Vector256.FusedMultiplyAdd(a4, b0, c4_0); c4_1 = Vector256.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector256.Create(a[5]);
            c5_0 = Vector256.FusedMultiplyAdd(a5, b0, c5_0); c5_1 = Vector256.FusedMultiplyAdd(a5, b1, c5_1);
            a += 6;
            b += 16;
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        bool read = beta != 0f;
        Store(c, c0_0, c0_1, va, vb, read);
        Store(c + ldc, c1_0, c1_1, va, vb, read);
        Store(c + 2 * ldc, c2_0, c2_1, va, vb, read);
        Store(c + 3 * ldc, c3_0, c3_1, va, vb, read);
        Store(c + 4 * ldc, c4_0, c4_1, va, vb, read);
        Store(c + 5 * ldc, c5_0, c5_1, va, vb, read);
    }

    // One row of the tile: c = alpha * acc (+ beta * c when read).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> acc0, Vector256<float> acc1, Vector256<float> alpha, Vector256<float> beta, bool read)
    {
        if (read)
        {
            Vector256.Store(Vector256.FusedMultiplyAdd(acc0, alpha, beta * Vector256.Load(c)), c);
            Vector256.Store(Vector256.FusedMultiplyAdd(acc1, alpha, beta * Vector256.Load(c + 8)), c + 8);
        }
        else
        {
            Vector256.Store(alpha * acc0, c);
            Vector256.Store(alpha * acc1, c + 8);
        }
    }
}
