using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The forward state pass's _wide variants at Dk = 128 (chunk_state_fragments.comp, SUBGROUPS=16;
/// VulkanBackend.DeltaRuleStateFragmentsWide): one workgroup of 16 subgroups per 128 state rows, each
/// state tile formed by the same products in the same order as in the 64-row lean pass, so every output
/// and gradient must be bit for bit what that pass gives (whose distance from the reference
/// DeltaRuleTensorCoreTests.StateFragmentsMatchReference checks), with W read a chunk ahead and right
/// before use, with f32 and compact intermediates, through a plain forward, a saving one and both
/// backwards. Dv 256 runs two workgroups per head. Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleWideStatePassTests
{
    [TestMethod]
    [DataRow(1, 192, 2, 128, 128)]
    [DataRow(2, 256, 1, 128, 256)]
    [DataRow(1, 128, 3, 128, 128)]
    public void WidePassChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        bool previousSplit = backend.DeltaRuleCoopMatSplit, previousCompact = backend.DeltaRuleCompactIntermediates, previousJit = backend.DeltaRuleStateFragmentsJit;
        bool previousLean = backend.DeltaRuleStateFragmentsLean, previousEarly = backend.DeltaRuleStateEarlyFetch, previousWide = backend.DeltaRuleStateFragmentsWide;
        int previousRows = backend.DeltaRuleStateFragmentRows;
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(17 * t + dk + 3 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        try
        {
            backend.DeltaRuleCoopMatSplit = false;
            foreach (bool compact in new[] { true, false })
            {
                backend.DeltaRuleCompactIntermediates = compact;
                backend.DeltaRuleStateFragmentsWide = false;
                backend.DeltaRuleStateFragmentsJit = false;
                backend.DeltaRuleStateFragmentRows = 64;
                backend.DeltaRuleStateFragmentsLean = true;
                backend.DeltaRuleStateEarlyFetch = false;
                Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_lean", backend.StateFragmentsVariant("chunk_state_fragments", shape).Variant);
                var lean = DeltaRuleCompactTests.RunAll(backend, x);
                foreach (var (wideLean, early, wideJit) in new[] { (false, true, false), (false, false, false), (true, true, false), (true, false, false), (true, true, true) })
                {
                    string what = $"{(compact ? "compact" : "f32 intermediates")}, {(wideJit ? "every read just in time" : wideLean ? "W read right before use" : "W read a chunk ahead")}, {(early ? "early" : "late")} order";
                    backend.DeltaRuleWideJit = wideJit;
                    backend.DeltaRuleStateFragmentRows = 0;
                    backend.DeltaRuleStateFragmentsWide = true;
                    backend.DeltaRuleStateFragmentsJit = true;   // the wide pass goes first
                    backend.DeltaRuleStateFragmentsLean = wideLean;
                    backend.DeltaRuleStateEarlyFetch = early;
                    Assert.IsTrue(backend.DeltaRuleUsesStateFragments(DType.BF16, shape), what);
                    Assert.AreEqual($"delta_rule/chunk_state_fragments_k128_v128_wide{(wideJit ? "_jit" : wideLean ? "_lean" : "")}", backend.StateFragmentsVariant("chunk_state_fragments", shape).Variant, what);
                    var wide = DeltaRuleCompactTests.RunAll(backend, x);
                    Assert.IsFalse(wide.O.Any(float.IsNaN), $"o has NaNs ({what})");
                    Assert.IsTrue(wide.O.Any(o => o != 0f), $"o is all zeros ({what})");
                    CollectionAssert.AreEqual(lean.O, wide.O, $"o ({what})");
                    CollectionAssert.AreEqual(lean.Final, wide.Final, $"final state ({what})");
                    CollectionAssert.AreEqual(lean.SavingO, wide.SavingO, $"o (saving forward, {what})");
                    CollectionAssert.AreEqual(lean.SavingFinal, wide.SavingFinal, $"final state (saving forward, {what})");
                    DeltaRuleCompactTests.AssertSameGrads(lean.Recomputed, wide.Recomputed, $"recomputing backward ({what})");
                    DeltaRuleCompactTests.AssertSameGrads(lean.Saved, wide.Saved, $"backward from the saving forward ({what})");
                }
            }
        }
        finally
        {
            backend.DeltaRuleCoopMatSplit = previousSplit; backend.DeltaRuleCompactIntermediates = previousCompact; backend.DeltaRuleStateFragmentsJit = previousJit;
            backend.DeltaRuleStateFragmentsLean = previousLean; backend.DeltaRuleStateEarlyFetch = previousEarly; backend.DeltaRuleStateFragmentRows = previousRows;
            backend.DeltaRuleStateFragmentsWide = previousWide; backend.DeltaRuleWideJit = false;
        }
    }
}

/// <summary>Which forward state pass the _wide setting selects (no tensor cores needed: runs in CI).</summary>
[TestClass]
public sealed class DeltaRuleWideVariantSelectionTests
{
    /// <summary>Where the _wide variants do not apply (Dv not a multiple of 128, split operands, Dk 64)
    /// the setting changes nothing: the forward pass keeps its other variants.</summary>
    [TestMethod]
    public void WidePassOnlyWhereItApplies()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        bool previousSplit = backend.DeltaRuleCoopMatSplit, previousWide = backend.DeltaRuleStateFragmentsWide;
        try
        {
            backend.DeltaRuleStateFragmentsWide = true;
            backend.DeltaRuleCoopMatSplit = false;
            StringAssert.Contains(backend.StateFragmentsVariant("chunk_state_fragments", new FastWeightShape(1, 128, 2, 128, 128)).Variant, "_wide");
            Assert.IsFalse(backend.StateFragmentsVariant("chunk_state_fragments", new FastWeightShape(1, 128, 2, 128, 192)).Variant.Contains("_wide"), "Dv 192");
            Assert.IsFalse(backend.StateFragmentsVariant("chunk_state_fragments", new FastWeightShape(1, 128, 2, 64, 128)).Variant.Contains("_wide"), "Dk 64");
            Assert.IsFalse(backend.StateFragmentsVariant("chunk_state_fragments", new FastWeightShape(1, 128, 2, 128, 128), gated: true).Variant.Contains("_wide"), "gated");
            Assert.IsFalse(backend.StateFragmentsVariant("chunk_state_backward_fragments", new FastWeightShape(1, 128, 2, 128, 128)).Variant.Contains("_wide"), "backward");
            backend.DeltaRuleCoopMatSplit = true;
            Assert.IsFalse(backend.StateFragmentsVariant("chunk_state_fragments", new FastWeightShape(1, 128, 2, 128, 128)).Variant.Contains("_wide"), "split operands");
        }
        finally { backend.DeltaRuleCoopMatSplit = previousSplit; backend.DeltaRuleStateFragmentsWide = previousWide; }
    }
}
