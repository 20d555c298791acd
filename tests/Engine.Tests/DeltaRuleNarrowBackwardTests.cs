using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The backward state pass's _narrow variant at Dk = 128 (chunk_state_backward_fragments.comp,
/// SUBGROUPS=4; VulkanBackend.DeltaRuleNarrowBackward, the default where it applies): workgroups of 4
/// subgroups for 32 rows, each dS tile formed by the same products in the same order as in the 64-row
/// pass, so every gradient must be bit for bit what the 64-row pass gives (whose distance from the
/// reference DeltaRuleTensorCoreTests.StateFragmentsMatchReference checks), with f32 and compact
/// intermediates, through both backwards. Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleNarrowBackwardTests
{
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 320, 3, 128, 64)]
    public void NarrowBackwardChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(19 * t + dk + 7 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleRawTokenReads = false;   // its _narrow_raw variants: DeltaRuleRawReadsTests
        foreach (bool compact in new[] { true, false })
        {
            string what = $"rounded operands, {(compact ? "compact" : "f32")} intermediates";
            backend.DeltaRuleCompactIntermediates = compact;
            backend.DeltaRuleNarrowBackward = false;
            Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64", backend.StateFragmentsVariant("chunk_state_backward_fragments", shape).Variant, what);
            var wide = DeltaRuleCompactTests.RunAll(backend, x);
            backend.DeltaRuleNarrowBackward = true;
            Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32_narrow", backend.StateFragmentsVariant("chunk_state_backward_fragments", shape).Variant, what);
            var narrow = DeltaRuleCompactTests.RunAll(backend, x);
            Assert.IsTrue(narrow.Saved.DQ.Any(g => g != 0f), $"dq is all zeros ({what})");
            CollectionAssert.AreEqual(wide.O, narrow.O, $"o ({what})");
            DeltaRuleCompactTests.AssertSameGrads(wide.Recomputed, narrow.Recomputed, $"recomputing backward ({what})");
            DeltaRuleCompactTests.AssertSameGrads(wide.Saved, narrow.Saved, $"backward from the saving forward ({what})");
        }
    }

    // The gated rule's backward (the GATED build, chunk_state_backward_fragments_k128_v32_narrow_gated):
    // every gradient, dalpha included, bit for bit what the 64-row gated pass gives (whose distance from
    // the reference DeltaRuleGatedTensorCoreTests checks).
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    public void GatedNarrowBackwardChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: true, (ulong)(23 * t + dk + 5 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleGatedCoopMat = true;
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleRawTokenReads = false;   // its _narrow_raw_gated variant: DeltaRuleRawReadsTests
        Assert.IsTrue(backend.DeltaRuleGatedUsesStateFragments(DType.BF16, shape), "the gated state passes run on fragments");
        float[][] Gradients(bool narrow)
        {
            backend.DeltaRuleNarrowBackward = narrow;
            Assert.AreEqual($"delta_rule/chunk_state_backward_fragments_k128_{(narrow ? "v32_narrow" : "v64")}_gated",
                backend.StateFragmentsVariant("chunk_state_backward_fragments", shape, gated: true).Variant);
            using var d = new DeltaRuleGatedChunkedVulkanTests.Device(backend, x, DType.BF16, withInitial: true);
            d.Forward(DeltaRuleAlgorithm.Chunked);
            d.Backward(DeltaRuleAlgorithm.Chunked);
            return [d.O.ToArray(), d.DQ.ToArray(), d.DK.ToArray(), d.DV.ToArray(), d.DBeta.ToArray(), d.DAlpha.ToArray(), d.DS0.ToArray()];
        }
        var wide = Gradients(false);
        var narrow = Gradients(true);
        string[] names = ["o", "dq", "dk", "dv", "dbeta", "dalpha", "dInitialState"];
        Assert.IsTrue(narrow[1].Any(g => g != 0f), "dq is all zeros");
        for (int i = 0; i < names.Length; i++) CollectionAssert.AreEqual(wide[i], narrow[i], names[i]);
    }
}

/// <summary>Where the backward state pass takes its _narrow variant (a choice of the host, checked on any
/// Vulkan device, lavapipe included): Dk = 128, ungated, rounded operands, Dv a multiple of 64 and rows
/// left to the backend, ungated and gated; everywhere else the pass it took before.</summary>
[TestClass]
public sealed class DeltaRuleNarrowBackwardChoiceTests
{
    private const string Backward = "chunk_state_backward_fragments";

    [TestMethod]
    public void NarrowOnlyWhereMeasured()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        using var settings = BackendSettings.Keep(backend);
        var d128 = new FastWeightShape(2, 128, 3, 128, 128);
        backend.DeltaRuleNarrowBackward = true;
        backend.DeltaRuleRawTokenReads = false;   // its variants: DeltaRuleRawReadsChoiceTests
        backend.DeltaRuleRawKeyReads = false;
        backend.DeltaRuleStateFragmentsJit = true;
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        Assert.AreEqual(("delta_rule/chunk_state_backward_fragments_k128_v32_narrow", 32), backend.StateFragmentsVariant(Backward, d128));
        Assert.AreEqual(("delta_rule/chunk_state_backward_fragments_k128_v32_narrow", 32), backend.StateFragmentsVariant(Backward, new FastWeightShape(1, 64, 1, 128, 64)));
        // Dv 96: not a multiple of 64, the 32-row pass of 8 subgroups as before.
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32", backend.StateFragmentsVariant(Backward, new FastWeightShape(1, 64, 1, 128, 96)).Variant);
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32_narrow_gated", backend.StateFragmentsVariant(Backward, d128, gated: true).Variant);
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k64_v64", backend.StateFragmentsVariant(Backward, new FastWeightShape(2, 128, 3, 64, 128)).Variant);
        // The forward pass keeps its own choice.
        Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit", backend.StateFragmentsVariant("chunk_state_fragments", d128).Variant);
        backend.DeltaRuleGatedStateFragmentsJit = true;
        Assert.AreEqual(("delta_rule/chunk_state_fragments_k128_v64_jit_gated", 64), backend.StateFragmentsVariant("chunk_state_fragments", d128, gated: true));
        backend.DeltaRuleGatedStateFragmentsJit = false;
        Assert.AreEqual(("delta_rule/chunk_state_fragments_k128_v32_lean_gated", 32), backend.StateFragmentsVariant("chunk_state_fragments", d128, gated: true), "gated _jit pass turned off");
        backend.DeltaRuleStateFragmentRows = 64;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64", backend.StateFragmentsVariant(Backward, d128).Variant, "rows asked for: 64");
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleCoopMatSplit = true;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32", backend.StateFragmentsVariant(Backward, d128).Variant, "split operands");
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleNarrowBackward = false;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64", backend.StateFragmentsVariant(Backward, d128).Variant, "narrow pass turned off");
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64_gated", backend.StateFragmentsVariant(Backward, d128, gated: true).Variant, "narrow pass turned off, gated");
    }
}
