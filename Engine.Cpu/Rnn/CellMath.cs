using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>The cells' activations on 8 lanes (Vector256<float>): the recurrences' pointwise work
/// runs on whole vectors of units, with <see cref="Load"/>/<see cref="Store"/> handling the last,
/// partial vector of a head (n &lt; 8 lanes; the unused lanes read as 0 and are never written).
/// Absent states (no initial state given) are read from a row of zeros, never through null.</summary>
internal static unsafe class CellMath
{
    /// <summary>sigmoid(x) = 1 / (1 + e^-x); e^-x = inf for very negative x gives 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> x) => Vector256<float>.One / (Vector256<float>.One + Exp(-x));

    /// <summary>tanh(x) = 1 - 2 / (e^{2x} + 1): exact limits +-1 (e^{2x} = inf or 0), absolute error
    /// near 1e-7 around 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Tanh(Vector256<float> x) =>
        Vector256<float>.One - Vector256.Create(2f) / (Exp(x + x) + Vector256<float>.One);

    /// <summary>log(sigmoid(x)) = min(x, 0) - log(1 + e^-|x|), without overflow.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> LogSigmoid(Vector256<float> x) =>
        Vector256.Min(x, Vector256<float>.Zero) - Vector256.Log(Vector256<float>.One + Exp(-Vector256.Abs(x)));

    /// <summary>e^x for x clamped to [-87, 88] (so e^x stays a normal float; -inf gives e^-87, NaN stays
    /// NaN): x = k ln2 + r with k = round(x / ln2), |r| &lt;= ln2 / 2 (ln2 split in a high and a low
    /// part, so k ln2 is exact to float precision), e^r by its degree-6 Taylor polynomial (relative
    /// error below 2e-7 on that interval), times 2^k built in the exponent bits. About 15 instructions,
    /// several times faster than Vector256.Exp, which these latency-bound recurrences call 5 times per
    /// unit and step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87f)), Vector256.Create(88f));
        // k = round(x / ln2) by adding 1.5 * 2^23 (a separate multiply and add: the same round-to-nearest-
        // even as rounding the product); the sum's low mantissa bits then hold 2^22 + k.
        var magic = Vector256.Create(12582912f);
        var kMagic = x * Vector256.Create(1.44269504f) + magic;
        var k = kMagic - magic;
        var r = Vector256.FusedMultiplyAdd(k, Vector256.Create(-0.693145752f), x);      // ln2 high part (exact in k * hi)
        r = Vector256.FusedMultiplyAdd(k, Vector256.Create(-1.42860677e-6f), r);         // ln2 low part
        var p = Vector256.Create(1f / 720f);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 120f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 24f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 6f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(0.5f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        // 2^k: shifting 2^22 + k + 127 left by 23 keeps the low 9 bits, k + 127 (1..254 after the clamp).
        var scale = ((kMagic.AsInt32() + Vector256.Create(127)) << 23).AsSingle();
        return p * scale;
    }

    /// <summary>The first n (1..8) floats at p; lanes past n are 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load(float* p, int n) => n == Vector256<float>.Count ? Vector256.Load(p) : LoadPartial(p, n);

    /// <summary>Writes the first n (1..8) lanes of v to p; nothing past p[n - 1] is touched.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vector256<float> v, float* p, int n)
    {
        if (n == Vector256<float>.Count) Vector256.Store(v, p);
        else StorePartial(v, p, n);
    }

    /// <summary>How a cell loop reads and writes a vector of units: <see cref="AllLanes"/> for whole
    /// vectors (plain loads and stores, so the loop body has no branches and keeps its values in
    /// registers), <see cref="FirstLanes"/> for a head's last, partial vector (n &lt; 8 lanes).</summary>
    public interface ILanes
    {
        static abstract Vector256<float> Load(float* p, int n);
        static abstract void Store(Vector256<float> v, float* p, int n);
    }

    /// <summary>One cell's pointwise work on the units [jj, jj + n) of a batch row (an operator
    /// struct: <see cref="ForUnits"/> is the one loop every cell shares).</summary>
    public interface IUnits<TRow>
    {
        static abstract void Apply<TL>(in TRow row, int jj, int n) where TL : struct, ILanes;
    }

    /// <summary>TUnits on units [0, count) of a row: whole vectors of 8, then the last, partial one
    /// (when count is not a multiple of 8) through the same code with partial loads and stores. Not
    /// inlined: one method per cell, so that its loop keeps its pointers and constants in registers.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ForUnits<TUnits, TRow>(in TRow row, int count) where TUnits : struct, IUnits<TRow>
    {
        int jj = 0;
        for (; jj + Vector256<float>.Count <= count; jj += Vector256<float>.Count) TUnits.Apply<AllLanes>(row, jj, Vector256<float>.Count);
        if (jj < count) TUnits.Apply<FirstLanes>(row, jj, count - jj);
    }

    public readonly struct AllLanes : ILanes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(float* p, int n) => Vector256.Load(p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(Vector256<float> v, float* p, int n) => Vector256.Store(v, p);
    }

    public readonly struct FirstLanes : ILanes
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(float* p, int n) => CellMath.Load(p, n);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(Vector256<float> v, float* p, int n) => CellMath.Store(v, p, n);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector256<float> LoadPartial(float* p, int n)
    {
        float* lanes = stackalloc float[Vector256<float>.Count];
        for (int i = 0; i < Vector256<float>.Count; i++) lanes[i] = i < n ? p[i] : 0f;
        return Vector256.Load(lanes);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StorePartial(Vector256<float> v, float* p, int n)
    {
        for (int i = 0; i < n; i++) p[i] = v.GetElement(i);
    }
}
