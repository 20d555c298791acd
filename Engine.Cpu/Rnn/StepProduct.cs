using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>y[rows, n] (+)= x[rows, k] w[k, n] for one recurrence step: x is the batch (a few rows:
/// h_{t-1}, or the step's gate gradients), w a slice of R packed once per call and reused by every
/// step (from L2 when a party's slice fits there, else from L3).
/// <para>Packed layout (<see cref="Pack"/>): columns in panels, the panel of columns [s, s + width)
/// at offset s k, holding w[l, s + c] at l * width + c; <see cref="PanelWidthAt"/> gives the widths,
/// which depend on the register tiles in use (<see cref="Wide"/>), so a slice is multiplied with the
/// setting it was packed with. n is a multiple of 8 (callers pad columns with zeros). rows is a
/// multiple of <see cref="RowBlock"/> = 4 (callers pad the batch with zero rows).</para>
/// <para>Register tiles (<see cref="StepTiles"/>): 4 rows x up to 24 columns in Vector256 and,
/// where Vector512 is accelerated, 8 or 4 rows x up to 48 columns in Vector512.</para></summary>
internal static unsafe class StepProduct
{
    public const int RowBlock = 4;

    /// <summary>Widest panel of either layout (Vector512: 3 x 16 columns).</summary>
    public const int MaxPanelWidth = 48;

    /// <summary>Whether packing and products use the Vector512 tiles (default: where Vector512 is
    /// accelerated, unless FASTWEIGHTS_CPU_RNN_TILES=256). Tests switch it to cover both layouts; a
    /// slice must be multiplied with the setting it was packed with.</summary>
    public static bool Wide { get; set; } = Vector512.IsHardwareAccelerated && Environment.GetEnvironmentVariable("FASTWEIGHTS_CPU_RNN_TILES") != "256";

    /// <summary>Where packing reads column c of w from: w[l, c] = Column(c)[l * stride], or 0 for all l
    /// where Column(c) is null (a padding column). A struct, so that the accessor inlines.</summary>
    public interface IColumns { float* Column(int c); }

    /// <summary>Packs w[l, c] for l in [0, k), c in [0, n), n a multiple of 8, from the columns that
    /// <paramref name="columns"/> points at (element l at l * stride): each column is found once, then
    /// copied, so packing costs about a read and a write of w.</summary>
    public static void Pack<TColumns>(int k, int n, TColumns columns, long stride, float* packed) where TColumns : struct, IColumns
    {
        bool wide = Wide;
        float** column = stackalloc float*[MaxPanelWidth];
        for (int start = 0; start < n; start += PanelWidthAt(n - start, wide))
        {
            int width = PanelWidthAt(n - start, wide);
            float* panel = packed + (long)start * k;
            for (int c = 0; c < width; c++) column[c] = columns.Column(start + c);
            // column by column: measured faster than row by row (Rnn.Step of an LSTM 512 on one thread,
            // mostly packing: 1.25 ms against 1.7 ms)
            for (int c = 0; c < width; c++)
                if (column[c] == null) for (int l = 0; l < k; l++) panel[l * width + c] = 0f;
                else for (int l = 0; l < k; l++) panel[l * width + c] = column[c][l * stride];
        }
    }

    /// <summary>Rows of a panel that one pass keeps in L1 beside the x rows (24 KB of w in either
    /// layout: 256 rows of 24 columns, 128 of 48): k is walked in blocks of this many, each block
    /// used by every row block before the next.</summary>
    public static int KBlock(bool wide) => wide ? 128 : 256;

    /// <summary>Width of the panel that starts where <paramref name="remaining"/> columns (a multiple
    /// of 8) are left. Each width is one register tile with at least 8 accumulators for 4 rows (the FMA
    /// latency times its two ports), except a lone panel of 8.
    /// <para>Vector256: 24, except that the last 32 columns are two panels of 16 (a last panel of 8
    /// would have 4 accumulators).</para>
    /// <para>Vector512: 48; the last 64 columns are two panels of 32; where n leaves 8 over a multiple
    /// of 16, the last panel is 24 wide in Vector256 (so 40 = 16 + 24 and 56 = 32 + 24).</para></summary>
    public static int PanelWidthAt(int remaining, bool wide)
    {
        if (!wide) return remaining == 32 ? 16 : Math.Min(24, remaining);
        if (remaining % 16 == 8) return remaining switch { <= 24 => remaining, 40 => 16, 56 => 32, _ => 48 };
        return remaining == 64 ? 32 : Math.Min(48, remaining);
    }

    /// <summary>y (+)= x w with x [rows, k] at row stride ldx, y [rows, n] at row stride ldy, w packed
    /// by <see cref="Pack"/> with the same <see cref="Wide"/>. Each element sums its k blocks in order,
    /// the first one stored (or added to y when accumulating).</summary>
    public static void Multiply(float* x, int ldx, int rows, int k, float* packed, int n, float* y, int ldy, bool accumulate)
    {
        bool wide = Wide;
        int kBlock = KBlock(wide);
        for (int start = 0; start < n; start += PanelWidthAt(n - start, wide))
        {
            int width = PanelWidthAt(n - start, wide);
            for (int l0 = 0; l0 < k; l0 += kBlock)
            {
                int kb = Math.Min(kBlock, k - l0);
                float* panel = packed + (long)start * k + (long)l0 * width;
                bool add = accumulate || l0 > 0;
                float* xb = x + l0, yb = y + start;
                // 24 and 8 are Vector256 panels in either layout; 16 is one in the Vector256 layout only.
                if (wide && width % 16 == 0)
                    StepTiles.Panel<RegisterTile.Lanes512, Vector512<float>>(xb, ldx, rows, kb, panel, width, yb, ldy, add);
                else StepTiles.Panel<RegisterTile.Lanes256, Vector256<float>>(xb, ldx, rows, kb, panel, width, yb, ldy, add);
            }
        }
    }
}
