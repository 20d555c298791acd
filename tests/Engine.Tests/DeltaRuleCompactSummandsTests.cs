using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;
using Half = FastWeights.Engine.Tests.DeltaRuleHalfOutputsTests;

namespace FastWeights.Engine.Tests;

/// <summary>Compact summands (VulkanBackend.DeltaRuleCompactSummands, fragment_types.glsl's
/// COMPACT_SUMMANDS): with compact intermediates, the backward keeps dU'_local and (bf16 gradients) the
/// partial dK as bf16. Unlike the compact intermediates this changes results, so each run is held to the
/// float64 reference norm-wise (1e-2, the rounded products' bound, DeltaRuleTensorCoreTests), and the
/// switch is shown to reach exactly the kernels it names: dv moves where the values gradient writes
/// dU'_local (not where the backward state pass forms it from P', Dk = 64), dk moves with bf16
/// gradients, and where neither applies nothing moves. Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleCompactSummandsTests
{
    [TestMethod]
    [DynamicData(nameof(DeltaRuleHalfOutputsTensorCoreTests.Shapes), typeof(DeltaRuleHalfOutputsTensorCoreTests))]
    public void CompactSummandsStayWithinTheRoundedBound(int t, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleCoopMatSplit = false;
        var x = new Inputs(2, t, 3, dk, dv, gated: false, (ulong)(5 * t + dk + 2 * dv), DType.BF16);
        Assert.IsTrue(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, new FastWeightShape(2, t, 3, dk, dv)), "compact intermediates, which the summands need");
        bool localStored = !backend.DeltaRuleUsesFusedValuesGradient(DType.BF16, new FastWeightShape(2, t, 3, dk, dv), Half.Scale);
        CompareWithinTheBound(backend, x, on => backend.DeltaRuleCompactSummands = on, (what, outputs, wide, compact) =>
        {
            bool partialStored = outputs == DType.BF16;
            CollectionAssert.AreEqual(wide.O, compact.O, $"{what}: o (the forward keeps no summand)");
            CollectionAssert.AreEqual(wide.Final, compact.Final, $"{what}: final state");
            CollectionAssert.AreEqual(wide.DQ, compact.DQ, $"{what}: dq (no summand reaches it)");
            if (localStored) Assert.IsFalse(wide.DV.SequenceEqual(compact.DV), $"{what}: dv is that of f32 summands bit for bit (bf16 dU'_local did not reach the kernels)");
            if (partialStored) Assert.IsFalse(wide.DK.SequenceEqual(compact.DK), $"{what}: dk is that of f32 summands bit for bit (the bf16 partial dK did not reach the kernels)");
            if (!localStored && !partialStored) Half.AssertSame(wide, compact, $"{what}: no summand is stored here");
        });
    }

    /// <summary>U kept as bf16 (VulkanBackend.DeltaRuleCompactU; the _jit forward state pass, Dk 128): every
    /// output and gradient within the rounded bound of the reference, o and the final state moved by it;
    /// at Dk 64, where the forward pass is not the _jit one, U stays f32 and nothing moves.</summary>
    [TestMethod]
    [DynamicData(nameof(DeltaRuleHalfOutputsTensorCoreTests.Shapes), typeof(DeltaRuleHalfOutputsTensorCoreTests))]
    public void CompactUStaysWithinTheRoundedBound(int t, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleCompactSummands = false;
        var x = new Inputs(2, t, 3, dk, dv, gated: false, (ulong)(7 * t + 3 * dk + dv), DType.BF16);
        bool jit = backend.StateFragmentsVariant("chunk_state_fragments", new FastWeightShape(2, t, 3, dk, dv)).Variant.Contains("_jit", StringComparison.Ordinal);
        Assert.AreEqual(dk == 128, jit, $"the _jit forward pass at Dk {dk}");
        CompareWithinTheBound(backend, x, on => backend.DeltaRuleCompactU = on, (what, outputs, wide, compact) =>
        {
            if (jit)
            {
                Assert.IsFalse(wide.O.SequenceEqual(compact.O), $"{what}: o is that of an f32 U bit for bit (the switch did not reach the kernels)");
                Assert.IsFalse(wide.Final.SequenceEqual(compact.Final), $"{what}: the final state is that of an f32 U bit for bit");
            }
            else Half.AssertSame(wide, compact, $"{what}: U stays f32 here");
        });
    }

    // For f32 and bf16 outputs, saving and recomputing: runs with the switch off, then on; holds the run
    // with it on to 1e-2 norm-wise of the float64 reference in every output and gradient, then hands
    // both runs to `moved` for what the switch must and must not change.
    private static void CompareWithinTheBound(VulkanBackend backend, Inputs x, Action<bool> setSwitch, Action<string, DType, Half.Results, Half.Results> moved)
    {
        var reference = x.Reference(Half.Scale, withInitial: true);
        var (o, final) = reference.Forward(out _);
        var expected = reference.Backward(TestData.ToDouble(TestData.RoundTrip(x.DO, DType.BF16)), TestData.ToDouble(x.DFinal));
        foreach (var outputs in new[] { DType.F32, DType.BF16 })
            foreach (bool saving in new[] { true, false })
            {
                string what = $"T{x.T} Dk{x.Dk} Dv{x.Dv}, {outputs} outputs, {(saving ? "saving forward" : "recomputing backward")}";
                setSwitch(false);
                var wide = Half.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                setSwitch(true);
                var compact = Half.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                DeltaRuleTensorCoreTests.AssertNormwise(o, compact.O, $"{what}: o");
                DeltaRuleTensorCoreTests.AssertNormwise(final, compact.Final, $"{what}: final state");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DQ, compact.DQ, $"{what}: dq");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DK, compact.DK, $"{what}: dk");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DV, compact.DV, $"{what}: dv");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DBeta, compact.DBeta, $"{what}: dbeta");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DS0, compact.DS0, $"{what}: dInitialState");
                moved(what, outputs, wide, compact);
            }
    }
}
