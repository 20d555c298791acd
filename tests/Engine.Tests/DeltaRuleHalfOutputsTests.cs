using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The delta rule's outputs and gradients in f16 or bf16 (IDeltaRuleOps.DeltaRuleStoresHalf):
/// o, dq, dk, dv are the f32 results rounded to nearest, and a half dO gives what its f32 widening gives,
/// bit for bit, on every backend and path: DeltaRule's conversions where the backend does not store
/// them itself (the CPU, lavapipe, the gated rule, odd lengths), the kernels' own bf16 stores and reads
/// where it does (DeltaRuleHalfOutputsTensorCoreTests).</summary>
[TestClass]
public sealed class DeltaRuleHalfOutputsTests
{
    internal const float Scale = 0.37f;

    internal sealed record Results(float[] O, float[] Final, float[] DQ, float[] DK, float[] DV, float[] DBeta, float[]? DAlpha, float[] DS0);

    /// <summary>A saving forward (o and the final state), then the backward from what it kept (or a plain
    /// forward and the recomputing backward), with o, dO, dq, dk, dv in <paramref name="outputs"/>, the rest
    /// f32. dO holds x.DO rounded to <paramref name="rounding"/>, so that runs of either output dtype get
    /// the same values. Unwritten elements stay NaN.</summary>
    internal static Results Run(IBackend backend, Inputs x, DType inputs, DType outputs, DeltaRuleAlgorithm algorithm, bool saving = true, DType rounding = DType.BF16)
    {
        using var q = Tensor.FromArray(backend, x.Q, x.Keys, inputs);
        using var k = Tensor.FromArray(backend, x.K, x.Keys, inputs);
        using var v = Tensor.FromArray(backend, x.V, x.Values, inputs);
        using var beta = Tensor.FromArray(backend, x.Beta, x.PerToken, inputs);
        using var alpha = x.Alpha is null ? null : Tensor.FromArray(backend, x.Alpha, x.PerToken);
        using var s0 = Tensor.FromArray(backend, x.S0, x.State);
        using var o = Tensor.Full(backend, x.Values, float.NaN, outputs);
        using var final = Tensor.Full(backend, x.State, float.NaN);
        using var dO = Tensor.FromArray(backend, TestData.RoundTrip(x.DO, rounding), x.Values, outputs);
        using var dFinal = Tensor.FromArray(backend, x.DFinal, x.State);
        using var dq = Tensor.Full(backend, x.Keys, float.NaN, outputs);
        using var dk = Tensor.Full(backend, x.Keys, float.NaN, outputs);
        using var dv = Tensor.Full(backend, x.Values, float.NaN, outputs);
        using var dbeta = Tensor.Full(backend, x.PerToken, float.NaN);
        using var dalpha = alpha is null ? null : Tensor.Full(backend, x.PerToken, float.NaN);
        using var ds0 = Tensor.Full(backend, x.State, float.NaN);
        if (saving)
        {
            using var saved = DeltaRule.ForwardSaving(q, k, v, beta, o, s0, final, alpha, Scale, algorithm);
            DeltaRule.Backward(q, k, v, beta, dO, dq, dk, dv, dbeta, s0, dFinal, ds0, alpha, dalpha, Scale, algorithm, saved);
        }
        else
        {
            DeltaRule.Forward(q, k, v, beta, o, s0, final, alpha, Scale, algorithm);
            DeltaRule.Backward(q, k, v, beta, dO, dq, dk, dv, dbeta, s0, dFinal, ds0, alpha, dalpha, Scale, algorithm);
        }
        return new Results(o.ToArray(), final.ToArray(), dq.ToArray(), dk.ToArray(), dv.ToArray(), dbeta.ToArray(), dalpha?.ToArray(), ds0.ToArray());
    }

