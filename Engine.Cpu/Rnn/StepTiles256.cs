using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>The Vector256 register tiles of <see cref="StepProduct"/>: 4 rows x 8, 16 or 24 columns,
/// up to 12 ymm accumulators, 3 w vectors and 1 broadcast (16 ymm); per l, 12 FMAs for 3 vector
/// loads of w and 4 broadcasts of x.</summary>
internal static unsafe class StepTiles256
{
    private const int Width = 8;

    /// <summary>y[rows, width] (+)= x[rows, k] panel[k, width] for one packed panel of 8, 16 or 24
    /// columns, 4 rows at a time.</summary>
    public static void Panel(float* x, int ldx, int rows, int k, float* panel, int width, float* y, int ldy, bool accumulate)
    {
        for (int r = 0; r < rows; r += StepProduct.RowBlock)
        {
            float* xr = x + (long)r * ldx, yr = y + (long)r * ldy;
            if (width == 24) Tile<Three>(xr, ldx, k, panel, yr, ldy, accumulate);
            else if (width == 16) Tile<Two>(xr, ldx, k, panel, yr, ldy, accumulate);
            else Tile<One>(xr, ldx, k, panel, yr, ldy, accumulate);
        }
    }

    private interface IVectors { static abstract int Count { get; } }
    private struct One : IVectors { public static int Count => 1; }
    private struct Two : IVectors { public static int Count => 2; }
    private struct Three : IVectors { public static int Count => 3; }

    // y[0..4, 0..8V] (+)= x[0..4, 0..k] w_panel[0..k, 0..8V]; V is a JIT-time constant, so the unused
    // accumulators and branches fold away.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TV>(float* x, int ldx, int k, float* w, float* y, int ldy, bool accumulate) where TV : struct, IVectors
    {
        int width = TV.Count * Width;
        float* x0 = x, x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        Vector256<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        Vector256<float> w1 = default, w2 = default;
        for (int l = 0; l < k; l++)
        {
            var w0 = Vector256.Load(w);
            if (TV.Count >= 2) w1 = Vector256.Load(w + Width);
            if (TV.Count >= 3) w2 = Vector256.Load(w + 2 * Width);
            var b = Vector256.Create(x0[l]);
            a00 = Vector256.FusedMultiplyAdd(b, w0, a00);
            if (TV.Count >= 2) a01 = Vector256.FusedMultiplyAdd(b, w1, a01);
            if (TV.Count >= 3) a02 = Vector256.FusedMultiplyAdd(b, w2, a02);
            b = Vector256.Create(x1[l]);
            a10 = Vector256.FusedMultiplyAdd(b, w0, a10);
            if (TV.Count >= 2) a11 = Vector256.FusedMultiplyAdd(b, w1, a11);
            if (TV.Count >= 3) a12 = Vector256.FusedMultiplyAdd(b, w2, a12);
            b = Vector256.Create(x2[l]);
            a20 = Vector256.FusedMultiplyAdd(b, w0, a20);
            if (TV.Count >= 2) a21 = Vector256.FusedMultiplyAdd(b, w1, a21);
            if (TV.Count >= 3) a22 = Vector256.FusedMultiplyAdd(b, w2, a22);
            b = Vector256.Create(x3[l]);
            a30 = Vector256.FusedMultiplyAdd(b, w0, a30);
            if (TV.Count >= 2) a31 = Vector256.FusedMultiplyAdd(b, w1, a31);
            if (TV.Count >= 3) a32 = Vector256.FusedMultiplyAdd(b, w2, a32);
            w += width;
        }
        Put<TV>(y, a00, a01, a02, accumulate);
        Put<TV>(y + ldy, a10, a11, a12, accumulate);
        Put<TV>(y + 2 * ldy, a20, a21, a22, accumulate);
        Put<TV>(y + 3 * ldy, a30, a31, a32, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<TV>(float* y, Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, bool accumulate) where TV : struct, IVectors
    {
        if (accumulate)
        {
            a0 += Vector256.Load(y);
            if (TV.Count >= 2) a1 += Vector256.Load(y + Width);
            if (TV.Count >= 3) a2 += Vector256.Load(y + 2 * Width);
        }
        Vector256.Store(a0, y);
        if (TV.Count >= 2) Vector256.Store(a1, y + Width);
        if (TV.Count >= 3) Vector256.Store(a2, y + 2 * Width);
    }
}
