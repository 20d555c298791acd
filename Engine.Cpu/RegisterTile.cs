using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu;

/// <summary>The register tile of the CPU's small products: y[R rows, V vectors] (+)= x[R, k] w[k, V
/// vectors], walking k with each x row broadcast one element at a time and each w row loaded once for
/// all R rows. One generic tile serves every shape and both vector widths: the vector type
/// (<see cref="Lanes256"/>, <see cref="Lanes512"/>), R (<see cref="One"/>, <see cref="Four"/>,
/// <see cref="Six"/>, <see cref="Eight"/>) and V (<see cref="One"/> to <see cref="Three"/>) are
/// JIT-time constants, so the unused accumulators and branches fold away and each instantiation
/// compiles to the loop one would write by hand (checked with DOTNET_JitDisasm on Zen 5: no spills in
/// the 8 x 2 and 8 x 3 Vector512 tiles, the latter 24 zmm accumulators beside 3 w vectors and a
/// broadcast, nor in the 6 x 2 Vector256 tile, 12 ymm accumulators beside 2 w vectors and a broadcast).
/// Used by the recurrent cells' per-step product (<see cref="Rnn.StepTiles"/>, w a packed panel) and
/// the chunked forms' products (<see cref="LinearAttention.ChunkMatMul"/>, w rows of a matrix).</summary>
internal static unsafe class RegisterTile
{
    /// <summary>The vector operations a tile uses, for one vector type (a struct, so that every call
    /// inlines into the tile).</summary>
    public interface ILanes<TVec> where TVec : struct
    {
        static abstract int Count { get; }
        /// <summary>Whether the tile may take 8 rows (enough registers for 24 accumulators).</summary>
        static abstract bool EightRows { get; }
        static abstract TVec Load(float* p);
        static abstract void Store(TVec v, float* p);
        static abstract TVec Broadcast(float x);
        static abstract TVec MultiplyAdd(TVec a, TVec b, TVec c);
        static abstract TVec Add(TVec a, TVec b);
    }

    public readonly struct Lanes256 : ILanes<Vector256<float>>
    {
        public static int Count => 8;
        public static bool EightRows => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => Vector256.Store(v, p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float x) => Vector256.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    }

    public readonly struct Lanes512 : ILanes<Vector512<float>>
    {
        public static int Count => 16;
        public static bool EightRows => true;
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => Vector512.Store(v, p);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float x) => Vector512.Create(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    }

    /// <summary>A JIT-time count: rows R or vectors V of a tile.</summary>
    public interface ICount { static abstract int Count { get; } }
    public readonly struct One : ICount { public static int Count => 1; }
    public readonly struct Two : ICount { public static int Count => 2; }
    public readonly struct Three : ICount { public static int Count => 3; }
    public readonly struct Four : ICount { public static int Count => 4; }
    public readonly struct Six : ICount { public static int Count => 6; }
    public readonly struct Eight : ICount { public static int Count => 8; }

