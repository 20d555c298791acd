using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The backward state pass's _narrow variant at Dk = 128 (chunk_state_backward_fragments.comp,
/// SUBGROUPS=4; the experiment flag VulkanBackend.DeltaRuleNarrowBackward): workgroups of 4 subgroups for
/// 32 rows, each dS tile formed by the same products in the same order as in the 8-subgroup passes, so
/// every gradient must be bit for bit what the default backward pass gives (whose distance from the
/// reference DeltaRuleTensorCoreTests.StateFragmentsMatchReference checks), with f32 and compact
/// intermediates, rounded and split operands, through both backwards. Needs bf16 cooperative matrices
/// (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleNarrowBackwardTests
{
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 128, 3, 128, 96)]
    public void NarrowBackwardChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        bool previousSplit = backend.DeltaRuleCoopMatSplit, previousCompact = backend.DeltaRuleCompactIntermediates, previousNarrow = backend.DeltaRuleNarrowBackward;
        int previousRows = backend.DeltaRuleStateFragmentRows;
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(19 * t + dk + 7 * dv), DType.BF16);
        try
        {
            foreach (bool split in new[] { false, true })
            foreach (bool compact in split ? new[] { false } : new[] { true, false })
            {
                string what = $"{(split ? "split" : "rounded")} operands, {(compact ? "compact" : "f32")} intermediates";
                backend.DeltaRuleCoopMatSplit = split;
                backend.DeltaRuleCompactIntermediates = compact;
                backend.DeltaRuleStateFragmentRows = 0;
                backend.DeltaRuleNarrowBackward = false;
                var wide = DeltaRuleCompactTests.RunAll(backend, x);
                backend.DeltaRuleNarrowBackward = true;
                Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32_narrow",
                    backend.StateFragmentsVariant("chunk_state_backward_fragments", new FastWeightShape(b, t, h, dk, dv)).Variant, what);
                var narrow = DeltaRuleCompactTests.RunAll(backend, x);
                Assert.IsTrue(narrow.Saved.DQ.Any(g => g != 0f), $"dq is all zeros ({what})");
                CollectionAssert.AreEqual(wide.O, narrow.O, $"o ({what})");
                DeltaRuleCompactTests.AssertSameGrads(wide.Recomputed, narrow.Recomputed, $"recomputing backward ({what})");
                DeltaRuleCompactTests.AssertSameGrads(wide.Saved, narrow.Saved, $"backward from the saving forward ({what})");
            }
        }
        finally
        {
            backend.DeltaRuleCoopMatSplit = previousSplit; backend.DeltaRuleCompactIntermediates = previousCompact; backend.DeltaRuleNarrowBackward = previousNarrow;
            backend.DeltaRuleStateFragmentRows = previousRows;
        }
    }
}
