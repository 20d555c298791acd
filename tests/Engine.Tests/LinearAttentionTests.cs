using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class LinearAttentionTests
{
    // Positive keys and queries (as after elu+1 or DPFP), so the normaliser stays away from zero.
    private static (float[] Q, float[] K, float[] V, float[] S0, float[] Z0) Inputs(int b, int t, int h, int dk, int dv, ulong seed) =>
        (TestData.Uniform(b * t * h * dk, seed, 0.05f, 1f), TestData.Uniform(b * t * h * dk, seed + 1, 0.05f, 1f),
         TestData.Uniform(b * t * h * dv, seed + 2), TestData.Uniform(b * h * dv * dk, seed + 3), TestData.Uniform(b * h * dk, seed + 4, 0.1f, 1f));

    public static IEnumerable<object[]> Sizes() =>
        from backend in new[] { "cpu", "vulkan" }
        from size in new[] { (1, 1, 1, 16, 16), (2, 7, 3, 16, 24), (1, 65, 3, 33, 20), (2, 200, 1, 32, 48), (1, 9, 2, 128, 128) }
        from normalise in new[] { false, true }
        select new object[] { backend, size.Item1, size.Item2, size.Item3, size.Item4, size.Item5, normalise };

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    public void ForwardMatchesReference(string backendName, int b, int t, int h, int dk, int dv, bool normalise)
    {
        var backend = TestBackends.Get(backendName);
        var (q, k, v, s0, z0) = Inputs(b, t, h, dk, dv, (ulong)(t * 31 + dk + dv + b + h));
        var reference = new LinearAttentionReference(b, t, h, dk, dv)
        {
            Q = TestData.ToDouble(q), K = TestData.ToDouble(k), V = TestData.ToDouble(v), S0 = TestData.ToDouble(s0), Z0 = TestData.ToDouble(z0),
            Scale = 0.5, Normalise = normalise,
        };
        var (o, finalS, finalZ) = reference.Forward();
        using var tq = Tensor.FromArray(backend, q, new Shape(b, t, h, dk));
        using var tk = Tensor.FromArray(backend, k, new Shape(b, t, h, dk));
        using var tv = Tensor.FromArray(backend, v, new Shape(b, t, h, dv));
        using var ts0 = Tensor.FromArray(backend, s0, new Shape(b, h, dv, dk));
        using var tz0 = normalise ? Tensor.FromArray(backend, z0, new Shape(b, h, dk)) : null;
        using var output = Tensor.Full(backend, new Shape(b, t, h, dv), float.NaN);
        using var sT = Tensor.Full(backend, new Shape(b, h, dv, dk), float.NaN);
        using var zT = normalise ? Tensor.Full(backend, new Shape(b, h, dk), float.NaN) : null;
        LinearAttention.Forward(tq, tk, tv, output, ts0, sT, normalise, tz0, zT, scale: 0.5f);
        double tol = 1e-5 * Math.Sqrt(t) * Math.Sqrt(dk);
        TestData.AssertClose(o, output.ToArray(), tol, tol, "o");
        TestData.AssertClose(finalS, sT.ToArray(), tol, tol, "final state");
        if (normalise) TestData.AssertClose(finalZ, zT!.ToArray(), tol, tol, "final z");
    }

    [TestMethod]
    [DataRow(1, 1, 1, 3, 2, false)]
    [DataRow(2, 6, 2, 3, 4, false)]
    [DataRow(2, 6, 2, 3, 4, true)]
    [DataRow(1, 7, 3, 5, 3, true)]
    public void CpuBackwardMatchesFiniteDifferencesOfReference(int b, int t, int h, int dk, int dv, bool normalise)
    {
        var cpu = TestBackends.Get("cpu");
        var (q, k, v, s0, z0) = Inputs(b, t, h, dk, dv, (ulong)(t + dk * 3 + dv * 5));
        float[] dO = TestData.Uniform(b * t * h * dv, 11), dS = TestData.Uniform(b * h * dv * dk, 12), dZ = TestData.Uniform(b * h * dk, 13);
        var reference = new LinearAttentionReference(b, t, h, dk, dv)
        {
            Q = TestData.ToDouble(q), K = TestData.ToDouble(k), V = TestData.ToDouble(v), S0 = TestData.ToDouble(s0), Z0 = TestData.ToDouble(z0),
            Scale = 0.8, Normalise = normalise,
        };
        double[] ddO = TestData.ToDouble(dO), ddS = TestData.ToDouble(dS), ddZ = TestData.ToDouble(dZ);
        using var tq = Tensor.FromArray(cpu, q, new Shape(b, t, h, dk));
        using var tk = Tensor.FromArray(cpu, k, new Shape(b, t, h, dk));
        using var tv = Tensor.FromArray(cpu, v, new Shape(b, t, h, dv));
        using var ts0 = Tensor.FromArray(cpu, s0, new Shape(b, h, dv, dk));
        using var tz0 = normalise ? Tensor.FromArray(cpu, z0, new Shape(b, h, dk)) : null;
        using var tdO = Tensor.FromArray(cpu, dO, new Shape(b, t, h, dv));
        using var tdS = Tensor.FromArray(cpu, dS, new Shape(b, h, dv, dk));
        using var tdZ = normalise ? Tensor.FromArray(cpu, dZ, new Shape(b, h, dk)) : null;
        using var dq = Tensor.Full(cpu, new Shape(b, t, h, dk), float.NaN);
        using var dk_ = Tensor.Full(cpu, new Shape(b, t, h, dk), float.NaN);
        using var dv_ = Tensor.Full(cpu, new Shape(b, t, h, dv), float.NaN);
        using var dS0 = Tensor.Full(cpu, new Shape(b, h, dv, dk), float.NaN);
        using var dZ0 = normalise ? Tensor.Full(cpu, new Shape(b, h, dk), float.NaN) : null;
        LinearAttention.Backward(tq, tk, tv, tdO, dq, dk_, dv_, ts0, tdS, dS0, normalise, tz0, tdZ, dZ0, scale: 0.8f);
        const double tol = 2e-4;
        TestData.AssertClose(reference.NumericGradient(reference.Q, ddO, ddS, ddZ), dq.ToArray(), tol, tol, "dq");
        TestData.AssertClose(reference.NumericGradient(reference.K, ddO, ddS, ddZ), dk_.ToArray(), tol, tol, "dk");
        TestData.AssertClose(reference.NumericGradient(reference.V, ddO, ddS, ddZ), dv_.ToArray(), tol, tol, "dv");
        TestData.AssertClose(reference.NumericGradient(reference.S0, ddO, ddS, ddZ), dS0.ToArray(), tol, tol, "dS0");
        if (normalise) TestData.AssertClose(reference.NumericGradient(reference.Z0, ddO, ddS, ddZ), dZ0!.ToArray(), tol, tol, "dz0");
    }

    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void StepRepeatedEqualsForward(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int b = 2, t = 9, h = 2, dk = 12, dv = 10;
        var (q, k, v, s0, z0) = Inputs(b, t, h, dk, dv, 77);
        using var tq = Tensor.FromArray(backend, q, new Shape(b, t, h, dk));
        using var tk = Tensor.FromArray(backend, k, new Shape(b, t, h, dk));
        using var tv = Tensor.FromArray(backend, v, new Shape(b, t, h, dv));
        using var whole = Tensor.Empty(backend, new Shape(b, t, h, dv));
        using var s0a = Tensor.FromArray(backend, s0, new Shape(b, h, dv, dk));
        using var z0a = Tensor.FromArray(backend, z0, new Shape(b, h, dk));
        LinearAttention.Forward(tq, tk, tv, whole, s0a, null, true, z0a);
        float[] expected = whole.ToArray();
        using var state = Tensor.FromArray(backend, s0, new Shape(b, h, dv, dk));
        using var z = Tensor.FromArray(backend, z0, new Shape(b, h, dk));
        var outputs = new float[expected.Length];
        for (int step = 0; step < t; step++)
        {
            float[] Slice(float[] src, int width) => Enumerable.Range(0, b).SelectMany(bb => src.Skip((bb * t + step) * h * width).Take(h * width)).ToArray();
            using var qt = Tensor.FromArray(backend, Slice(q, dk), new Shape(b, h, dk));
            using var kt = Tensor.FromArray(backend, Slice(k, dk), new Shape(b, h, dk));
            using var vt = Tensor.FromArray(backend, Slice(v, dv), new Shape(b, h, dv));
            using var ot = Tensor.Empty(backend, new Shape(b, h, dv));
            LinearAttention.Step(qt, kt, vt, state, ot, z);
            var values = ot.ToArray();
            for (int bb = 0; bb < b; bb++) Array.Copy(values, bb * h * dv, outputs, (bb * t + step) * h * dv, h * dv);
        }
        TestData.AssertClose(TestData.ToDouble(expected), outputs, 1e-5, 1e-5, "steps vs forward");
    }

    [TestMethod]
    public void RejectsBadInputs()
    {
        var cpu = TestBackends.Get("cpu");
        using var q = Tensor.Zeros(cpu, new Shape(2, 5, 3, 8));
        using var v = Tensor.Zeros(cpu, new Shape(2, 5, 3, 6));
        using var o = Tensor.Zeros(cpu, new Shape(2, 5, 3, 6));
        using var z = Tensor.Zeros(cpu, new Shape(2, 3, 6));
        using var z8 = Tensor.Zeros(cpu, new Shape(2, 3, 8));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => LinearAttention.Forward(q, q, v, o, normalise: true, initialNormaliser: z)).Message, "LinearAttentionForward: argument 'initialNormaliser' has shape [2, 3, 6] but must have shape [2, 3, 8]");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => LinearAttention.Forward(q, q, v, o, initialNormaliser: z8)).Message, "argument 'initialNormaliser' [2, 3, 8] was given but normalise is false");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => LinearAttention.Forward(q, q, v, q)).Message, "LinearAttentionForward: argument 'output' has shape [2, 5, 3, 8] but must have shape [2, 5, 3, 6]");
    }
}