    /// <summary>y[0..R, 0..V vectors] (+)= x[0..R, 0..k] w[0..k, 0..V vectors]; row r of x at
    /// x + r ldx, row l of w at w + l ldw (ldw = V lanes for a packed panel), row r of y at y + r ldy.
    /// With <paramref name="accumulate"/> the old y is added after the k loop (y = y + x w).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply<TL, TVec, TR, TV>(float* x, int ldx, int k, float* w, long ldw, float* y, int ldy, bool accumulate)
        where TL : struct, ILanes<TVec> where TVec : struct where TR : struct, ICount where TV : struct, ICount
    {
        int lanes = TL.Count;
        float* x0 = x, x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
        float* x4 = x3 + ldx, x5 = x4 + ldx, x6 = x5 + ldx, x7 = x6 + ldx;
        TVec a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        TVec a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        TVec a40 = default, a41 = default, a42 = default, a50 = default, a51 = default, a52 = default;
        TVec a60 = default, a61 = default, a62 = default, a70 = default, a71 = default, a72 = default;
        TVec w1 = default, w2 = default;
        for (int l = 0; l < k; l++)
        {
            var w0 = TL.Load(w);
            if (TV.Count >= 2) w1 = TL.Load(w + lanes);
            if (TV.Count >= 3) w2 = TL.Load(w + 2 * lanes);
            Row<TL, TVec, TV>(TL.Broadcast(x0[l]), w0, w1, w2, ref a00, ref a01, ref a02);
            if (TR.Count >= 4)
            {
                Row<TL, TVec, TV>(TL.Broadcast(x1[l]), w0, w1, w2, ref a10, ref a11, ref a12);
                Row<TL, TVec, TV>(TL.Broadcast(x2[l]), w0, w1, w2, ref a20, ref a21, ref a22);
                Row<TL, TVec, TV>(TL.Broadcast(x3[l]), w0, w1, w2, ref a30, ref a31, ref a32);
            }
            if (TR.Count >= 6)
            {
                Row<TL, TVec, TV>(TL.Broadcast(x4[l]), w0, w1, w2, ref a40, ref a41, ref a42);
                Row<TL, TVec, TV>(TL.Broadcast(x5[l]), w0, w1, w2, ref a50, ref a51, ref a52);
            }
            if (TR.Count == 8)
            {
                Row<TL, TVec, TV>(TL.Broadcast(x6[l]), w0, w1, w2, ref a60, ref a61, ref a62);
                Row<TL, TVec, TV>(TL.Broadcast(x7[l]), w0, w1, w2, ref a70, ref a71, ref a72);
            }
            w += ldw;
        }
        Put<TL, TVec, TV>(y, a00, a01, a02, accumulate);
        if (TR.Count >= 4)
        {
            Put<TL, TVec, TV>(y + ldy, a10, a11, a12, accumulate);
            Put<TL, TVec, TV>(y + 2 * ldy, a20, a21, a22, accumulate);
            Put<TL, TVec, TV>(y + 3 * ldy, a30, a31, a32, accumulate);
        }
        if (TR.Count >= 6)
        {
            Put<TL, TVec, TV>(y + 4 * ldy, a40, a41, a42, accumulate);
            Put<TL, TVec, TV>(y + 5 * ldy, a50, a51, a52, accumulate);
        }
        if (TR.Count == 8)
        {
            Put<TL, TVec, TV>(y + 6 * ldy, a60, a61, a62, accumulate);
            Put<TL, TVec, TV>(y + 7 * ldy, a70, a71, a72, accumulate);
        }
    }

    // One x row's element b times w's l-th row of V vectors, into that row's accumulators.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row<TL, TVec, TV>(TVec b, TVec w0, TVec w1, TVec w2, ref TVec a0, ref TVec a1, ref TVec a2)
        where TL : struct, ILanes<TVec> where TVec : struct where TV : struct, ICount
    {
        a0 = TL.MultiplyAdd(b, w0, a0);
        if (TV.Count >= 2) a1 = TL.MultiplyAdd(b, w1, a1);
        if (TV.Count >= 3) a2 = TL.MultiplyAdd(b, w2, a2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<TL, TVec, TV>(float* y, TVec a0, TVec a1, TVec a2, bool accumulate)
        where TL : struct, ILanes<TVec> where TVec : struct where TV : struct, ICount
    {
        int lanes = TL.Count;
        if (accumulate)
        {
            a0 = TL.Add(a0, TL.Load(y));
            if (TV.Count >= 2) a1 = TL.Add(a1, TL.Load(y + lanes));
            if (TV.Count >= 3) a2 = TL.Add(a2, TL.Load(y + 2 * lanes));
        }
        TL.Store(a0, y);
        if (TV.Count >= 2) TL.Store(a1, y + lanes);
        if (TV.Count >= 3) TL.Store(a2, y + 2 * lanes);
    }
}
