using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The Vulkan chunked (WY-form) delta rule (shaders/delta_rule/) against the float64
/// reference, forward and every gradient, at sizes around the chunk of 64 tokens, with f32, f16 and
/// bf16 inputs; against the Vulkan recurrent kernels; chained halves; argument errors.</summary>
[TestClass]
public sealed class DeltaRuleChunkedVulkanTests
{
    // Inputs: DeltaRuleTests.Inputs (k L2-normalised, beta in (0.1, 1.9), optionally rounded to f16/bf16).
    private static Inputs NewInputs(int b, int t, int h, int dk, int dv, ulong seed, DType dtype = DType.F32) =>
        new(b, t, h, dk, dv, gated: false, seed, dtype);

    internal const float Scale = 0.7f;

    private static VulkanBackend Vulkan() => (VulkanBackend)TestBackends.Get("vulkan");

    // fp32 error grows with the number of tokens the state has absorbed.
    private static double Tolerance(int t, double perStep) => perStep * Math.Sqrt(Math.Max(t, 64));

    public static IEnumerable<object[]> Sizes() =>
        from size in new[]
        {
            (1, 1, 1, 16, 16), (2, 7, 3, 16, 24), (1, 63, 3, 32, 32), (1, 64, 2, 64, 64), (2, 65, 3, 33, 20),
            (1, 200, 1, 32, 48), (1, 130, 2, 128, 128), (1, 70, 1, 128, 17), (1, 90, 1, 9, 100),
        }
        from withInitial in new[] { true, false }
        select new object[] { size.Item1, size.Item2, size.Item3, size.Item4, size.Item5, withInitial };

    /// <summary>x's inputs on a device: q, k, v, beta in <c>dtype</c>, the initial state (f32) when asked.</summary>
    internal sealed class DeviceInputs(IBackend backend, Inputs x, DType dtype, bool withInitial) : IDisposable
    {
        public readonly Tensor Q = Tensor.FromArray(backend, x.Q, x.Keys, dtype), K = Tensor.FromArray(backend, x.K, x.Keys, dtype),
            V = Tensor.FromArray(backend, x.V, x.Values, dtype), Beta = Tensor.FromArray(backend, x.Beta, x.PerToken, dtype);
        public readonly Tensor? S0 = withInitial ? Tensor.FromArray(backend, x.S0, x.State) : null;

        public void Dispose() { foreach (var t in new[] { Q, K, V, Beta, S0 }) t?.Dispose(); }
    }

    /// <summary>x's output gradients (dO, dFinal) and NaN-filled tensors for every input gradient.</summary>
    internal sealed class DeviceGradients(IBackend backend, Inputs x) : IDisposable
    {
        public readonly Tensor DO = Tensor.FromArray(backend, x.DO, x.Values), DFinal = Tensor.FromArray(backend, x.DFinal, x.State),
            DQ = Tensor.Full(backend, x.Keys, float.NaN), DK = Tensor.Full(backend, x.Keys, float.NaN), DV = Tensor.Full(backend, x.Values, float.NaN),
            DBeta = Tensor.Full(backend, x.PerToken, float.NaN), DS0 = Tensor.Full(backend, x.State, float.NaN);

        public Grads Read() => new(DQ.ToArray(), DK.ToArray(), DV.ToArray(), DBeta.ToArray(), DS0.ToArray());

        public void Dispose() { foreach (var t in new[] { DO, DFinal, DQ, DK, DV, DBeta, DS0 }) t.Dispose(); }
    }

    internal static (float[] O, float[] Final) RunForward(VulkanBackend backend, Inputs x, bool withInitial, DType dtype, DeltaRuleAlgorithm algorithm)
    {
        using var t = new DeviceInputs(backend, x, dtype, withInitial);
        using var output = Tensor.Full(backend, x.Values, float.NaN);
        using var final = Tensor.Full(backend, x.State, float.NaN);
        DeltaRule.Forward(t.Q, t.K, t.V, t.Beta, output, t.S0, final, scale: Scale, algorithm: algorithm);
        return (output.ToArray(), final.ToArray());
    }

    internal sealed record Grads(float[] DQ, float[] DK, float[] DV, float[] DBeta, float[] DS0);

