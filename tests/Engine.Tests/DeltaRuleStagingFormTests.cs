using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;
using Results = FastWeights.Engine.Tests.DeltaRuleHalfOutputsTests.Results;

namespace FastWeights.Engine.Tests;

/// <summary>Two ways of staging in the parallel stages on fragments that move no value:
/// VulkanBackend.DeltaRuleRegisterScores (chunk_fragments.glsl, STAGE_CAUSAL_TILE: P' and dP' scaled, rounded and
/// stored as fragments, only the diagonal tiles masked per element) and VulkanBackend.DeltaRuleOutputReadsAhead
/// (chunk_output_fragments.comp, READS_AHEAD: the merged staging's blocks read before the barrier that frees
/// their places). Every output and gradient must keep every bit (compared as bit patterns, so a -0 for a +0
/// fails too), with compact and f32 intermediates, bf16 and f32 outputs, saving and recomputing; at Dk = 64
/// also with the outputs and dU'_local formed by the output stage and the values gradient rather than in the
/// state passes, so that those stages run there too. Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleStagingFormTests
{
    [TestMethod]
    [DynamicData(nameof(DeltaRuleCompactTests.BitShapes), typeof(DeltaRuleCompactTests))]
    public void StagingFormsChangeNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(11 * t + 3 * dk + 2 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleMergedOutputStaging = true;
        Assert.IsTrue(backend.DeltaRuleUsesOutputFragments(DType.BF16, shape) && backend.DeltaRuleUsesGradQKFragments(DType.BF16, shape),
            $"{backend.Capabilities.Name} does not run the output stage and the q, k gradients on fragments at {shape}");
        foreach (bool fused in dk == 64 ? new[] { true, false } : new[] { true })
            foreach (bool compact in new[] { true, false })
                foreach (var outputs in compact ? new[] { DType.BF16, DType.F32 } : new[] { DType.F32 })
                    foreach (bool saving in new[] { true, false })
                    {
                        backend.DeltaRuleFusedOutput = backend.DeltaRuleFusedSaving = backend.DeltaRuleFusedValuesGradient = fused;
                        backend.DeltaRuleCompactIntermediates = compact;
                        string what = $"{shape}, {(compact ? "compact" : "f32")} intermediates, {outputs.Name()} outputs, "
                            + $"{(saving ? "saving forward" : "recomputing backward")}{(fused ? "" : ", nothing fused")}";
                        backend.DeltaRuleRegisterScores = backend.DeltaRuleOutputReadsAhead = false;
                        var before = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                        backend.DeltaRuleRegisterScores = backend.DeltaRuleOutputReadsAhead = true;
                        var after = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                        Assert.IsTrue(after.O.Any(o => o != 0f) && after.DQ.Any(g => g != 0f), $"{what}: o or dq is all zeros");
                        AssertSameBits(before, after, what);
                    }
    }

    private static void AssertSameBits(Results expected, Results actual, string what)
    {
        void Same(float[] e, float[] a, string name)
        {
            Assert.IsFalse(a.Any(float.IsNaN), $"{what}: {name} has an element that was not written");
            Assert.AreEqual(e.Length, a.Length, $"{what}: {name} length");
            for (int i = 0; i < e.Length; i++)
                if (BitConverter.SingleToInt32Bits(e[i]) != BitConverter.SingleToInt32Bits(a[i]))
                    Assert.Fail($"{what}: {name}[{i}] is {a[i]:R} where the scratch staging gives {e[i]:R}");
        }
        Same(expected.O, actual.O, "o");
        Same(expected.Final, actual.Final, "final state");
        Same(expected.DQ, actual.DQ, "dq");
        Same(expected.DK, actual.DK, "dk");
        Same(expected.DV, actual.DV, "dv");
        Same(expected.DBeta, actual.DBeta, "dbeta");
        Same(expected.DS0, actual.DS0, "dInitialState");
    }
}
