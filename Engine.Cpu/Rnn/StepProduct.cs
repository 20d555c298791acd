using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>y[rows, n] (+)= x[rows, k] w[k, n] for one recurrence step: x is the batch (a few rows:
/// h_{t-1}, or the step's gate gradients), w a slice of R packed once per call and reused by every
/// step (from L2 when a party's slice fits there, else from L3).
/// <para>Packed layout (<see cref="Pack"/>): columns in panels of <see cref="PanelWidth"/> = 24 (the
/// last one or two 8 or 16 wide, see <see cref="PanelWidthAt"/>), the panel of columns [s, s + width) at
/// offset s k, holding w[l, s + c] at l * width + c. n is a
/// multiple of 8 (callers pad columns with zeros). rows is a multiple of <see cref="RowBlock"/> = 4
/// (callers pad the batch with zero rows).</para>
/// The register block is 4 rows x 24 columns: 12 ymm accumulators, 3 w vectors, 1 broadcast (16 ymm);
/// per l it does 12 FMAs for 3 vector loads of w and 4 broadcasts of x.</summary>
internal static unsafe class StepProduct
{
    public const int RowBlock = 4;
    public const int PanelWidth = 24;
    private const int Width = 8;

    /// <summary>Where packing reads column c of w from: w[l, c] = Column(c)[l * stride], or 0 for all l
    /// where Column(c) is null (a padding column). A struct, so that the accessor inlines.</summary>
    public interface IColumns { float* Column(int c); }

    /// <summary>Packs w[l, c] for l in [0, k), c in [0, n), n a multiple of 8, from the columns that
    /// <paramref name="columns"/> points at (element l at l * stride): each column is found once, then
    /// copied, so packing costs about a read and a write of w.</summary>
    public static void Pack<TColumns>(int k, int n, TColumns columns, long stride, float* packed) where TColumns : struct, IColumns
    {
        float** column = stackalloc float*[PanelWidth];
        for (int start = 0; start < n; start += PanelWidthAt(n - start))
        {
            int width = PanelWidthAt(n - start);
            float* panel = packed + (long)start * k;
            for (int c = 0; c < width; c++) column[c] = columns.Column(start + c);
            // column by column: measured faster than row by row (Rnn.Step of an LSTM 512 on one thread,
            // mostly packing: 1.25 ms against 1.7 ms)
            for (int c = 0; c < width; c++)
                if (column[c] == null) for (int l = 0; l < k; l++) panel[l * width + c] = 0f;
                else for (int l = 0; l < k; l++) panel[l * width + c] = column[c][l * stride];
        }
    }

    /// <summary>Rows of a panel that one pass keeps in L1 (24 KB of w beside 4 rows of x): k is
    /// walked in blocks of this many, each block used by every row block before the next.</summary>
    public const int KBlock = 256;

    /// <summary>Width of the panel that starts where <paramref name="remaining"/> columns are left: 24,
    /// except that the last 32 columns are two panels of 16 (the 4 x 16 block keeps 8 accumulators
    /// in flight, enough to cover the FMA latency; a last panel of 8 would have 4).</summary>
    public static int PanelWidthAt(int remaining) => remaining == 32 ? 16 : Math.Min(PanelWidth, remaining);

    /// <summary>y (+)= x w with x [rows, k] at row stride ldx, y [rows, n] at row stride ldy. Each
    /// element sums its k blocks in order, the first one stored (or added to y when accumulating).</summary>
    public static void Multiply(float* x, int ldx, int rows, int k, float* packed, int n, float* y, int ldy, bool accumulate)
    {
        for (int start = 0; start < n; start += PanelWidthAt(n - start))
        {
            int width = PanelWidthAt(n - start);
            for (int l0 = 0; l0 < k; l0 += KBlock)
            {
                int kb = Math.Min(KBlock, k - l0);
                float* panel = packed + (long)start * k + (long)l0 * width;
                bool add = accumulate || l0 > 0;
                for (int r = 0; r < rows; r += RowBlock)
                {
                    float* xr = x + (long)r * ldx + l0, yr = y + (long)r * ldy + start;
                    if (width == 24) Tile<Three>(xr, ldx, kb, panel, yr, ldy, add);
                    else if (width == 16) Tile<Two>(xr, ldx, kb, panel, yr, ldy, add);
                    else Tile<One>(xr, ldx, kb, panel, yr, ldy, add);
                }
            }
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
