using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;
using Half = FastWeights.Engine.Tests.DeltaRuleHalfOutputsTests;

namespace FastWeights.Engine.Tests;

/// <summary>Compact summands (VulkanBackend.DeltaRuleCompactSummands, fragment_types.glsl's
/// COMPACT_SUMMANDS): with compact intermediates, U, dU'_local and (bf16 gradients) the partial dK are
/// kept as bf16. Unlike the compact intermediates this changes results, so each run is held to the
/// float64 reference norm-wise (1e-2, the rounded products' bound, DeltaRuleTensorCoreTests), and the
/// switch is shown to reach the kernels: the gradients differ from those of f32 summands. Needs bf16
/// cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleCompactSummandsTests
{
    /// <summary>(t, dk, dv): both head dims, Dk != Dv, T not a power of two.</summary>
    public static IEnumerable<object[]> Shapes() =>
    [
        [192, 64, 64],
        [128, 64, 128],
        [192, 128, 64],
        [256, 128, 128],
    ];

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void CompactSummandsStayWithinTheRoundedBound(int t, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleCoopMatSplit = false;
        var x = new Inputs(2, t, 3, dk, dv, gated: false, (ulong)(5 * t + dk + 2 * dv), DType.BF16);
        Assert.IsTrue(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, new FastWeightShape(2, t, 3, dk, dv)), "compact intermediates, which the summands need");
        var reference = x.Reference(Half.Scale, withInitial: true);
        var (o, final) = reference.Forward(out _);
        var expected = reference.Backward(TestData.ToDouble(TestData.RoundTrip(x.DO, DType.BF16)), TestData.ToDouble(x.DFinal));
        foreach (var outputs in new[] { DType.F32, DType.BF16 })
            foreach (bool saving in new[] { true, false })
            {
                string what = $"T{t} Dk{dk} Dv{dv}, {outputs} outputs, {(saving ? "saving forward" : "recomputing backward")}";
                backend.DeltaRuleCompactSummands = false;
                var wide = Half.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                backend.DeltaRuleCompactSummands = true;
                var compact = Half.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);

                DeltaRuleTensorCoreTests.AssertNormwise(o, compact.O, $"{what}: o");
                DeltaRuleTensorCoreTests.AssertNormwise(final, compact.Final, $"{what}: final state");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DQ, compact.DQ, $"{what}: dq");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DK, compact.DK, $"{what}: dk");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DV, compact.DV, $"{what}: dv");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DBeta, compact.DBeta, $"{what}: dbeta");
                DeltaRuleTensorCoreTests.AssertNormwise(expected.DS0, compact.DS0, $"{what}: dInitialState");
                // dU'_local reaches dv through dU'; U reaches dq through U' in the recomputing backward and
                // the saving forward alike.
                Assert.IsFalse(wide.DV.SequenceEqual(compact.DV), $"{what}: dv is that of f32 summands bit for bit (the switch did not reach the kernels)");
                Assert.IsFalse(wide.DQ.SequenceEqual(compact.DQ), $"{what}: dq is that of f32 summands bit for bit");
                if (outputs == DType.BF16)
                {
                    // the partial dK's own rounding: dk moves where dq and dv would not tell
                    Assert.IsFalse(wide.DK.SequenceEqual(compact.DK), $"{what}: dk is that of f32 summands bit for bit");
                }
            }
    }
}
