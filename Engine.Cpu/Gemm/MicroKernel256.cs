using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>The AVX2 register block for machines without AVX-512: a 6 x 16 tile of C in 12 ymm
/// accumulators (2 B vectors and 1 broadcast make 15 of the 16 registers).</summary>
internal static unsafe class MicroKernel256
{
    public const int MR = 6, NR = 16;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(int kc, float* a, float* b, float* c, long ldc, float alpha, float beta, bool readC)
    {
        Vector256<float> c00 = Vector256<float>.Zero, c01 = Vector256<float>.Zero;
        Vector256<float> c10 = Vector256<float>.Zero, c11 = Vector256<float>.Zero;
        Vector256<float> c20 = Vector256<float>.Zero, c21 = Vector256<float>.Zero;
        Vector256<float> c30 = Vector256<float>.Zero, c31 = Vector256<float>.Zero;
        Vector256<float> c40 = Vector256<float>.Zero, c41 = Vector256<float>.Zero;
        Vector256<float> c50 = Vector256<float>.Zero, c51 = Vector256<float>.Zero;
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            { var ai = Vector256.Create(a[0]); c00 = Fma.MultiplyAdd(ai, b0, c00); c01 = Fma.MultiplyAdd(ai, b1, c01); }
            { var ai = Vector256.Create(a[1]); c10 = Fma.MultiplyAdd(ai, b0, c10); c11 = Fma.MultiplyAdd(ai, b1, c11); }
            { var ai = Vector256.Create(a[2]); c20 = Fma.MultiplyAdd(ai, b0, c20); c21 = Fma.MultiplyAdd(ai, b1, c21); }
            { var ai = Vector256.Create(a[3]); c30 = Fma.MultiplyAdd(ai, b0, c30); c31 = Fma.MultiplyAdd(ai, b1, c31); }
            { var ai = Vector256.Create(a[4]); c40 = Fma.MultiplyAdd(ai, b0, c40); c41 = Fma.MultiplyAdd(ai, b1, c41); }
            { var ai = Vector256.Create(a[5]); c50 = Fma.MultiplyAdd(ai, b0, c50); c51 = Fma.MultiplyAdd(ai, b1, c51); }
            a += 6;
            b += 16;
        }
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        if (readC) { Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 0 * ldc), c00 * va), c + 0 * ldc); Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 0 * ldc + 8), c01 * va), c + 0 * ldc + 8); }
        else { Vector256.Store(c00 * va, c + 0 * ldc); Vector256.Store(c01 * va, c + 0 * ldc + 8); }
        if (readC) { Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 1 * ldc), c10 * va), c + 1 * ldc); Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 1 * ldc + 8), c11 * va), c + 1 * ldc + 8); }
        else { Vector256.Store(c10 * va, c + 1 * ldc); Vector256.Store(c11 * va, c + 1 * ldc + 8); }
        if (readC) { Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 2 * ldc), c20 * va), c + 2 * ldc); Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 2 * ldc + 8), c21 * va), c + 2 * ldc + 8); }
        else { Vector256.Store(c20 * va, c + 2 * ldc); Vector256.Store(c21 * va, c + 2 * ldc + 8); }
        if (readC) { Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 3 * ldc), c30 * va), c + 3 * ldc); Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 3 * ldc + 8), c31 * va), c + 3 * ldc + 8); }
        else { Vector256.Store(c30 * va, c + 3 * ldc); Vector256.Store(c31 * va, c + 3 * ldc + 8); }
        if (readC) { Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 4 * ldc), c40 * va), c + 4 * ldc); Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 4 * ldc + 8), c41 * va), c + 4 * ldc + 8); }
        else { Vector256.Store(c40 * va, c + 4 * ldc); Vector256.Store(c41 * va, c + 4 * ldc + 8); }
        if (readC) { Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 5 * ldc), c50 * va), c + 5 * ldc); Vector256.Store(Fma.MultiplyAdd(vb, Vector256.Load(c + 5 * ldc + 8), c51 * va), c + 5 * ldc + 8); }
        else { Vector256.Store(c50 * va, c + 5 * ldc); Vector256.Store(c51 * va, c + 5 * ldc + 8); }
    }
}
