using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class PointwiseTests
{
    private const int Count = 1000 + 37; // not a multiple of any workgroup size

    private static double Reference(Activation f, double x) => f switch
    {
        Activation.Identity => x,
        Activation.Sigmoid => 1 / (1 + Math.Exp(-x)),
        Activation.Tanh => Math.Tanh(x),
        Activation.Silu => x / (1 + Math.Exp(-x)),
        Activation.EluPlusOne => x > 0 ? x + 1 : Math.Exp(x),
        Activation.Relu => Math.Max(x, 0),
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    public static IEnumerable<object[]> ActivationCases() =>
        from backend in new[] { "cpu", "vulkan" } from f in Enum.GetValues<Activation>() select new object[] { backend, f };

    [TestMethod]
    [DynamicData(nameof(ActivationCases))]
    public void ActivationForwardAndBackwardMatchReference(string backendName, Activation f)
    {
        var backend = TestBackends.Get(backendName);
        float[] x = TestData.Uniform(Count, 7, -4f, 4f), dy = TestData.Uniform(Count, 8);
        using var tx = Tensor.FromArray(backend, x, new Shape(17, 61));
        using var tdy = Tensor.FromArray(backend, dy, new Shape(17, 61));
        using var ty = Tensor.Full(backend, new Shape(17, 61), float.NaN);
        using var tdx = Tensor.Full(backend, new Shape(17, 61), float.NaN);
        Pointwise.Activate(f, tx, ty);
        Pointwise.ActivateBackward(f, tx, tdy, tdx);
        var expectedY = x.Select(v => Reference(f, v)).ToArray();
        // f'(x) dy by central differences of the float64 reference (ReLU's kink is never hit: |x| > h).
        const double h = 1e-6;
        var expectedDx = x.Select((v, i) => (Reference(f, v + h) - Reference(f, v - h)) / (2 * h) * dy[i]).ToArray();
        TestData.AssertClose(expectedY, ty.ToArray(), 2e-6, 1e-6, $"{f} forward");
        TestData.AssertClose(expectedDx, tdx.ToArray(), 1e-5, 1e-5, $"{f} backward");
    }

    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void ArithmeticMatchesReference(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        float[] a = TestData.Uniform(Count, 1), b = TestData.Uniform(Count, 2), y0 = TestData.Uniform(Count, 3);
        using var ta = Tensor.FromArray(backend, a, new Shape(Count));
        using var tb = Tensor.FromArray(backend, b, new Shape(Count));
        using var sum = Tensor.Full(backend, new Shape(Count), float.NaN);
        using var product = Tensor.Full(backend, new Shape(Count), float.NaN);
        using var scaled = Tensor.FromArray(backend, y0, new Shape(Count));
        using var overwritten = Tensor.Full(backend, new Shape(Count), float.NaN);
        Pointwise.Add(ta, tb, sum);
        Pointwise.Multiply(ta, tb, product);
        Pointwise.Scale(ta, 2.5f, scaled, beta: -0.5f);
        Pointwise.Scale(ta, 3f, overwritten);
        TestData.AssertClose(a.Select((v, i) => (double)v + b[i]).ToArray(), sum.ToArray(), 1e-7, 0, "add");
        TestData.AssertClose(a.Select((v, i) => (double)v * b[i]).ToArray(), product.ToArray(), 1e-7, 0, "multiply");
        TestData.AssertClose(a.Select((v, i) => 2.5 * v - 0.5 * y0[i]).ToArray(), scaled.ToArray(), 1e-6, 1e-7, "scale with beta");
        TestData.AssertClose(a.Select(v => 3.0 * v).ToArray(), overwritten.ToArray(), 1e-7, 0, "scale over NaN");
    }

    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void SumLastAxisAndItsBackward(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int rows = 3 * 5, cols = 301;
        float[] x = TestData.Uniform(rows * cols, 4), dy = TestData.Uniform(rows, 5);
        using var tx = Tensor.FromArray(backend, x, new Shape(3, 5, cols));
        using var ty = Tensor.Full(backend, new Shape(3, 5), float.NaN);
        using var tdy = Tensor.FromArray(backend, dy, new Shape(3, 5));
        using var tdx = Tensor.Full(backend, new Shape(3, 5, cols), float.NaN);
        Pointwise.SumLastAxis(tx, ty);
        Pointwise.SumLastAxisBackward(tdy, tdx);
        var expected = Enumerable.Range(0, rows).Select(r => Enumerable.Range(0, cols).Sum(j => (double)x[r * cols + j])).ToArray();
        TestData.AssertClose(expected, ty.ToArray(), 1e-5, 1e-5, "sum");
        TestData.AssertClose(Enumerable.Range(0, rows * cols).Select(i => (double)dy[i / cols]).ToArray(), tdx.ToArray(), 0, 0, "broadcast");
    }

    public static IEnumerable<object[]> ConvertCases() =>
        from backend in new[] { "cpu", "vulkan" }
        from src in new[] { DType.F32, DType.F16, DType.BF16 }
        from dst in new[] { DType.F32, DType.F16, DType.BF16 }
        from count in new[] { Count, Count - 1 }            // Count - 1 = 1036 = 4 x 259: Vulkan's vec4 path
        select new object[] { backend, src, dst, count };

    [TestMethod]
    [DynamicData(nameof(ConvertCases))]
    public void ConvertRoundsToNearestEven(string backendName, DType source, DType destination, int count)
    {
        var backend = TestBackends.Get(backendName);
        float[] x = TestData.Uniform(count, 9, -100f, 100f);
        x[0] = float.NaN; x[1] = float.PositiveInfinity; x[2] = -0f; x[3] = 1e-30f;
        float[] stored = TestData.RoundTrip(x, source);
        using var src = Tensor.FromArray(backend, x, new Shape(count), source);
        using var dst = Tensor.Full(backend, new Shape(count), 12345f, destination);
        Pointwise.Convert(src, dst);
        float[] expected = TestData.RoundTrip(stored, destination), actual = dst.ToArray();
        for (int i = 0; i < count; i++)
            if (!(float.IsNaN(expected[i]) ? float.IsNaN(actual[i]) : BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i])))
                Assert.Fail($"Convert {source}->{destination}: element {i} ({stored[i]}) became {actual[i]}, expected {expected[i]}");
    }

    [TestMethod]
    public void RejectsMismatchedShapesAndDTypes()
    {
        var cpu = TestBackends.Get("cpu");
        using var a = Tensor.Zeros(cpu, new Shape(2, 3));
        using var b = Tensor.Zeros(cpu, new Shape(3, 2));
        using var y = Tensor.Zeros(cpu, new Shape(2, 3));
        using var h = Tensor.Zeros(cpu, new Shape(2, 3), DType.F16);
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Pointwise.Add(a, b, y)).Message, "Add: argument 'b' has shape [3, 2] but 'a' has shape [2, 3]");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Pointwise.Activate(Activation.Tanh, h, y)).Message, "Tanh: argument 'x' [2, 3] has dtype f16 but must be f32");
        using var s = Tensor.Zeros(cpu, new Shape(3));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Pointwise.SumLastAxis(a, s)).Message, "SumLastAxis: argument 'y' has shape [3] but must have shape [2]");
    }
}