    internal static Grads RunBackward(VulkanBackend backend, Inputs x, bool withInitial, DType dtype, DeltaRuleAlgorithm algorithm)
    {
        using var t = new DeviceInputs(backend, x, dtype, withInitial);
        using var g = new DeviceGradients(backend, x);
        DeltaRule.Backward(t.Q, t.K, t.V, t.Beta, g.DO, g.DQ, g.DK, g.DV, g.DBeta, t.S0, g.DFinal, g.DS0, scale: Scale, algorithm: algorithm);
        return g.Read();
    }

    private static void AssertGradients(Inputs x, bool withInitial, Grads actual, double tol, string what)
    {
        var expected = x.Reference(Scale, withInitial).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));
        TestData.AssertClose(expected.DQ, actual.DQ, tol, tol, $"{what} dq");
        TestData.AssertClose(expected.DK, actual.DK, tol, tol, $"{what} dk");
        TestData.AssertClose(expected.DV, actual.DV, tol, tol, $"{what} dv");
        TestData.AssertClose(expected.DBeta, actual.DBeta, tol, tol, $"{what} dbeta");
        TestData.AssertClose(expected.DS0, actual.DS0, tol, tol, $"{what} dInitialState");
    }

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    public void ForwardMatchesReference(int b, int t, int h, int dk, int dv, bool withInitial)
    {
        var backend = Vulkan();
        var x = NewInputs(b, t, h, dk, dv, (ulong)(b * 1000 + t * 10 + h + dk + dv));
        var (o, final) = x.Reference(Scale, withInitial).Forward(out _);
        var (actualO, actualFinal) = RunForward(backend, x, withInitial, DType.F32, DeltaRuleAlgorithm.Chunked);
        double tol = Tolerance(t, 2e-5);
        TestData.AssertClose(o, actualO, tol, tol, "chunked o");
        TestData.AssertClose(final, actualFinal, tol, tol, "chunked final state");
    }

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    public void BackwardMatchesReference(int b, int t, int h, int dk, int dv, bool withInitial)
    {
        var backend = Vulkan();
        var x = NewInputs(b, t, h, dk, dv, (ulong)(b * 1000 + t * 10 + h + dk + dv + 99));
        var grads = RunBackward(backend, x, withInitial, DType.F32, DeltaRuleAlgorithm.Chunked);
        AssertGradients(x, withInitial, grads, Tolerance(t, 5e-5), "chunked");
    }

    // The sequential stages (chunk_state, chunk_state_backward) at every state slice the device's
    // shared memory takes (lavapipe's 32 KiB: 16 and 32 at Dk <= 64, 16 above; the H200's 48 KiB: all three at Dk <= 64, 16 and 32 above), with Dv not a
    // multiple of the slice and Dk on both sides of 64.
    [TestMethod]
    [DataRow(1, 130, 2, 64, 100)]
    [DataRow(2, 70, 1, 128, 40)]
    [DataRow(1, 65, 3, 40, 72)]
    public void EveryStateSliceMatchesReference(int b, int t, int h, int dk, int dv)
    {
        var backend = Vulkan();
        var x = NewInputs(b, t, h, dk, dv, (ulong)(t + dk + dv));
        var (o, final) = x.Reference(Scale, true).Forward(out _);
        int ran = 0;
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleStatePass = DeltaRuleStatePass.Sequential;   // the slices are the register-tiled passes'
        foreach (int slice in VulkanBackend.DeltaRuleStateSlices.Where(s => backend.DeltaRuleStateSliceFits(s, dk)))
        {
            backend.DeltaRuleStateSlice = slice;
            var (actualO, actualFinal) = RunForward(backend, x, true, DType.F32, DeltaRuleAlgorithm.Chunked);
            double tol = Tolerance(t, 2e-5);
            TestData.AssertClose(o, actualO, tol, tol, $"slice {slice} o");
            TestData.AssertClose(final, actualFinal, tol, tol, $"slice {slice} final state");
            AssertGradients(x, true, RunBackward(backend, x, true, DType.F32, DeltaRuleAlgorithm.Chunked), Tolerance(t, 5e-5), $"slice {slice}");
            ran++;
        }
        Assert.IsTrue(ran >= (dk <= 64 ? 2 : 1), $"only {ran} state slices fit {backend.Capabilities.MaxSharedMemoryBytes} bytes of shared memory");
    }

    // Both kernels of the sequential passes (DeltaRuleStatePass): the chunk_sequential.glsl slices and
    // the passes on the 64 x 64 tile products, with Dk on both sides of 64, Dv over and under 64 and
    // not a multiple of 16, partial last chunks, with and without an initial state.
    [TestMethod]
    [DataRow(1, 1, 1, 16, 16, true)]
    [DataRow(2, 65, 3, 33, 20, true)]
    [DataRow(1, 130, 2, 128, 128, false)]
    [DataRow(2, 70, 1, 128, 17, true)]
    [DataRow(1, 90, 1, 9, 100, true)]
    [DataRow(1, 200, 2, 64, 72, false)]
    [DataRow(1, 129, 1, 100, 64, true)]
    public void BothStatePassesMatchReference(int b, int t, int h, int dk, int dv, bool withInitial)
    {
        var backend = Vulkan();
        var x = NewInputs(b, t, h, dk, dv, (ulong)(3 * t + dk + 7 * dv));
        var (o, final) = x.Reference(Scale, withInitial).Forward(out _);
        using var settings = BackendSettings.Keep(backend);
        foreach (var pass in new[] { DeltaRuleStatePass.Sequential, DeltaRuleStatePass.Tiles })
        {
            backend.DeltaRuleStatePass = pass;
            Assert.AreEqual(pass == DeltaRuleStatePass.Tiles, backend.DeltaRuleUsesStateTiles(DType.F32, dk));
            Assert.AreEqual(pass == DeltaRuleStatePass.Tiles, backend.DeltaRuleUsesStateTiles(DType.F32, dk, backward: true));
            var (actualO, actualFinal) = RunForward(backend, x, withInitial, DType.F32, DeltaRuleAlgorithm.Chunked);
            double tol = Tolerance(t, 2e-5);
            TestData.AssertClose(o, actualO, tol, tol, $"{pass} o");
            TestData.AssertClose(final, actualFinal, tol, tol, $"{pass} final state");
            var grads = RunBackward(backend, x, withInitial, DType.F32, DeltaRuleAlgorithm.Chunked);
            AssertGradients(x, withInitial, grads, Tolerance(t, 5e-5), $"{pass}");
            // without the initial state's gradient the pass stops after chunk 0's dU'
            using var inputs = new DeviceInputs(backend, x, DType.F32, withInitial);
            using var g = new DeviceGradients(backend, x);
            DeltaRule.Backward(inputs.Q, inputs.K, inputs.V, inputs.Beta, g.DO, g.DQ, g.DK, g.DV, g.DBeta, inputs.S0, g.DFinal, null, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked);
            var partial = g.Read();
            CollectionAssert.AreEqual(grads.DK, partial.DK, $"{pass}: dk without the initial state's gradient");
            CollectionAssert.AreEqual(grads.DBeta, partial.DBeta, $"{pass}: dbeta without the initial state's gradient");
        }
    }

    [TestMethod]
    public void TileGroupTakesOnly128Or256()
    {
        var backend = Vulkan();
        int previous = backend.DeltaRuleTileGroup;
        foreach (int bad in new[] { 64, 512, -1 })
        {
            var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => backend.DeltaRuleTileGroup = bad);
            StringAssert.Contains(e.Message, "128 or 256");
        }
        Assert.AreEqual(previous, backend.DeltaRuleTileGroup);
    }

    [TestMethod]
    [DataRow(DType.BF16)]
    [DataRow(DType.F16)]
    public void HalfInputsMatchReference(DType dtype)
    {
        var backend = Vulkan();
        // The reference sees the rounded inputs, so the f32 tolerance applies (f32 accumulation).
        // This pins the portable products; DeltaRuleTensorCoreTests checks the tensor-core ones.
        var x = NewInputs(2, 100, 2, 32, 24, 5, dtype);
        var (o, final) = x.Reference(Scale, true).Forward(out _);
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleCoopMat = false;
        var (actualO, actualFinal) = RunForward(backend, x, true, dtype, DeltaRuleAlgorithm.Chunked);
        TestData.AssertClose(o, actualO, 1e-3, 1e-3, $"{dtype.Name()} o");
        TestData.AssertClose(final, actualFinal, 1e-3, 1e-3, $"{dtype.Name()} final state");
        AssertGradients(x, true, RunBackward(backend, x, true, dtype, DeltaRuleAlgorithm.Chunked), 1e-3, dtype.Name());
        // Against the unrounded f32 inputs the difference is the inputs' rounding: about 1e-2.
        var exact = NewInputs(2, 100, 2, 32, 24, 5);
        var (o32, _) = exact.Reference(Scale, true).Forward(out _);
        TestData.AssertClose(o32, actualO, 3e-2, 3e-2, $"{dtype.Name()} o against f32 inputs");
    }

    [TestMethod]
    [DataRow(150, 2, 32, 32)]
    [DataRow(129, 3, 64, 16)]
    public void ChunkedMatchesRecurrent(int t, int h, int dk, int dv)
    {
        var backend = Vulkan();
        var x = NewInputs(1, t, h, dk, dv, 11);
        var (oc, fc) = RunForward(backend, x, true, DType.F32, DeltaRuleAlgorithm.Chunked);
        var (or, fr) = RunForward(backend, x, true, DType.F32, DeltaRuleAlgorithm.Recurrent);
        double tol = Tolerance(t, 2e-5);
        TestData.AssertClose(TestData.ToDouble(or), oc, tol, tol, "chunked vs recurrent o");
        TestData.AssertClose(TestData.ToDouble(fr), fc, tol, tol, "chunked vs recurrent final state");
        if (!backend.Capabilities.SharedFloatAtomicAdd) return; // the recurrent backward needs them
        var gc = RunBackward(backend, x, true, DType.F32, DeltaRuleAlgorithm.Chunked);
        var gr = RunBackward(backend, x, true, DType.F32, DeltaRuleAlgorithm.Recurrent);
        tol = Tolerance(t, 5e-5);
        TestData.AssertClose(TestData.ToDouble(gr.DQ), gc.DQ, tol, tol, "dq");
        TestData.AssertClose(TestData.ToDouble(gr.DK), gc.DK, tol, tol, "dk");
        TestData.AssertClose(TestData.ToDouble(gr.DV), gc.DV, tol, tol, "dv");
        TestData.AssertClose(TestData.ToDouble(gr.DBeta), gc.DBeta, tol, tol, "dbeta");
        TestData.AssertClose(TestData.ToDouble(gr.DS0), gc.DS0, tol, tol, "dInitialState");
    }

    [TestMethod]
    public void HalvesChainThroughState()
    {
        var backend = Vulkan();
        var x = NewInputs(2, 150, 2, 24, 40, 21);
        var (o, final) = x.Reference(Scale, true).Forward(out _);
        int first = 70; // not a multiple of the chunk
        float[] Part(float[] src, int width, int t0, int count) =>
            Enumerable.Range(0, x.B).SelectMany(b => src.Skip((b * x.T + t0) * x.H * width).Take(count * x.H * width)).ToArray();
        using var state = Tensor.FromArray(backend, x.S0, x.State);
        var outputs = new float[o.Length];
        foreach (var (t0, count) in new[] { (0, first), (first, x.T - first) })
        {
            using var q = Tensor.FromArray(backend, Part(x.Q, x.Dk, t0, count), new Shape(x.B, count, x.H, x.Dk));
            using var k = Tensor.FromArray(backend, Part(x.K, x.Dk, t0, count), new Shape(x.B, count, x.H, x.Dk));
            using var v = Tensor.FromArray(backend, Part(x.V, x.Dv, t0, count), new Shape(x.B, count, x.H, x.Dv));
            using var beta = Tensor.FromArray(backend, Part(x.Beta, 1, t0, count), new Shape(x.B, count, x.H));
            using var part = Tensor.Full(backend, new Shape(x.B, count, x.H, x.Dv), float.NaN);
            DeltaRule.Forward(q, k, v, beta, part, state, state, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked);
            var values = part.ToArray();
            for (int b = 0; b < x.B; b++) Array.Copy(values, b * count * x.H * x.Dv, outputs, (b * x.T + t0) * x.H * x.Dv, count * x.H * x.Dv);
        }
        double tol = Tolerance(x.T, 2e-5);
        TestData.AssertClose(o, outputs, tol, tol, "outputs of chained halves");
        TestData.AssertClose(final, state.ToArray(), tol, tol, "state after chained halves");
    }

    [TestMethod]
    public void RejectsBadInputs()
    {
        var backend = Vulkan();
        using var q = Tensor.Zeros(backend, new Shape(1, 70, 2, 16), DType.BF16);
        using var k32 = Tensor.Zeros(backend, new Shape(1, 70, 2, 16));
        using var v = Tensor.Zeros(backend, new Shape(1, 70, 2, 8), DType.BF16);
        using var beta = Tensor.Full(backend, new Shape(1, 70, 2), 0.5f);
        using var o = Tensor.Zeros(backend, new Shape(1, 70, 2, 8));
        using var stateHalf = Tensor.Zeros(backend, new Shape(1, 2, 8, 16), DType.BF16);
        var e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(q, k32, v, beta, o, algorithm: DeltaRuleAlgorithm.Chunked));
        StringAssert.Contains(e.Message, "DeltaRuleForward: argument 'k' [1, 70, 2, 16] is f32 but q [1, 70, 2, 16] is bf16: q, k and v must share one dtype");
        // o, dO, dq, dk, dv may be half (DeltaRuleHalfOutputsTests); the states and dbeta may not
        e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(q, q, v, beta, o, finalState: stateHalf, algorithm: DeltaRuleAlgorithm.Chunked));
        StringAssert.Contains(e.Message, "DeltaRuleForward: argument 'finalState' [1, 2, 8, 16] has dtype bf16 but must be f32");

        using var dq = Tensor.Zeros(backend, new Shape(1, 70, 2, 16), DType.BF16);
        using var dk = Tensor.Zeros(backend, new Shape(1, 70, 2, 16));
        using var dv = Tensor.Zeros(backend, new Shape(1, 70, 2, 8));
        using var dbeta = Tensor.Zeros(backend, new Shape(1, 70, 2), DType.BF16);
        e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Backward(q, q, v, beta, o, dq, dk, dv, dbeta, algorithm: DeltaRuleAlgorithm.Chunked));
        StringAssert.Contains(e.Message, "DeltaRuleBackward: argument 'dbeta' [1, 70, 2] has dtype bf16 but must be f32");

        using var qWide = Tensor.Zeros(backend, new Shape(1, 70, 1, 256));
        using var vWide = Tensor.Zeros(backend, new Shape(1, 70, 1, 8));
        using var betaWide = Tensor.Full(backend, new Shape(1, 70, 1), 0.5f);
        using var oWide = Tensor.Zeros(backend, new Shape(1, 70, 1, 8));
        e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(qWide, qWide, vWide, betaWide, oWide, algorithm: DeltaRuleAlgorithm.Chunked));
        StringAssert.Contains(e.Message, "DeltaRuleForward: argument 'k' has head dimensions Dk = 256, Dv = 8 (q, k [1, 70, 1, 256], v [1, 70, 1, 8]): the Vulkan chunked delta rule takes head dimensions up to 128");

        // The CPU backend computes from f32 copies of half inputs (DeltaRuleHalfOutputsTests), but q, k and v
        // must still share one dtype there.
        var cpu = TestBackends.Get("cpu");
        using var qCpu = Tensor.Zeros(cpu, new Shape(1, 5, 2, 16), DType.BF16);
        using var kCpu = Tensor.Zeros(cpu, new Shape(1, 5, 2, 16), DType.F16);
        using var vCpu = Tensor.Zeros(cpu, new Shape(1, 5, 2, 8), DType.BF16);
        using var betaCpu = Tensor.Full(cpu, new Shape(1, 5, 2), 0.5f);
        using var oCpu = Tensor.Zeros(cpu, new Shape(1, 5, 2, 8));
        e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(qCpu, kCpu, vCpu, betaCpu, oCpu));
        StringAssert.Contains(e.Message, "DeltaRuleForward: argument 'k' [1, 5, 2, 16] is f16 but q [1, 5, 2, 16] is bf16: q, k and v must share one dtype");
    }
}
