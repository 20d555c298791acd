using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>AVX-512 micro-kernel: a 14 x 32 tile of C held in 28 Vector512 accumulators
/// (14 rows x 2 vectors of 16 columns). Per k: 2 loads of the packed B row, 14 broadcasts from the
/// packed A column, 28 FMAs. Written out by hand (no loops over registers) so the JIT keeps every
/// accumulator in a zmm register.</summary>
internal readonly unsafe struct MicroKernel512x14x32 : IGemmMicroKernel
{
    public static int Mr => 14;
    public static int Nr => 32;
    // Blocking by vendor. Intel (Sapphire and Emerald Rapids: 48 KB L1, 2 MB L2): KC 512, MC 252, the A
    // block (252 x 512, ~0.5 MB) in L2 and twice as many row blocks for the two threads to share as with
    // the earlier KC 256, MC 504 (which kept KC x NR of B, 32 KB, in L1). On a quiet Emerald Rapids VM
    // (four sweep rounds, bench/results/2026-12-07-cpu-xeon-gemm-blocking.txt) 512 x 252 ran 256-275 /
    // 269-277 GFLOP/s at 1024^3 / 2048^3 against 259-268 / 252-263 for 256 x 504; an earlier sweep on a
    // noisier VM (2026-12-05) had found nothing ahead of the noise. AMD (Zen 5: 48 KB L1, 1 MB L2):
    // KC 1024, MC 70, a deeper K that quarters the passes over C with the A block (70 x 1024, 280 KB)
    // still in L2: 3-10% faster than 256 x 504 at 1024^3 to 2048^3 (ten sweep rounds, then four
    // alternating rounds of the two defaults: bench/results/2026-12-06-cpu-zen5-gemm-blocking*.txt);
    // Zen 4 (AVX-512 on 256-bit units) not measured.
    // NC: 1024 on Intel, half the passes over A of NC 512, now that the threads walk the k blocks in
    // step (BlockedGemm.Cooperative) and each core reads one 512 x 1024 block of B (2 MB) at a time. On
    // the Emerald Rapids VM (2026-12-08, five alternating rounds, bench/results/2026-12-08-cpu-xeon-gemm-
    // blocking.txt) NC 512, 1024 and 2048 and 256 x 504 x 2048 ran within 2% of each other (medians
    // 274-282 GFLOP/s at 1024^3, 276-281 at 2048^3), NC 1024 at the top by a hair: the noise decides.
    // With one part of C a thread (BlockedGemm.InParts, later) NC 1024 also means a 1024-wide column
    // part of 2048^3 packs its A once, not twice.
    public static int BlockDepth => CpuVendor.IsAmd ? 1024 : 512;
    public static int BlockRows => CpuVendor.IsAmd ? 70 : 252;
    public static int BlockColumns => CpuVendor.IsAmd ? 512 : 1024;
    public static bool IsSupported => Vector512.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int kc, float* a, float* b, float* c, nint ldc, float alpha, float beta)
    {
        // Bring the C tile towards L1 while the k loop runs; it is read (beta != 0) or written at the end.
        if (Sse.IsSupported) for (int r = 0; r < 14; r++)
        {
            Sse.Prefetch0(c + r * ldc + 0);
            Sse.Prefetch0(c + r * ldc + 16);
            Sse.Prefetch0(c + r * ldc + 31);
        }
        Vector512<float> c0_0 = default, c0_1 = default;
        Vector512<float> c1_0 = default, c1_1 = default;
        Vector512<float> c2_0 = default, c2_1 = default;
        Vector512<float> c3_0 = default, c3_1 = default;
        Vector512<float> c4_0 = default, c4_1 = default;
        Vector512<float> c5_0 = default, c5_1 = default;
        Vector512<float> c6_0 = default, c6_1 = default;
        Vector512<float> c7_0 = default, c7_1 = default;
        Vector512<float> c8_0 = default, c8_1 = default;
        Vector512<float> c9_0 = default, c9_1 = default;
        Vector512<float> c10_0 = default, c10_1 = default;
        Vector512<float> c11_0 = default, c11_1 = default;
        Vector512<float> c12_0 = default, c12_1 = default;
        Vector512<float> c13_0 = default, c13_1 = default;
        for (int l = 0; l < kc; l++)
        {
            var b0 = Vector512.Load(b + 0);
            var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]);
            c0_0 = Vector512.FusedMultiplyAdd(a0, b0, c0_0);
            c0_1 = Vector512.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector512.Create(a[1]);
            c1_0 = Vector512.FusedMultiplyAdd(a1, b0, c1_0);
            c1_1 = Vector512.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector512.Create(a[2]);
            c2_0 = Vector512.FusedMultiplyAdd(a2, b0, c2_0);
            c2_1 = Vector512.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector512.Create(a[3]);
            c3_0 = Vector512.FusedMultiplyAdd(a3, b0, c3_0);
            c3_1 = Vector512.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector512.Create(a[4]);
            c4_0 = Vector512.FusedMultiplyAdd(a4, b0, c4_0);
            c4_1 = Vector512.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector512.Create(a[5]);
            c5_0 = Vector512.FusedMultiplyAdd(a5, b0, c5_0);
            c5_1 = Vector512.FusedMultiplyAdd(a5, b1, c5_1);
            var a6 = Vector512.Create(a[6]);
            c6_0 = Vector512.FusedMultiplyAdd(a6, b0, c6_0);
            c6_1 = Vector512.FusedMultiplyAdd(a6, b1, c6_1);
            var a7 = Vector512.Create(a[7]);
            c7_0 = Vector512.FusedMultiplyAdd(a7, b0, c7_0);
            c7_1 = Vector512.FusedMultiplyAdd(a7, b1, c7_1);
            var a8 = Vector512.Create(a[8]);
            c8_0 = Vector512.FusedMultiplyAdd(a8, b0, c8_0);
            c8_1 = Vector512.FusedMultiplyAdd(a8, b1, c8_1);
            var a9 = Vector512.Create(a[9]);
            c9_0 = Vector512.FusedMultiplyAdd(a9, b0, c9_0);
            c9_1 = Vector512.FusedMultiplyAdd(a9, b1, c9_1);
            var a10 = Vector512.Create(a[10]);
            c10_0 = Vector512.FusedMultiplyAdd(a10, b0, c10_0);
            c10_1 = Vector512.FusedMultiplyAdd(a10, b1, c10_1);
            var a11 = Vector512.Create(a[11]);
            c11_0 = Vector512.FusedMultiplyAdd(a11, b0, c11_0);
            c11_1 = Vector512.FusedMultiplyAdd(a11, b1, c11_1);
            var a12 = Vector512.Create(a[12]);
            c12_0 = Vector512.FusedMultiplyAdd(a12, b0, c12_0);
            c12_1 = Vector512.FusedMultiplyAdd(a12, b1, c12_1);
            var a13 = Vector512.Create(a[13]);
            c13_0 = Vector512.FusedMultiplyAdd(a13, b0, c13_0);
            c13_1 = Vector512.FusedMultiplyAdd(a13, b1, c13_1);
            a += 14;
            b += 32;
        }
        var va = Vector512.Create(alpha);
        if (beta == 0f)
        {
            Vector512.Store(va * c0_0, c + 0 * ldc + 0); Vector512.Store(va * c0_1, c + 0 * ldc + 16);
            Vector512.Store(va * c1_0, c + 1 * ldc + 0); Vector512.Store(va * c1_1, c + 1 * ldc + 16);
            Vector512.Store(va * c2_0, c + 2 * ldc + 0); Vector512.Store(va * c2_1, c + 2 * ldc + 16);
            Vector512.Store(va * c3_0, c + 3 * ldc + 0); Vector512.Store(va * c3_1, c + 3 * ldc + 16);
            Vector512.Store(va * c4_0, c + 4 * ldc + 0); Vector512.Store(va * c4_1, c + 4 * ldc + 16);
            Vector512.Store(va * c5_0, c + 5 * ldc + 0); Vector512.Store(va * c5_1, c + 5 * ldc + 16);
            Vector512.Store(va * c6_0, c + 6 * ldc + 0); Vector512.Store(va * c6_1, c + 6 * ldc + 16);
            Vector512.Store(va * c7_0, c + 7 * ldc + 0); Vector512.Store(va * c7_1, c + 7 * ldc + 16);
            Vector512.Store(va * c8_0, c + 8 * ldc + 0); Vector512.Store(va * c8_1, c + 8 * ldc + 16);
            Vector512.Store(va * c9_0, c + 9 * ldc + 0); Vector512.Store(va * c9_1, c + 9 * ldc + 16);
            Vector512.Store(va * c10_0, c + 10 * ldc + 0); Vector512.Store(va * c10_1, c + 10 * ldc + 16);
            Vector512.Store(va * c11_0, c + 11 * ldc + 0); Vector512.Store(va * c11_1, c + 11 * ldc + 16);
            Vector512.Store(va * c12_0, c + 12 * ldc + 0); Vector512.Store(va * c12_1, c + 12 * ldc + 16);
            Vector512.Store(va * c13_0, c + 13 * ldc + 0); Vector512.Store(va * c13_1, c + 13 * ldc + 16);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Update(c + 0 * ldc + 0, c0_0, va, vb); Update(c + 0 * ldc + 16, c0_1, va, vb);
            Update(c + 1 * ldc + 0, c1_0, va, vb); Update(c + 1 * ldc + 16, c1_1, va, vb);
            Update(c + 2 * ldc + 0, c2_0, va, vb); Update(c + 2 * ldc + 16, c2_1, va, vb);
            Update(c + 3 * ldc + 0, c3_0, va, vb); Update(c + 3 * ldc + 16, c3_1, va, vb);
            Update(c + 4 * ldc + 0, c4_0, va, vb); Update(c + 4 * ldc + 16, c4_1, va, vb);
            Update(c + 5 * ldc + 0, c5_0, va, vb); Update(c + 5 * ldc + 16, c5_1, va, vb);
            Update(c + 6 * ldc + 0, c6_0, va, vb); Update(c + 6 * ldc + 16, c6_1, va, vb);
            Update(c + 7 * ldc + 0, c7_0, va, vb); Update(c + 7 * ldc + 16, c7_1, va, vb);
            Update(c + 8 * ldc + 0, c8_0, va, vb); Update(c + 8 * ldc + 16, c8_1, va, vb);
            Update(c + 9 * ldc + 0, c9_0, va, vb); Update(c + 9 * ldc + 16, c9_1, va, vb);
            Update(c + 10 * ldc + 0, c10_0, va, vb); Update(c + 10 * ldc + 16, c10_1, va, vb);
            Update(c + 11 * ldc + 0, c11_0, va, vb); Update(c + 11 * ldc + 16, c11_1, va, vb);
            Update(c + 12 * ldc + 0, c12_0, va, vb); Update(c + 12 * ldc + 16, c12_1, va, vb);
            Update(c + 13 * ldc + 0, c13_0, va, vb); Update(c + 13 * ldc + 16, c13_1, va, vb);
        }
    }

    // c = alpha * acc + beta * c
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(float* c, Vector512<float> acc, Vector512<float> alpha, Vector512<float> beta) =>
        Vector512.Store(Vector512.FusedMultiplyAdd(acc, alpha, beta * Vector512.Load(c)), c);
}
