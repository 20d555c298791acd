using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class ScanTests
{
    public static IEnumerable<object[]> Cases() =>
        from backend in new[] { "cpu", "vulkan" }
        from size in new[] { (1, 1, 1), (2, 37, 5), (3, 200, 70), (1, 1000, 33) }
        from initial in new[] { false, true }
        select new object[] { backend, size.Item1, size.Item2, size.Item3, initial };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void ForwardAndBackwardMatchReference(string backendName, int batches, int steps, int channels, bool withInitial)
    {
        var backend = TestBackends.Get(backendName);
        int n = batches * steps * channels;
        ulong seed = (ulong)(n * 7 + (withInitial ? 1 : 0));
        float[] a = TestData.Uniform(n, seed, 0.5f, 1.05f), x = TestData.Uniform(n, seed + 1), dh = TestData.Uniform(n, seed + 2);
        float[]? h0 = withInitial ? TestData.Uniform(batches * channels, seed + 3) : null;
        Shape shape = new(batches, steps, channels);
        using var ta = Tensor.FromArray(backend, a, shape);
        using var tx = Tensor.FromArray(backend, x, shape);
        using var th0 = h0 is null ? null : Tensor.FromArray(backend, h0, new Shape(batches, channels));
        using var th = Tensor.Full(backend, shape, float.NaN);
        Scan.Forward(ta, tx, th, th0);
        var expectedH = ScanReference.Forward(TestData.ToDouble(a), TestData.ToDouble(x), h0 is null ? null : TestData.ToDouble(h0), batches, steps, channels);
        TestData.AssertClose(expectedH, th.ToArray(), 1e-5, 1e-5, $"scan forward {backendName}");

        using var tdh = Tensor.FromArray(backend, dh, shape);
        using var tda = Tensor.Full(backend, shape, float.NaN);
        using var tdx = Tensor.Full(backend, shape, float.NaN);
        using var tdh0 = Tensor.Full(backend, new Shape(batches, channels), float.NaN);
        Scan.Backward(ta, th, tdh, tda, tdx, th0, tdh0);
        var (da, dx, dh0) = ScanReference.Backward(TestData.ToDouble(a), expectedH, h0 is null ? null : TestData.ToDouble(h0), TestData.ToDouble(dh), batches, steps, channels);
        TestData.AssertClose(dx, tdx.ToArray(), 1e-5, 1e-5, "dx");
        TestData.AssertClose(da, tda.ToArray(), 1e-5, 1e-5, "da");
        TestData.AssertClose(dh0, tdh0.ToArray(), 1e-5, 1e-5, "dh0");
    }

    [TestMethod]
    public void ReferenceBackwardMatchesFiniteDifferences()
    {
        const int batches = 2, steps = 6, channels = 3, n = batches * steps * channels;
        double[] a = TestData.ToDouble(TestData.Uniform(n, 1, 0.3f, 1.2f)), x = TestData.ToDouble(TestData.Uniform(n, 2));
        double[] h0 = TestData.ToDouble(TestData.Uniform(batches * channels, 3)), w = TestData.ToDouble(TestData.Uniform(n, 4));
        double Loss() => ScanReference.Forward(a, x, h0, batches, steps, channels).Select((v, i) => v * w[i]).Sum();
        var h = ScanReference.Forward(a, x, h0, batches, steps, channels);
        var (da, dx, dh0) = ScanReference.Backward(a, h, h0, w, batches, steps, channels);
        foreach (var (values, grad, name) in new[] { (a, da, "da"), (x, dx, "dx"), (h0, dh0, "dh0") })
            FiniteDifferences.AssertGradient(values, grad, Loss, name, relative: false);
    }

    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void TwoHalvesWithTheStatePassedEqualOneRun(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int batches = 2, steps = 50, channels = 40;
        float[] a = TestData.Uniform(batches * steps * channels, 5, 0.5f, 1f), x = TestData.Uniform(batches * steps * channels, 6);
        using var ta = Tensor.FromArray(backend, a, new Shape(batches, steps, channels));
        using var tx = Tensor.FromArray(backend, x, new Shape(batches, steps, channels));
        using var whole = Tensor.Empty(backend, new Shape(batches, steps, channels));
        Scan.Forward(ta, tx, whole);
        float[] full = whole.ToArray();
        // batch-major layout: run each half as its own [B, T/2, C] tensors
        float[] Half(float[] src, int from) => Enumerable.Range(0, batches).SelectMany(b => src.Skip((b * steps + from) * channels).Take(steps / 2 * channels)).ToArray();
        using var a1 = Tensor.FromArray(backend, Half(a, 0), new Shape(batches, steps / 2, channels));
        using var x1 = Tensor.FromArray(backend, Half(x, 0), new Shape(batches, steps / 2, channels));
        using var a2 = Tensor.FromArray(backend, Half(a, steps / 2), new Shape(batches, steps / 2, channels));
        using var x2 = Tensor.FromArray(backend, Half(x, steps / 2), new Shape(batches, steps / 2, channels));
        using var h1 = Tensor.Empty(backend, new Shape(batches, steps / 2, channels));
        using var h2 = Tensor.Empty(backend, new Shape(batches, steps / 2, channels));
        Scan.Forward(a1, x1, h1);
        float[] first = h1.ToArray();
        var last = Enumerable.Range(0, batches).SelectMany(b => first.Skip((b * (steps / 2) + steps / 2 - 1) * channels).Take(channels)).ToArray();
        using var carry = Tensor.FromArray(backend, last, new Shape(batches, channels));
        Scan.Forward(a2, x2, h2, carry);
        TestData.AssertClose(TestData.ToDouble(Half(full, steps / 2)), h2.ToArray(), 1e-6, 1e-6, "second half");
    }

    [TestMethod]
    public void RejectsMismatchedShapes()
    {
        var cpu = TestBackends.Get("cpu");
        using var a = Tensor.Zeros(cpu, new Shape(2, 5, 3));
        using var x = Tensor.Zeros(cpu, new Shape(2, 4, 3));
        using var h = Tensor.Zeros(cpu, new Shape(2, 5, 3));
        using var h0 = Tensor.Zeros(cpu, new Shape(3, 2));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Scan.Forward(a, x, h)).Message, "ScanForward: argument 'x' has shape [2, 4, 3] but 'a' has shape [2, 5, 3]");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Scan.Forward(a, a, h, h0)).Message, "ScanForward: argument 'h0' has shape [3, 2] but must have shape [2, 3]");
    }
}
