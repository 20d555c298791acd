using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>Merged staging on fragments (chunk_grad_qk_fragments.comp's and chunk_output_fragments.comp's
/// MERGED_STAGING: VulkanBackend.DeltaRuleMergedStaging for the q, k gradients,
/// DeltaRuleMergedOutputStaging for the forward output stage, DeltaRuleMergedWyBackwardStaging for the
/// WY backward): with the operands rounded, blocks share
/// barrier pairs, the later ones in the regions' lo planes. The products, their operands and their order
/// are unchanged, so every output and gradient must be bit for bit what the unmerged kernels give, with
/// f32 and with compact intermediates (their distance from the reference is DeltaRuleTensorCoreTests').
/// Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleMergedStagingTests
{
    [TestMethod]
    [DynamicData(nameof(DeltaRuleCompactTests.BitShapes), typeof(DeltaRuleCompactTests))]
    public void MergedStagingChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(7 * t + 5 * dk + dv), DType.BF16);
        backend.DeltaRuleCoopMatSplit = false;
        foreach (bool compact in new[] { true, false })
        {
            backend.DeltaRuleCompactIntermediates = compact;
            backend.DeltaRuleMergedStaging = backend.DeltaRuleMergedOutputStaging = backend.DeltaRuleMergedWyBackwardStaging = true;
            var merged = DeltaRuleCompactTests.RunAll(backend, x);
            backend.DeltaRuleMergedStaging = backend.DeltaRuleMergedOutputStaging = backend.DeltaRuleMergedWyBackwardStaging = false;
            var apart = DeltaRuleCompactTests.RunAll(backend, x);
            string what = compact ? "compact" : "f32 intermediates";
            Assert.IsFalse(merged.Recomputed.DQ.Any(float.IsNaN), $"dq has NaNs ({what})");
            Assert.IsFalse(merged.SavingO.Any(float.IsNaN), $"o has NaNs ({what})");
            CollectionAssert.AreEqual(apart.O, merged.O, $"o ({what})");
            CollectionAssert.AreEqual(apart.SavingO, merged.SavingO, $"o (saving forward, {what})");
            CollectionAssert.AreEqual(apart.SavingFinal, merged.SavingFinal, $"final state (saving forward, {what})");
            DeltaRuleCompactTests.AssertSameGrads(apart.Recomputed, merged.Recomputed, $"recomputing backward ({what})");
            DeltaRuleCompactTests.AssertSameGrads(apart.Saved, merged.Saved, $"backward from the saving forward ({what})");
        }
    }
}
