using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The values gradient on fragments with dO's blocks read ahead (chunk_output_fragments.comp,
/// PREFETCH_DOUT; VulkanBackend.DeltaRuleValuesGradPrefetch): only where the reads are issued changes,
/// so every gradient must be bit for bit what the plain kernel gives, with f32 and compact
/// intermediates. At Dk = 64 the backward state pass forms dU'_local itself by default, so the fused
/// values gradient is switched off there. Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleValuesPrefetchTests
{
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 128, 3, 64, 128)]
    public void PrefetchChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        bool previousSplit = backend.DeltaRuleCoopMatSplit, previousCompact = backend.DeltaRuleCompactIntermediates;
        bool previousPrefetch = backend.DeltaRuleValuesGradPrefetch, previousFused = backend.DeltaRuleFusedValuesGradient;
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(17 * t + dk + 7 * dv), DType.BF16);
        try
        {
            backend.DeltaRuleCoopMatSplit = false;
            backend.DeltaRuleFusedValuesGradient = false;
            foreach (bool compact in new[] { true, false })
            {
                string what = compact ? "compact" : "f32 intermediates";
                backend.DeltaRuleCompactIntermediates = compact;
                backend.DeltaRuleValuesGradPrefetch = true;
                var ahead = DeltaRuleCompactTests.RunAll(backend, x);
                backend.DeltaRuleValuesGradPrefetch = false;
                var plain = DeltaRuleCompactTests.RunAll(backend, x);
                Assert.IsFalse(ahead.Saved.DV.Any(float.IsNaN), $"dv has NaNs ({what})");
                Assert.IsTrue(ahead.Saved.DV.Any(d => d != 0f), $"dv is all zeros ({what})");
                DeltaRuleCompactTests.AssertSameGrads(plain.Recomputed, ahead.Recomputed, $"recomputing backward ({what})");
                DeltaRuleCompactTests.AssertSameGrads(plain.Saved, ahead.Saved, $"backward from the saving forward ({what})");
            }
        }
        finally
        {
            backend.DeltaRuleCoopMatSplit = previousSplit; backend.DeltaRuleCompactIntermediates = previousCompact;
            backend.DeltaRuleValuesGradPrefetch = previousPrefetch; backend.DeltaRuleFusedValuesGradient = previousFused;
        }
    }
}
