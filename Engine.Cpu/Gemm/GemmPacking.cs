using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>Packing of GEMM operands into the micro-kernel's slivers, converting f16/bf16 to f32.
/// <para>A block (mc x kc of op(A) at rows ic, depth pc) becomes ceil(mc / mr) slivers, sliver s at
/// <c>dst + s * mr * kc</c> holding <c>op(A)[ic + s*mr + r, pc + l]</c> at <c>l * mr + r</c>.</para>
/// <para>B panel (kc x nc of op(B) at depth pc, columns jc) becomes ceil(nc / nr) slivers, sliver s at
/// <c>dst + s * nr * kc</c> holding <c>op(B)[pc + l, jc + s*nr + j]</c> at <c>l * nr + j</c>.</para>
/// Rows or columns past the block edge are zero, so partial tiles need no special kernel.
/// Two shapes of copy cover all four cases: where the stored matrix runs along the sliver's width
/// (A transposed, B not) each k step is a contiguous copy (<see cref="CopyRun"/>); where it runs along k
/// (A not transposed, B transposed) each sliver is a small transpose (<see cref="Interleave"/>).</summary>
internal static unsafe class GemmPacking
{
    /// <summary>Floats of scratch the packing needs for f16/bf16 operands.</summary>
    public static int ScratchFloats(int mr, int nr, int kc, int mc, int nc) => Math.Max(Math.Max(mr, nr) * kc, Math.Max(mc, nc));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(in GemmOperand a, int ic, int pc, int mc, int kc, int mr, float* dst, float* scratch)
    {
        if (!a.Transposed)
        {
            // stored [M, K]: a sliver's rows run along k.
            for (int s = 0, i = 0; i < mc; s++, i += mr)
                InterleaveFrom(a, ic + i, pc, Math.Min(mr, mc - i), kc, mr, dst + (long)s * mr * kc, scratch);
        }
        else if (a.Type == DType.F32)
        {
            // stored [K, M]: column l of op(A) is row pc + l of the stored matrix, contiguous along i.
            // One sliver at a time keeps the writes sequential; the block's rows stay in L2 between slivers.
            float* block = (float*)a.Data + pc * (long)a.Ld + ic;
            for (int s = 0, i = 0; i < mc; s++, i += mr)
            {
                int width = Math.Min(mr, mc - i);
                float* d = dst + (long)s * mr * kc;
                for (int l = 0; l < kc; l++) CopyRun(block + l * a.Ld + i, width, mr, d + l * mr);
            }
        }
        else
        {
            // f16/bf16: convert each stored row once, then scatter it over the slivers.
            for (int l = 0; l < kc; l++)
            {
                float* run = RunAt(a, pc + l, ic, mc, scratch);
                for (int s = 0, i = 0; i < mc; s++, i += mr)
                    CopyRun(run + i, Math.Min(mr, mc - i), mr, dst + (long)s * mr * kc + l * mr);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(in GemmOperand b, int pc, int jc, int kc, int nc, int nr, float* dst, float* scratch)
    {
        if (!b.Transposed)
        {
            // stored [K, N]: row l of op(B) is contiguous along j and is cut into row l of each sliver.
            // Whole slivers by whole vectors in a tight loop (a CopyRun per sliver made this phase 1.15x
            // (2048^3) to 1.6x (1024^3) slower on Zen 3).
            int whole = Vector256.IsHardwareAccelerated && nr % 8 == 0 ? nc / nr * nr : 0;
            long sliver = (long)nr * kc;
            if (b.Type == DType.F32 && whole > 0)
            {
                // f32: eight stored rows at a time, sliver by sliver, so the writes run contiguously
                // through each sliver (8 x NR floats) instead of touching every sliver once per row (one
                // write stream instead of nc / NR; faster inside the GEMM on an Emerald Rapids core, by
                // an instrumented build of 2026-12-08, though the whole GEMM moved within its noise).
                float* src = (float*)b.Data + pc * (long)b.Ld + jc;
                for (int l0 = 0; l0 < kc; l0 += 8)
                {
                    int rows = Math.Min(8, kc - l0);
                    float* d = dst + (long)l0 * nr;
                    for (int j = 0; j < whole; j += nr, d += sliver)
                        for (int l = 0; l < rows; l++)
                        {
                            float* from = src + (l0 + l) * (long)b.Ld + j;
                            for (int x = 0; x < nr; x += 8) Vector256.Store(Vector256.Load(from + x), d + l * nr + x);
                        }
                }
                if (whole < nc)
                    for (int l = 0; l < kc; l++)
                    {
                        float* d = dst + (long)l * nr + (long)(whole / nr) * sliver;
                        for (int j = whole; j < nc; j += nr, d += sliver) CopyRun(src + l * (long)b.Ld + j, Math.Min(nr, nc - j), nr, d);
                    }
                return;
            }
            for (int l = 0; l < kc; l++)
            {
                float* run = RunAt(b, pc + l, jc, nc, scratch);
                float* d = dst + (long)l * nr;
                int j = 0;
                for (; j < whole; j += nr, d += sliver)
                    for (int x = 0; x < nr; x += 8) Vector256.Store(Vector256.Load(run + j + x), d + x);
                for (; j < nc; j += nr, d += sliver) CopyRun(run + j, Math.Min(nr, nc - j), nr, d);
            }
        }
        else
        {
            // stored [N, K]: a sliver's columns are stored rows running along k.
            for (int s = 0, j = 0; j < nc; s++, j += nr)
                InterleaveFrom(b, jc + j, pc, Math.Min(nr, nc - j), kc, nr, dst + (long)s * nr * kc, scratch);
        }
    }

    /// <summary>f32 pointer to stored elements [row, col .. col + count): the tensor itself for f32,
    /// else the run converted into <paramref name="scratch"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* RunAt(in GemmOperand x, int row, int col, int count, float* scratch)
    {
        long offset = row * (long)x.Ld + col;
        if (x.Type == DType.F32) return (float*)x.Data + offset;
        HalfToSingle.Convert(x.Data + offset * 2, x.Type, count, scratch);
        return scratch;
    }

    // Stored rows [row0, row0 + rows), columns [col0, col0 + kc) transposed into a sliver of width w.
    private static void InterleaveFrom(in GemmOperand x, int row0, int col0, int rows, int kc, int w, float* dst, float* scratch)
    {
        if (x.Type == DType.F32)
        {
            Interleave((float*)x.Data + row0 * (long)x.Ld + col0, x.Ld, rows, kc, w, dst);
            return;
        }
        for (int r = 0; r < rows; r++)
            HalfToSingle.Convert(x.Data + ((row0 + r) * (long)x.Ld + col0) * 2, x.Type, kc, scratch + (long)r * kc);
        Interleave(scratch, kc, rows, kc, w, dst);
    }

    /// <summary>dst[l * w + r] = src[r * stride + l] for r &lt; rows, 0 for rows &lt;= r &lt; w; l in [0, kc).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Interleave(float* src, nint stride, int rows, int kc, int w, float* dst)
    {
        int l = 0;
        if (Avx.IsSupported && rows == w && w >= 8)
        {
            // Full slivers: 8 x 8 blocks transposed in registers. Row groups start at 0, 8, ... and a
            // last group at w - 8 that may overlap the previous one (same values written twice).
            for (; l <= kc - 8; l += 8)
                for (int r = 0; ; r += 8)
                {
                    if (r > w - 8) r = w - 8;
                    Transpose8x8(src + r * stride + l, stride, dst + (long)l * w + r, w);
                    if (r == w - 8) break;
                }
        }
        else if (Avx.IsSupported && rows == w && w >= 4)
        {
            // Narrow full slivers (the 6-row A sliver of the AVX2 kernel): w x 8 blocks.
            for (; l <= kc - 8; l += 8) TransposeNarrow(src + l, stride, w, dst + (long)l * w);
        }
        for (; l < kc; l++)
        {
            float* d = dst + (long)l * w;
            int r = 0;
            for (; r < rows; r++) d[r] = src[r * stride + l];
            for (; r < w; r++) d[r] = 0f;
        }
    }

    // dst[j * ldd + i] = src[i * lds + j] for i, j in [0, 8) (AVX; also used by ChunkMatMul.Transpose).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* src, nint lds, float* dst, nint ldd)
    {
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + lds);
        var r2 = Avx.LoadVector256(src + 2 * lds); var r3 = Avx.LoadVector256(src + 3 * lds);
        var r4 = Avx.LoadVector256(src + 4 * lds); var r5 = Avx.LoadVector256(src + 5 * lds);
        var r6 = Avx.LoadVector256(src + 6 * lds); var r7 = Avx.LoadVector256(src + 7 * lds);
        Transpose(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        Avx.Store(dst, r0); Avx.Store(dst + ldd, r1);
        Avx.Store(dst + 2 * ldd, r2); Avx.Store(dst + 3 * ldd, r3);
        Avx.Store(dst + 4 * ldd, r4); Avx.Store(dst + 5 * ldd, r5);
        Avx.Store(dst + 6 * ldd, r6); Avx.Store(dst + 7 * ldd, r7);
    }

    // dst[j * w + i] = src[i * lds + j] for i in [0, w), j in [0, 8), 4 <= w < 8: a w x 8 block becomes
    // 8 contiguous columns of w (the AVX2 kernel's 6-row A sliver). Rows w..7 repeat row w - 1; each of
    // the first 7 columns is stored as a whole vector whose lanes past w land where the next column
    // goes and are overwritten by it, the last one lane by lane, so exactly 8 w floats are written.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeNarrow(float* src, nint lds, int w, float* dst)
    {
        float* last = src + (w - 1) * lds;
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + lds);
        var r2 = Avx.LoadVector256(src + 2 * lds); var r3 = Avx.LoadVector256(src + 3 * lds);
        var r4 = Avx.LoadVector256(w > 4 ? src + 4 * lds : last); var r5 = Avx.LoadVector256(w > 5 ? src + 5 * lds : last);
        var r6 = Avx.LoadVector256(w > 6 ? src + 6 * lds : last); var r7 = r6;
        Transpose(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        Avx.Store(dst, r0); Avx.Store(dst + w, r1);
        Avx.Store(dst + 2 * w, r2); Avx.Store(dst + 3 * w, r3);
        Avx.Store(dst + 4 * w, r4); Avx.Store(dst + 5 * w, r5);
        Avx.Store(dst + 6 * w, r6);
        float* d7 = dst + 7 * w;
        Sse.Store(d7, r7.GetLower());
        for (int i = 4; i < w; i++) d7[i] = r7.GetElement(i);
    }

    // In-register 8 x 8 transpose: on return r_j holds column j of the rows given in r_0 .. r_7.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3,
        ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7)
    {
        // Pairs of rows interleaved: t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], ...
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        // Quads: s0 = column 0 of rows 0-3 | column 4 of rows 0-3, ...
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44); var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44); var s7 = Avx.Shuffle(t5, t7, 0xEE);
        // Halves joined: column j of rows 0-7.
        r0 = Avx.Permute2x128(s0, s4, 0x20); r1 = Avx.Permute2x128(s1, s5, 0x20);
        r2 = Avx.Permute2x128(s2, s6, 0x20); r3 = Avx.Permute2x128(s3, s7, 0x20);
        r4 = Avx.Permute2x128(s0, s4, 0x31); r5 = Avx.Permute2x128(s1, s5, 0x31);
        r6 = Avx.Permute2x128(s2, s6, 0x31); r7 = Avx.Permute2x128(s3, s7, 0x31);
    }

    /// <summary>dst[0, count) = src[0, count), dst[count, w) = 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CopyRun(float* src, int count, int w, float* dst)
    {
        if (count == w && Vector256.IsHardwareAccelerated && w >= 8)
        {
            // Whole vectors, then one overlapping vector for the tail (w is a kernel width: 4..64).
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; j <= w - 16; j += 16) Vector512.Store(Vector512.Load(src + j), dst + j);
            for (; j <= w - 8; j += 8) Vector256.Store(Vector256.Load(src + j), dst + j);
            if (j < w) Vector256.Store(Vector256.Load(src + w - 8), dst + w - 8);
            return;
        }
        if (count == w && Vector128.IsHardwareAccelerated && w >= 4)
        {
            // Narrow slivers (the AVX2 kernel's 6 rows): one vector of 4, then single floats.
            Vector128.Store(Vector128.Load(src), dst);
            for (int r = 4; r < w; r++) dst[r] = src[r];
            return;
        }
        int i = 0;
        for (; i < count; i++) dst[i] = src[i];
        for (; i < w; i++) dst[i] = 0f;
    }
}
