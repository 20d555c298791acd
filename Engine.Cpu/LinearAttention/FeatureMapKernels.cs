using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.LinearAttention;

/// <summary>What one element (or one vector) of an elementwise feature map does: phi and phi'.
/// One generic loop per call shape (<see cref="FeatureMapKernels.Map{TOp}"/>) does the widths.</summary>
internal interface IFeatureOperator
{
    static abstract float Forward(float x);
    static abstract Vector512<float> Forward(Vector512<float> x);
    static abstract Vector256<float> Forward(Vector256<float> x);
    /// <summary>phi'(x).</summary>
    static abstract float Derivative(float x);
    static abstract Vector512<float> Derivative(Vector512<float> x);
    static abstract Vector256<float> Derivative(Vector256<float> x);
}

internal readonly struct IdentityOperator : IFeatureOperator
{
    public static float Forward(float x) => x;
    public static Vector512<float> Forward(Vector512<float> x) => x;
    public static Vector256<float> Forward(Vector256<float> x) => x;
    public static float Derivative(float x) => 1f;
    public static Vector512<float> Derivative(Vector512<float> x) => Vector512<float>.One;
    public static Vector256<float> Derivative(Vector256<float> x) => Vector256<float>.One;
}

internal readonly struct ReluOperator : IFeatureOperator
{
    public static float Forward(float x) => x > 0f ? x : 0f;
    public static Vector512<float> Forward(Vector512<float> x) => Vector512.Max(x, Vector512<float>.Zero);
    public static Vector256<float> Forward(Vector256<float> x) => Vector256.Max(x, Vector256<float>.Zero);
    // relu'(0) = 0
    public static float Derivative(float x) => x > 0f ? 1f : 0f;
    public static Vector512<float> Derivative(Vector512<float> x) => Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), Vector512<float>.One, Vector512<float>.Zero);
    public static Vector256<float> Derivative(Vector256<float> x) => Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<float>.Zero), Vector256<float>.One, Vector256<float>.Zero);
}

internal readonly struct EluPlusOneOperator : IFeatureOperator
{
    // x + 1 for x > 0, e^x otherwise; the derivative is 1 or e^x (continuous at 0)
    public static float Forward(float x) => x > 0f ? x + 1f : MathF.Exp(x);
    public static Vector512<float> Forward(Vector512<float> x) => Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), x + Vector512<float>.One, Vector512.Exp(x));
    public static Vector256<float> Forward(Vector256<float> x) => Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<float>.Zero), x + Vector256<float>.One, Vector256.Exp(x));
    public static float Derivative(float x) => x > 0f ? 1f : MathF.Exp(x);
    public static Vector512<float> Derivative(Vector512<float> x) => Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<float>.Zero), Vector512<float>.One, Vector512.Exp(x));
    public static Vector256<float> Derivative(Vector256<float> x) => Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<float>.Zero), Vector256<float>.One, Vector256.Exp(x));
}

