using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>The register tiles of <see cref="StepProduct"/>: y[R rows, V vectors] (+)= x[R, k]
/// w_panel[k, V vectors], on the generic <see cref="RegisterTile"/> (both vector widths: the vector
/// type, R and V are JIT-time constants, so the unused accumulators and branches fold away).
/// <list type="bullet">
/// <item>Vector256: 4 rows x 8, 16 or 24 columns; up to 12 ymm accumulators beside 3 w vectors and a
/// broadcast (16 ymm); per l, 12 FMAs for 3 vector loads of w and 4 broadcasts of x.</item>
/// <item>Vector512: 8 rows (4 for a last block of 4) x 16, 32 or 48 columns; the 8 x 48 tile holds 24
/// zmm accumulators beside 3 w vectors and a broadcast (28 of the 32 registers) and does 24 FMAs per l
/// for 3 vector loads of w and 8 broadcasts of x: half the loads per FMA of the Vector256 tile.
/// (8 rows of ymm would need 28 of its 16 registers.)</item>
/// </list></summary>
internal static unsafe class StepTiles
{
    /// <summary>y[rows, width] (+)= x[rows, k] panel[k, width] for one packed panel of 1, 2 or 3
    /// vectors of columns: 8 rows at a time where the vector type allows, then blocks of 4.</summary>
    public static void Panel<TL, TVec>(float* x, int ldx, int rows, int k, float* panel, int width, float* y, int ldy, bool accumulate)
        where TL : struct, RegisterTile.ILanes<TVec> where TVec : struct
    {
        int vectors = width / TL.Count, r = 0;
        if (TL.EightRows)
            for (; r + 8 <= rows; r += 8)
                Rows<TL, TVec, RegisterTile.Eight>(x + (long)r * ldx, ldx, k, panel, vectors, y + (long)r * ldy, ldy, accumulate);
        for (; r < rows; r += StepProduct.RowBlock)
            Rows<TL, TVec, RegisterTile.Four>(x + (long)r * ldx, ldx, k, panel, vectors, y + (long)r * ldy, ldy, accumulate);
    }

    // The panel is packed: its row l is the V vectors at panel + l V lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rows<TL, TVec, TR>(float* x, int ldx, int k, float* panel, int vectors, float* y, int ldy, bool accumulate)
        where TL : struct, RegisterTile.ILanes<TVec> where TVec : struct where TR : struct, RegisterTile.ICount
    {
        long ldw = (long)vectors * TL.Count;
        if (vectors == 3) RegisterTile.Multiply<TL, TVec, TR, RegisterTile.Three>(x, ldx, k, panel, ldw, y, ldy, accumulate);
        else if (vectors == 2) RegisterTile.Multiply<TL, TVec, TR, RegisterTile.Two>(x, ldx, k, panel, ldw, y, ldy, accumulate);
        else RegisterTile.Multiply<TL, TVec, TR, RegisterTile.One>(x, ldx, k, panel, ldw, y, ldy, accumulate);
    }
}
