using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>The Vector512 register tiles of <see cref="StepProduct"/>: 8 rows (4 for a last block of
/// 4) x 16, 32 or 48 columns. The 8 x 48 tile holds 24 zmm accumulators beside 3 w vectors and a
/// broadcast (28 of the 32 registers) and does 24 FMAs per l for 3 vector loads of w and 8 broadcasts
/// of x: half the loads per FMA of the 4-row Vector256 tile, and twice its columns per FMA.</summary>
internal static unsafe class StepTiles512
{
    private const int Width = 16;

    /// <summary>y[rows, width] (+)= x[rows, k] panel[k, width] for one packed panel of 16, 32 or 48
    /// columns: 8 rows at a time, then a last block of 4 where rows is 4 modulo 8.</summary>
    public static void Panel(float* x, int ldx, int rows, int k, float* panel, int width, float* y, int ldy, bool accumulate)
    {
        int r = 0;
        for (; r + 8 <= rows; r += 8)
        {
            float* xr = x + (long)r * ldx, yr = y + (long)r * ldy;
            if (width == 48) Tile<Eight, Three>(xr, ldx, k, panel, yr, ldy, accumulate);
            else if (width == 32) Tile<Eight, Two>(xr, ldx, k, panel, yr, ldy, accumulate);
            else Tile<Eight, One>(xr, ldx, k, panel, yr, ldy, accumulate);
        }
        for (; r < rows; r += StepProduct.RowBlock)
        {
            float* xr = x + (long)r * ldx, yr = y + (long)r * ldy;
            if (width == 48) Tile<Four, Three>(xr, ldx, k, panel, yr, ldy, accumulate);
            else if (width == 32) Tile<Four, Two>(xr, ldx, k, panel, yr, ldy, accumulate);
            else Tile<Four, One>(xr, ldx, k, panel, yr, ldy, accumulate);
        }
    }

    private interface ICount { static abstract int Count { get; } }
    private struct One : ICount { public static int Count => 1; }
    private struct Two : ICount { public static int Count => 2; }
    private struct Three : ICount { public static int Count => 3; }
    private struct Four : ICount { public static int Count => 4; }
    private struct Eight : ICount { public static int Count => 8; }

    // y[0..R, 0..16V] (+)= x[0..R, 0..k] w_panel[0..k, 0..16V]; R and V are JIT-time constants, so the
    // unused accumulators and branches fold away.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TR, TV>(float* x, int ldx, int k, float* w, float* y, int ldy, bool accumulate)
        where TR : struct, ICount where TV : struct, ICount
    {
        int width = TV.Count * Width;
        float* x0 = x, x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        float* x4 = x3 + ldx, x5 = x4 + ldx, x6 = x5 + ldx, x7 = x6 + ldx;
        Vector512<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        Vector512<float> a40 = default, a41 = default, a42 = default, a50 = default, a51 = default, a52 = default;
        Vector512<float> a60 = default, a61 = default, a62 = default, a70 = default, a71 = default, a72 = default;
        Vector512<float> w1 = default, w2 = default;
        for (int l = 0; l < k; l++)
        {
            var w0 = Vector512.Load(w);
            if (TV.Count >= 2) w1 = Vector512.Load(w + Width);
            if (TV.Count >= 3) w2 = Vector512.Load(w + 2 * Width);
            var b = Vector512.Create(x0[l]);
            a00 = Vector512.FusedMultiplyAdd(b, w0, a00);
            if (TV.Count >= 2) a01 = Vector512.FusedMultiplyAdd(b, w1, a01);
            if (TV.Count >= 3) a02 = Vector512.FusedMultiplyAdd(b, w2, a02);
            b = Vector512.Create(x1[l]);
            a10 = Vector512.FusedMultiplyAdd(b, w0, a10);
            if (TV.Count >= 2) a11 = Vector512.FusedMultiplyAdd(b, w1, a11);
            if (TV.Count >= 3) a12 = Vector512.FusedMultiplyAdd(b, w2, a12);
            b = Vector512.Create(x2[l]);
            a20 = Vector512.FusedMultiplyAdd(b, w0, a20);
            if (TV.Count >= 2) a21 = Vector512.FusedMultiplyAdd(b, w1, a21);
            if (TV.Count >= 3) a22 = Vector512.FusedMultiplyAdd(b, w2, a22);
            b = Vector512.Create(x3[l]);
            a30 = Vector512.FusedMultiplyAdd(b, w0, a30);
            if (TV.Count >= 2) a31 = Vector512.FusedMultiplyAdd(b, w1, a31);
            if (TV.Count >= 3) a32 = Vector512.FusedMultiplyAdd(b, w2, a32);
            if (TR.Count == 8)
            {
                b = Vector512.Create(x4[l]);
                a40 = Vector512.FusedMultiplyAdd(b, w0, a40);
                if (TV.Count >= 2) a41 = Vector512.FusedMultiplyAdd(b, w1, a41);
                if (TV.Count >= 3) a42 = Vector512.FusedMultiplyAdd(b, w2, a42);
                b = Vector512.Create(x5[l]);
                a50 = Vector512.FusedMultiplyAdd(b, w0, a50);
                if (TV.Count >= 2) a51 = Vector512.FusedMultiplyAdd(b, w1, a51);
                if (TV.Count >= 3) a52 = Vector512.FusedMultiplyAdd(b, w2, a52);
                b = Vector512.Create(x6[l]);
                a60 = Vector512.FusedMultiplyAdd(b, w0, a60);
                if (TV.Count >= 2) a61 = Vector512.FusedMultiplyAdd(b, w1, a61);
                if (TV.Count >= 3) a62 = Vector512.FusedMultiplyAdd(b, w2, a62);
                b = Vector512.Create(x7[l]);
                a70 = Vector512.FusedMultiplyAdd(b, w0, a70);
                if (TV.Count >= 2) a71 = Vector512.FusedMultiplyAdd(b, w1, a71);
                if (TV.Count >= 3) a72 = Vector512.FusedMultiplyAdd(b, w2, a72);
            }
            w += width;
        }
        Put<TV>(y, a00, a01, a02, accumulate);
        Put<TV>(y + ldy, a10, a11, a12, accumulate);
        Put<TV>(y + 2 * ldy, a20, a21, a22, accumulate);
        Put<TV>(y + 3 * ldy, a30, a31, a32, accumulate);
        if (TR.Count == 8)
        {
            Put<TV>(y + 4 * ldy, a40, a41, a42, accumulate);
            Put<TV>(y + 5 * ldy, a50, a51, a52, accumulate);
            Put<TV>(y + 6 * ldy, a60, a61, a62, accumulate);
            Put<TV>(y + 7 * ldy, a70, a71, a72, accumulate);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<TV>(float* y, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, bool accumulate) where TV : struct, ICount
    {
        if (accumulate)
        {
            a0 += Vector512.Load(y);
            if (TV.Count >= 2) a1 += Vector512.Load(y + Width);
            if (TV.Count >= 3) a2 += Vector512.Load(y + 2 * Width);
        }
        Vector512.Store(a0, y);
        if (TV.Count >= 2) Vector512.Store(a1, y + Width);
        if (TV.Count >= 3) Vector512.Store(a2, y + 2 * Width);
    }
}