/// <summary>Row kernels of the feature maps and L2 normalisation. Each works on one row of d inputs;
/// the backend parallelises over rows.</summary>
internal static class FeatureMapKernels
{
    /// <summary>y = phi(x).</summary>
    public static void Map<TOp>(ReadOnlySpan<float> x, Span<float> y) where TOp : IFeatureOperator
    {
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float py = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16) TOp.Forward(Vector512.LoadUnsafe(ref px, (nuint)i)).StoreUnsafe(ref py, (nuint)i);
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8) TOp.Forward(Vector256.LoadUnsafe(ref px, (nuint)i)).StoreUnsafe(ref py, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref py, i) = TOp.Forward(Unsafe.Add(ref px, i));
    }

    /// <summary>dx = phi'(x) * dy.</summary>
    public static void MapBackward<TOp>(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) where TOp : IFeatureOperator
    {
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float pdy = ref MemoryMarshal.GetReference(dy);
        ref float pdx = ref MemoryMarshal.GetReference(dx);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
                (TOp.Derivative(Vector512.LoadUnsafe(ref px, (nuint)i)) * Vector512.LoadUnsafe(ref pdy, (nuint)i)).StoreUnsafe(ref pdx, (nuint)i);
        else if (Vector256.IsHardwareAccelerated)
            for (; i + 8 <= n; i += 8)
                (TOp.Derivative(Vector256.LoadUnsafe(ref px, (nuint)i)) * Vector256.LoadUnsafe(ref pdy, (nuint)i)).StoreUnsafe(ref pdx, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref pdx, i) = TOp.Derivative(Unsafe.Add(ref px, i)) * Unsafe.Add(ref pdy, i);
    }

    /// <summary>phi(x) for any map without the sum normalisation; <paramref name="r"/> is scratch
    /// of 2d floats (used by DPFP only).</summary>
    public static void Phi(FeatureMap map, ReadOnlySpan<float> x, Span<float> y, Span<float> r)
    {
        switch (map.Kind)
        {
            case FeatureMapKind.Identity: x.CopyTo(y); break;
            case FeatureMapKind.Relu: Map<ReluOperator>(x, y); break;
            case FeatureMapKind.EluPlusOne: Map<EluPlusOneOperator>(x, y); break;
            case FeatureMapKind.Dpfp: Dpfp(map.Nu, x, y, r); break;
            default: throw new ArgumentOutOfRangeException(nameof(map));
        }
    }

    /// <summary>dx from dphi (the gradient reaching phi before any sum normalisation).</summary>
    public static void PhiBackward(FeatureMap map, ReadOnlySpan<float> x, ReadOnlySpan<float> dphi, Span<float> dx, Span<float> r, Span<float> dr)
    {
        switch (map.Kind)
        {
            case FeatureMapKind.Identity: dphi.CopyTo(dx); break;
            case FeatureMapKind.Relu: MapBackward<ReluOperator>(x, dphi, dx); break;
            case FeatureMapKind.EluPlusOne: MapBackward<EluPlusOneOperator>(x, dphi, dx); break;
            case FeatureMapKind.Dpfp: DpfpBackward(map.Nu, x, dphi, dx, r, dr); break;
            default: throw new ArgumentOutOfRangeException(nameof(map));
        }
    }

    // r = [relu(x), relu(-x)]
    private static void Rectify(ReadOnlySpan<float> x, Span<float> r)
    {
        int d = x.Length;
        Map<ReluOperator>(x, r[..d]);
        TensorPrimitives.Negate(x, r[d..]);
        Map<ReluOperator>(r[d..], r[d..]);
    }

    /// <summary>Block j (1..nu) of y, y[(j-1) 2d + i] = r_i r_{(i + j) mod 2d}, as two contiguous
    /// products: i in [0, 2d - s) pairs with i + s, i in [2d - s, 2d) with i + s - 2d (s = j mod 2d).</summary>
    private static void Dpfp(int nu, ReadOnlySpan<float> x, Span<float> y, Span<float> r)
    {
        int width = 2 * x.Length;
        r = r[..width];
        Rectify(x, r);
        for (int j = 1; j <= nu; j++)
        {
            int s = j % width;
            var block = y.Slice((j - 1) * width, width);
            TensorPrimitives.Multiply(r[..(width - s)], r[s..], block[..(width - s)]);
            TensorPrimitives.Multiply(r[(width - s)..], r[..s], block[(width - s)..]);
        }
    }

    /// <summary>dr_m = sum_j dphi_j[m] r_{(m+j) mod 2d} + dphi_j[(m-j) mod 2d] r_{(m-j) mod 2d};
    /// then dx_a = dr_a [x_a &gt; 0] - dr_{a+d} [x_a &lt; 0].</summary>
    private static void DpfpBackward(int nu, ReadOnlySpan<float> x, ReadOnlySpan<float> dphi, Span<float> dx, Span<float> r, Span<float> dr)
    {
        int d = x.Length, width = 2 * d;
        r = r[..width];
        dr = dr[..width];
        Rectify(x, r);
        dr.Clear();
        for (int j = 1; j <= nu; j++)
        {
            int s = j % width, head = width - s;
            var g = dphi.Slice((j - 1) * width, width);
            // the first factor: dr_i += g_i r_{i+s}
            TensorPrimitives.MultiplyAdd(g[..head], r[s..], dr[..head], dr[..head]);
            TensorPrimitives.MultiplyAdd(g[head..], r[..s], dr[head..], dr[head..]);
            // the second factor: dr_{i+s} += g_i r_i
            TensorPrimitives.MultiplyAdd(g[..head], r[..head], dr[s..], dr[s..]);
            TensorPrimitives.MultiplyAdd(g[head..], r[head..], dr[..s], dr[..s]);
        }
        for (int a = 0; a < d; a++) dx[a] = x[a] > 0f ? dr[a] : x[a] < 0f ? -dr[a + d] : 0f;
    }

    /// <summary>y = phi / (sum phi + eps), in place.</summary>
    public static void SumNormalise(Span<float> y)
    {
        float inverse = 1f / (TensorPrimitives.Sum(y) + FeatureMaps.SumEpsilon);
        TensorPrimitives.Multiply(y, inverse, y);
    }

    /// <summary>With y = phi / s, s = sum phi + eps: dphi = (dy - (dy . phi) / s) / s, into dphi.</summary>
    public static void SumNormaliseBackward(ReadOnlySpan<float> phi, ReadOnlySpan<float> dy, Span<float> dphi)
    {
        float s = TensorPrimitives.Sum(phi) + FeatureMaps.SumEpsilon;
        float shift = TensorPrimitives.Dot(dy, phi) / s;
        TensorPrimitives.Subtract(dy, shift, dphi);
        TensorPrimitives.Multiply(dphi, 1f / s, dphi);
    }

    /// <summary>y = x / n, n = sqrt(x . x + eps).</summary>
    public static void L2Normalize(ReadOnlySpan<float> x, Span<float> y, float epsilon)
    {
        float n = MathF.Sqrt(TensorPrimitives.Dot(x, x) + epsilon);
        TensorPrimitives.Multiply(x, 1f / n, y);
    }

    /// <summary>dx = (dy - y (y . dy)) / n with y = x / n: the exact gradient of the smoothed norm,
    /// since dn/dx = x / n.</summary>
    public static void L2NormalizeBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, float epsilon)
    {
        float n = MathF.Sqrt(TensorPrimitives.Dot(x, x) + epsilon);
        float inverse = 1f / n;
        // y . dy = (x . dy) / n; dx = dy / n - x (x . dy) / n^3
        float projection = TensorPrimitives.Dot(x, dy) * inverse * inverse * inverse;
        TensorPrimitives.Multiply(dy, inverse, dx);
        TensorPrimitives.MultiplyAdd(x, -projection, dx, dx);
    }
}