    /// <summary>Asserts that <paramref name="half"/> holds <paramref name="wide"/>'s o, dq, dk, dv rounded to
    /// <paramref name="dtype"/> and the same f32 results elsewhere, bit for bit.</summary>
    internal static void AssertRounded(Results wide, Results half, DType dtype, string what)
    {
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.O, dtype), half.O, $"{what}: o");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DQ, dtype), half.DQ, $"{what}: dq");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DK, dtype), half.DK, $"{what}: dk");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DV, dtype), half.DV, $"{what}: dv");
        CollectionAssert.AreEqual(wide.Final, half.Final, $"{what}: final state");
        CollectionAssert.AreEqual(wide.DBeta, half.DBeta, $"{what}: dbeta");
        CollectionAssert.AreEqual(wide.DS0, half.DS0, $"{what}: dInitialState");
        if (wide.DAlpha is not null) CollectionAssert.AreEqual(wide.DAlpha, half.DAlpha, $"{what}: dalpha");
        Assert.IsFalse(half.O.Any(float.IsNaN) || half.DQ.Any(float.IsNaN) || half.DK.Any(float.IsNaN) || half.DV.Any(float.IsNaN), $"{what}: an element was not written");
    }

    /// <summary>Asserts that two runs wrote the same results, bit for bit (dalpha too unless the caller
    /// checks it itself: <paramref name="withDAlpha"/> false).</summary>
    internal static void AssertSame(Results expected, Results actual, string what, bool withDAlpha = true)
    {
        CollectionAssert.AreEqual(expected.O, actual.O, $"{what}: o");
        CollectionAssert.AreEqual(expected.Final, actual.Final, $"{what}: final state");
        CollectionAssert.AreEqual(expected.DQ, actual.DQ, $"{what}: dq");
        CollectionAssert.AreEqual(expected.DK, actual.DK, $"{what}: dk");
        CollectionAssert.AreEqual(expected.DV, actual.DV, $"{what}: dv");
        CollectionAssert.AreEqual(expected.DBeta, actual.DBeta, $"{what}: dbeta");
        CollectionAssert.AreEqual(expected.DS0, actual.DS0, $"{what}: dInitialState");
        if (withDAlpha && expected.DAlpha is not null) CollectionAssert.AreEqual(expected.DAlpha, actual.DAlpha, $"{what}: dalpha");
    }

    /// <summary>(backend, t, dk, dv, gated, algorithm): odd and whole-chunk lengths, Dk != Dv.</summary>
    public static IEnumerable<object[]> Cases() =>
    [
        ["cpu", 65, 16, 24, false, DeltaRuleAlgorithm.Chunked],
        ["cpu", 7, 16, 8, true, DeltaRuleAlgorithm.Recurrent],
        ["cpu", 128, 32, 16, true, DeltaRuleAlgorithm.Chunked],
        ["vulkan", 65, 16, 24, false, DeltaRuleAlgorithm.Chunked],
        ["vulkan", 128, 32, 16, false, DeltaRuleAlgorithm.Chunked],
        ["vulkan", 63, 16, 32, true, DeltaRuleAlgorithm.Chunked],
        ["vulkan", 7, 16, 8, false, DeltaRuleAlgorithm.Recurrent],
    ];

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void HalfOutputsAreTheF32ResultsRounded(string backendName, int t, int dk, int dv, bool gated, DeltaRuleAlgorithm algorithm)
    {
        var backend = TestBackends.Get(backendName);
        var inputs = DType.BF16;   // the CPU reads f32 copies of them (DeltaRule's WideInputs)
        var x = new Inputs(2, t, 3, dk, dv, gated, (ulong)(7 * t + dk + dv), inputs);
        foreach (var dtype in new[] { DType.BF16, DType.F16 })
        {
            var wide = Run(backend, x, inputs, DType.F32, algorithm, rounding: dtype);
            AssertRounded(wide, Run(backend, x, inputs, dtype, algorithm, rounding: dtype), dtype, $"{backendName} {dtype.Name()} T{t} Dk{dk} Dv{dv}{(gated ? " gated" : "")} {algorithm}");
        }
    }

    /// <summary>Half q, k, v and beta where the backend reads f32 only (the CPU): DeltaRule hands it exact
    /// f32 copies, so the results equal those of f32 tensors holding the same values, bit for bit,
    /// through the saving forward (which then keeps nothing) and the plain one.</summary>
    [TestMethod]
    [DataRow(DType.BF16, false)]
    [DataRow(DType.F16, true)]
    public void HalfInputsOnTheCpuAreTheirF32Values(DType dtype, bool gated)
    {
        var backend = TestBackends.Get("cpu");
        Assert.IsFalse(((IDeltaRuleOps)backend).DeltaRuleTakesHalfInputs, "the CPU backend now reads half inputs itself; this test no longer reaches the copies");
        var x = new Inputs(2, 70, 3, 16, 24, gated, 41, dtype);   // values rounded to dtype
        foreach (bool saving in new[] { true, false })
            AssertSame(Run(backend, x, DType.F32, DType.F32, DeltaRuleAlgorithm.Chunked, saving),
                Run(backend, x, dtype, DType.F32, DeltaRuleAlgorithm.Chunked, saving), $"{dtype.Name()} inputs, {(saving ? "saving" : "plain")} forward");
    }

    /// <summary>dO, dq, dk and dv of different dtypes in one backward: each converted on its own.</summary>
    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void MixedGradientDTypes(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(1, 70, 2, 16, 16, gated: false, 5);
        using var q = Tensor.FromArray(backend, x.Q, x.Keys);
        using var k = Tensor.FromArray(backend, x.K, x.Keys);
        using var v = Tensor.FromArray(backend, x.V, x.Values);
        using var beta = Tensor.FromArray(backend, x.Beta, x.PerToken);
        float[] roundedDO = TestData.RoundTrip(x.DO, DType.BF16);
        Results Backward(DType dOut, DType dqType, DType dkType, DType dvType)
        {
            using var dO = Tensor.FromArray(backend, roundedDO, x.Values, dOut);
            using var dq = Tensor.Full(backend, x.Keys, float.NaN, dqType);
            using var dk = Tensor.Full(backend, x.Keys, float.NaN, dkType);
            using var dv = Tensor.Full(backend, x.Values, float.NaN, dvType);
            using var dbeta = Tensor.Full(backend, x.PerToken, float.NaN);
            DeltaRule.Backward(q, k, v, beta, dO, dq, dk, dv, dbeta, scale: Scale);
            return new Results([], [], dq.ToArray(), dk.ToArray(), dv.ToArray(), dbeta.ToArray(), null, []);
        }
        var wide = Backward(DType.F32, DType.F32, DType.F32, DType.F32);
        var mixed = Backward(DType.BF16, DType.F32, DType.F16, DType.BF16);
        CollectionAssert.AreEqual(wide.DQ, mixed.DQ, "dq (f32)");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DK, DType.F16), mixed.DK, "dk (f16)");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DV, DType.BF16), mixed.DV, "dv (bf16)");
        CollectionAssert.AreEqual(wide.DBeta, mixed.DBeta, "dbeta");
    }

    /// <summary>bf16 outputs against the float64 reference: within the half-precision bound.</summary>
    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void Bf16OutputsMatchReference(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(1, 65, 3, 16, 24, gated: false, 17);
        var half = Run(backend, x, DType.F32, DType.BF16, DeltaRuleAlgorithm.Chunked);
        var reference = x.Reference(Scale, withInitial: true);
        TestData.AssertClose(reference.Forward(out _).O, half.O, 1e-2, 1e-2, "o");
        var expected = reference.Backward(TestData.ToDouble(TestData.RoundTrip(x.DO, DType.BF16)), TestData.ToDouble(x.DFinal));
        TestData.AssertClose(expected.DQ, half.DQ, 1e-2, 1e-2, "dq");
        TestData.AssertClose(expected.DK, half.DK, 1e-2, 1e-2, "dk");
        TestData.AssertClose(expected.DV, half.DV, 1e-2, 1e-2, "dv");
    }
}

