using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class FeatureMapTests
{
    private static readonly FeatureMap[] Maps =
    [
        FeatureMap.Identity, FeatureMap.Relu, FeatureMap.EluPlusOne, FeatureMap.Dpfp(1), FeatureMap.Dpfp(2), FeatureMap.Dpfp(3),
        FeatureMap.Relu with { SumNormalise = true }, FeatureMap.EluPlusOne with { SumNormalise = true },
        FeatureMap.Dpfp(1) with { SumNormalise = true }, FeatureMap.Dpfp(3) with { SumNormalise = true },
    ];

    // [B, T, H, D] with an odd D, a rank-2 tensor, a D of 1, and one large enough to split over threads
    private static readonly int[][] Shapes = [[2, 7, 3, 5], [3, 33], [4, 1], [4, 65, 3, 64]];

    public static IEnumerable<object[]> Cases() =>
        from backend in new[] { "cpu", "vulkan" }
        from map in Enumerable.Range(0, Maps.Length)
        from shape in Enumerable.Range(0, Shapes.Length)
        select new object[] { backend, map, shape };

    /// <summary>Element tolerance 1e-5 relative plus 1e-6 absolute: the maps are elementwise or
    /// reduce over one row (sum normalisation, DPFP's products), so fp32 is near its rounding.</summary>
    private const double Rtol = 1e-5, Atol = 1e-6;

    /// <summary>Sum normalisation's backward subtracts the dy-weighted mean, (dy - dy . y) / s, so an
    /// element of dx can be far smaller than the terms that cancelled into it (and 1 / s is large
    /// for rows whose phi sums to little): the absolute part is 1e-5 times the RMS of dx.</summary>
    private static double GradientAtol(double[] expected) => Math.Max(Atol, Rtol * Math.Sqrt(expected.Sum(e => e * e) / expected.Length));

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void ForwardAndBackwardMatchReference(string backendName, int mapIndex, int shapeIndex)
    {
        var backend = TestBackends.Get(backendName);
        var map = Maps[mapIndex];
        var shape = new Shape(Shapes[shapeIndex]);
        int d = shape[-1], width = map.OutputDim(d);
        var outShape = new Shape([.. Shapes[shapeIndex][..^1], width]);
        ulong seed = (ulong)(mapIndex * 100 + shapeIndex);
        float[] x = TestData.Uniform((int)shape.ElementCount, seed, -2f, 2f);
        float[] dy = TestData.Uniform((int)outShape.ElementCount, seed + 1);
        using var tx = Tensor.FromArray(backend, x, shape);
        using var ty = Tensor.Full(backend, outShape, float.NaN);
        using var tdy = Tensor.FromArray(backend, dy, outShape);
        using var tdx = Tensor.Full(backend, shape, float.NaN);
        FeatureMaps.Forward(map, tx, ty);
        FeatureMaps.Backward(map, tx, tdy, tdx);
        TestData.AssertClose(FeatureMapReference.Forward(map, TestData.ToDouble(x), d), ty.ToArray(), Rtol, Atol, $"{map} {shape} y");
        var dxExpected = FeatureMapReference.Backward(map, TestData.ToDouble(x), TestData.ToDouble(dy), d);
        TestData.AssertClose(dxExpected, tdx.ToArray(), Rtol, GradientAtol(dxExpected), $"{map} {shape} dx");
    }

    public static IEnumerable<object[]> MapIndices() => Enumerable.Range(0, Maps.Length).Select(i => new object[] { i });

    [TestMethod]
    [DynamicData(nameof(MapIndices))]
    public void ReferenceBackwardMatchesFiniteDifferences(int mapIndex)
    {
        var map = Maps[mapIndex];
        const int d = 4;
        // values away from 0, where relu and DPFP have their kink
        double[] x = TestData.ToDouble(TestData.Uniform(3 * d, (ulong)mapIndex, 0.1f, 2f));
        for (int i = 0; i < x.Length; i += 2) x[i] = -x[i];
        double[] dy = TestData.ToDouble(TestData.Uniform(3 * map.OutputDim(d), 77));
        var analytic = FeatureMapReference.Backward(map, x, dy, d);
        double Loss() => FeatureMapReference.Forward(map, x, d).Select((v, i) => v * dy[i]).Sum();
        FiniteDifferences.AssertGradient(x, analytic, Loss, $"{map} dx");
    }

    /// <summary>Pins the DPFP output order: block j (1..nu) of 2d, element i = r_i r_{(i + j) mod 2d}.</summary>
    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void DpfpOrderingIsBlocksOfShiftedProducts(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        // r = [relu(x), relu(-x)] = [0.5, 2, 0, 0, 0, 3]
        using var x = Tensor.FromArray(backend, [0.5f, 2f, -3f], new Shape(1, 3));
        using var y = Tensor.Full(backend, new Shape(1, 12), float.NaN);
        FeatureMaps.Forward(FeatureMap.Dpfp(2), x, y);
        // j = 1: r_i r_{i+1} = [0.5*2, 2*0, 0, 0, 0*3, 3*0.5]; j = 2: r_i r_{i+2} = [0, 0, 0, 0, 0*0.5, 3*2]
        CollectionAssert.AreEqual(new float[] { 1f, 0, 0, 0, 0, 1.5f, 0, 0, 0, 0, 0, 6f }, y.ToArray());
    }

    public static IEnumerable<object[]> L2Cases() =>
        from backend in new[] { "cpu", "vulkan" }
        from shape in Enumerable.Range(0, Shapes.Length)
        select new object[] { backend, shape };

    [TestMethod]
    [DynamicData(nameof(L2Cases))]
    public void L2NormalizeMatchesReference(string backendName, int shapeIndex)
    {
        var backend = TestBackends.Get(backendName);
        var shape = new Shape(Shapes[shapeIndex]);
        int d = shape[-1];
        float[] x = TestData.Uniform((int)shape.ElementCount, (ulong)shapeIndex + 5);
        float[] dy = TestData.Uniform((int)shape.ElementCount, (ulong)shapeIndex + 6);
        using var tx = Tensor.FromArray(backend, x, shape);
        using var ty = Tensor.Full(backend, shape, float.NaN);
        using var tdy = Tensor.FromArray(backend, dy, shape);
        using var tdx = Tensor.Full(backend, shape, float.NaN);
        FeatureMaps.L2Normalize(tx, ty);
        FeatureMaps.L2NormalizeBackward(tx, tdy, tdx);
        double eps = FeatureMaps.DefaultL2Epsilon;
        TestData.AssertClose(FeatureMapReference.L2Normalize(TestData.ToDouble(x), d, eps), ty.ToArray(), Rtol, Atol, $"L2 {shape} y");
        // dx divides by |x|: a row of small norm (D = 1 draws |x| down to ~0.01) magnifies rounding
        TestData.AssertClose(FeatureMapReference.L2NormalizeBackward(TestData.ToDouble(x), TestData.ToDouble(dy), d, eps), tdx.ToArray(), Rtol, 1e-5, $"L2 {shape} dx");
    }

    [TestMethod]
    public void L2ReferenceBackwardMatchesFiniteDifferences()
    {
        const int d = 5;
        const double eps = 1e-3; // large enough that the smoothing is in the numbers checked
        double[] x = TestData.ToDouble(TestData.Uniform(2 * d, 9));
        double[] dy = TestData.ToDouble(TestData.Uniform(2 * d, 10));
        var analytic = FeatureMapReference.L2NormalizeBackward(x, dy, d, eps);
        double Loss() => FeatureMapReference.L2Normalize(x, d, eps).Select((v, i) => v * dy[i]).Sum();
        FiniteDifferences.AssertGradient(x, analytic, Loss, "dx");
    }

    [TestMethod]
    public void RejectsBadInputs()
    {
        var cpu = TestBackends.Get("cpu");
        using var x = Tensor.Full(cpu, new Shape(2, 5, 3, 8), 0.5f);
        using var y = Tensor.Full(cpu, new Shape(2, 5, 3, 8), 0.5f);
        using var y32 = Tensor.Full(cpu, new Shape(2, 5, 3, 32), 0.5f);
        using var xHalf = Tensor.Full(cpu, new Shape(2, 5, 3, 8), 0.5f, DType.F16);
        string Message(Action action) => Assert.ThrowsExactly<OpArgumentException>(action).Message;
        Assert.AreEqual("FeatureMapForward: argument 'y' has shape [2, 5, 3, 8] but must have shape [2, 5, 3, 32] (x [2, 5, 3, 8] mapped by Dpfp(nu=2))",
            Message(() => FeatureMaps.Forward(FeatureMap.Dpfp(2), x, y)));
        Assert.AreEqual("FeatureMapForward: argument 'map' is DPFP with nu = 4; nu must be 1, 2 or 3",
            Message(() => FeatureMaps.Forward(FeatureMap.Dpfp(4), x, y32)));
        Assert.AreEqual("FeatureMapForward: argument 'map' asks for sum normalisation of the identity map; it needs a non-negative map (relu, elu+1, DPFP)",
            Message(() => FeatureMaps.Forward(FeatureMap.Identity with { SumNormalise = true }, x, y)));
        Assert.AreEqual("FeatureMapForward: argument 'x' [2, 5, 3, 8] has dtype f16 but must be f32",
            Message(() => FeatureMaps.Forward(FeatureMap.Relu, xHalf, y)));
        Assert.AreEqual("FeatureMapForward: argument 'y' [2, 5, 3, 8] overlaps input 'x' [2, 5, 3, 8]; this op cannot run in place",
            Message(() => FeatureMaps.Forward(FeatureMap.Relu, x, x)));
        Assert.AreEqual("FeatureMapBackward: argument 'dy' has shape [2, 5, 3, 8] but must have shape [2, 5, 3, 32] (x [2, 5, 3, 8] mapped by Dpfp(nu=2))",
            Message(() => FeatureMaps.Backward(FeatureMap.Dpfp(2), x, y, y32)));
        Assert.AreEqual("L2Normalize: argument 'y' has shape [2, 5, 3, 32] but 'x' has shape [2, 5, 3, 8]; they must match",
            Message(() => FeatureMaps.L2Normalize(x, y32)));
        Assert.AreEqual("L2NormalizeBackward: argument 'epsilon' is -1; it must be finite and >= 0",
            Message(() => FeatureMaps.L2NormalizeBackward(x, y, Tensor.Zeros(cpu, x.Shape), -1f)));
    }
}