/// <summary>The kernels' own bf16 stores and reads (fragment_types.glsl's HALF_IO): where
/// VulkanBackend.DeltaRuleStoresHalf says yes, every output and gradient equals, bit for bit, what
/// DeltaRule's conversions around the f32 kernels give (DeltaRuleHalfOutputs off). Needs bf16
/// cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleHalfOutputsTensorCoreTests
{
    /// <summary>(t, dk, dv): Dk 64 (the fused state passes) and 128, Dk != Dv, T not a power of two.</summary>
    public static IEnumerable<object[]> Shapes() =>
    [
        [192, 64, 64],
        [128, 64, 128],
        [192, 128, 64],
        [256, 128, 128],
    ];

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void KernelsStoreWhatTheConversionsGive(int t, int dk, int dv)
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        var x = new Inputs(2, t, 3, dk, dv, gated: false, (ulong)(3 * t + dk + dv), DType.BF16);
        using var settings = BackendSettings.Keep(backend);
        // bf16 gradients keep the partial dK bf16 with compact summands, which f32 gradients cannot follow
        // (DeltaRuleCompactSummandsTests): here the kernels' stores alone are compared
        backend.DeltaRuleCompactSummands = false;
        using (var q = Tensor.FromArray(backend, x.Q, x.Keys, DType.BF16))
        {
            var problem = new DeltaRuleProblem(q, q, q, q, null, DeltaRuleHalfOutputsTests.Scale, null, new FastWeightShape(2, t, 3, dk, dv), DeltaRuleAlgorithm.Chunked);
            Assert.IsTrue(backend.DeltaRuleStoresHalf(problem, DType.BF16), $"{backend.Capabilities.Name} does not store bf16 outputs itself at T{t} Dk{dk} Dv{dv}");
        }
        foreach (bool saving in new[] { true, false })
        {
            backend.DeltaRuleHalfOutputs = false;
            var converted = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.BF16, DeltaRuleAlgorithm.Chunked, saving);
            backend.DeltaRuleHalfOutputs = true;
            var stored = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.BF16, DeltaRuleAlgorithm.Chunked, saving);
            string what = $"T{t} Dk{dk} Dv{dv} {(saving ? "saving forward" : "recomputing backward")}";
            DeltaRuleHalfOutputsTests.AssertSame(converted, stored, what);
        }
    }
}
