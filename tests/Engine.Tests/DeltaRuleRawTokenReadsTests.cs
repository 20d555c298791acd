using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The _narrow backward state pass reading K and Q as 16-byte pieces staged per subgroup
/// (chunk_state_backward_fragments.comp's _narrow_raw variants, RAW_TOKENS; VulkanBackend.DeltaRuleRawTokenReads):
/// its fragments hold the same bf16 values and enter the same products in the same order as those the
/// _narrow variant loads from the tensors, so every output and gradient must be bit for bit what the
/// _narrow pass gives (whose agreement with the 64-row pass DeltaRuleNarrowBackwardTests checks), with
/// f32 and compact intermediates, through both backwards, ungated and gated. Needs bf16 cooperative
/// matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleRawTokenReadsTests
{
    private const string Kernel = "chunk_state_backward_fragments";

    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 320, 3, 128, 64)]
    public void RawTokenReadsChangeNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(29 * t + dk + 3 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleNarrowBackward = true;
        foreach (bool compact in new[] { true, false })
        {
            string what = $"{(compact ? "compact" : "f32")} intermediates";
            backend.DeltaRuleCompactIntermediates = compact;
            backend.DeltaRuleRawTokenReads = false;
            Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32_narrow", backend.StateFragmentsVariant(Kernel, shape).Variant, what);
            var fragments = DeltaRuleCompactTests.RunAll(backend, x);
            backend.DeltaRuleRawTokenReads = true;
            Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32_narrow_raw", backend.StateFragmentsVariant(Kernel, shape).Variant, what);
            var raw = DeltaRuleCompactTests.RunAll(backend, x);
            Assert.IsTrue(raw.Saved.DQ.Any(g => g != 0f), $"dq is all zeros ({what})");
            Assert.IsFalse(raw.Saved.DK.Any(float.IsNaN), $"dk has NaNs ({what})");
            CollectionAssert.AreEqual(fragments.O, raw.O, $"o ({what})");
            DeltaRuleCompactTests.AssertSameGrads(fragments.Recomputed, raw.Recomputed, $"recomputing backward ({what})");
            DeltaRuleCompactTests.AssertSameGrads(fragments.Saved, raw.Saved, $"backward from the saving forward ({what})");
        }
    }

    // The gated rule (chunk_state_backward_fragments_k128_v32_narrow_raw_gated): every gradient, dalpha
    // and the initial state's included, bit for bit what the gated _narrow pass gives.
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    public void GatedRawTokenReadsChangeNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: true, (ulong)(31 * t + dk + 5 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleGatedCoopMat = true;
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleNarrowBackward = true;
        Assert.IsTrue(backend.DeltaRuleGatedUsesStateFragments(DType.BF16, shape), "the gated state passes run on fragments");
        float[][] Gradients(bool raw)
        {
            backend.DeltaRuleRawTokenReads = raw;
            Assert.AreEqual($"delta_rule/chunk_state_backward_fragments_k128_v32_narrow{(raw ? "_raw" : "")}_gated",
                backend.StateFragmentsVariant(Kernel, shape, gated: true).Variant);
            using var d = new DeltaRuleGatedChunkedVulkanTests.Device(backend, x, DType.BF16, withInitial: true);
            d.Forward(DeltaRuleAlgorithm.Chunked);
            d.Backward(DeltaRuleAlgorithm.Chunked);
            return [d.O.ToArray(), d.DQ.ToArray(), d.DK.ToArray(), d.DV.ToArray(), d.DBeta.ToArray(), d.DAlpha.ToArray(), d.DS0.ToArray()];
        }
        var fragments = Gradients(false);
        var raw = Gradients(true);
        string[] names = ["o", "dq", "dk", "dv", "dbeta", "dalpha", "dInitialState"];
        Assert.IsTrue(raw[1].Any(g => g != 0f), "dq is all zeros");
        for (int i = 0; i < names.Length; i++) CollectionAssert.AreEqual(fragments[i], raw[i], names[i]);
    }
}

/// <summary>The _jit forward state pass reading K's block as 16-byte pieces put into shared memory
/// (chunk_state_fragments.comp's _jit_raw variants, RAW_KEYS; VulkanBackend.DeltaRuleRawKeyReads): the same
/// values in the same products in the same order as the _jit pass's fragments read from the tensor, so
/// every output and gradient bit for bit, with f32 and compact intermediates, saving and recomputing,
/// ungated and gated. Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleRawKeyReadsTests
{
    private const string Forward = "chunk_state_fragments";

    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 128, 3, 128, 64)]
    public void RawKeyReadsChangeNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(37 * t + dk + 3 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleStateFragmentsJit = true;
        foreach (bool compact in new[] { true, false })
        {
            string what = $"{(compact ? "compact" : "f32")} intermediates";
            backend.DeltaRuleCompactIntermediates = compact;
            backend.DeltaRuleRawKeyReads = false;
            Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit", backend.StateFragmentsVariant(Forward, shape).Variant, what);
            var fragments = DeltaRuleCompactTests.RunAll(backend, x);
            backend.DeltaRuleRawKeyReads = true;
            Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit_raw", backend.StateFragmentsVariant(Forward, shape).Variant, what);
            var raw = DeltaRuleCompactTests.RunAll(backend, x);
            Assert.IsTrue(raw.O.Any(o => o != 0f), $"o is all zeros ({what})");
            Assert.IsFalse(raw.O.Any(float.IsNaN), $"o has NaNs ({what})");
            CollectionAssert.AreEqual(fragments.O, raw.O, $"o ({what})");
            CollectionAssert.AreEqual(fragments.Final, raw.Final, $"final state ({what})");
            CollectionAssert.AreEqual(fragments.SavingO, raw.SavingO, $"saving forward's o ({what})");
            DeltaRuleCompactTests.AssertSameGrads(fragments.Recomputed, raw.Recomputed, $"recomputing backward ({what})");
            DeltaRuleCompactTests.AssertSameGrads(fragments.Saved, raw.Saved, $"backward from the saving forward ({what})");
        }
    }

    // The gated rule's _jit pass (chunk_state_fragments_k128_v64_jit_raw_gated): o and every gradient, dalpha
    // included, bit for bit, with compact and f32 intermediates, saving and recomputing.
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    public void GatedRawKeyReadsChangeNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: true, (ulong)(41 * t + dk + 3 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleStateFragmentsJit = true;
        backend.DeltaRuleGatedStateFragmentsJit = true;
        foreach (bool compact in new[] { true, false })
            foreach (bool saving in new[] { true, false })
            {
                string what = $"{(compact ? "compact" : "f32 intermediates")}, {(saving ? "saving forward" : "recomputing backward")}";
                backend.DeltaRuleGatedCompactIntermediates = compact;
                backend.DeltaRuleRawKeyReads = false;
                Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit_gated", backend.StateFragmentsVariant(Forward, shape, gated: true).Variant, what);
                var fragments = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.F32, DeltaRuleAlgorithm.Chunked, saving);
                backend.DeltaRuleRawKeyReads = true;
                Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit_raw_gated", backend.StateFragmentsVariant(Forward, shape, gated: true).Variant, what);
                var raw = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.F32, DeltaRuleAlgorithm.Chunked, saving);
                Assert.IsFalse(raw.O.Any(float.IsNaN), $"o has NaNs ({what})");
                Assert.IsTrue(raw.O.Any(o => o != 0f), $"o is all zeros ({what})");
                DeltaRuleHalfOutputsTests.AssertSame(fragments, raw, what);
            }
    }
}

/// <summary>Where the raw token reads apply (a choice of the host, checked on any Vulkan device, lavapipe
/// included): exactly where the backward state pass takes its _narrow variant, ungated and gated; the
/// variants the host then names are embedded; every other pass keeps its variant.</summary>
[TestClass]
public sealed class DeltaRuleRawTokenReadsChoiceTests
{
    private const string Backward = "chunk_state_backward_fragments";

    [TestMethod]
    public void RawOnlyWhereTheNarrowPassRuns()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        using var settings = BackendSettings.Keep(backend);
        var d128 = new FastWeightShape(2, 128, 3, 128, 128);
        backend.DeltaRuleNarrowBackward = true;
        backend.DeltaRuleRawTokenReads = true;
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        Assert.AreEqual(("delta_rule/chunk_state_backward_fragments_k128_v32_narrow_raw", 32), backend.StateFragmentsVariant(Backward, d128));
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32_narrow_raw_gated", backend.StateFragmentsVariant(Backward, d128, gated: true).Variant);
        foreach (string variant in new[] { "chunk_state_backward_fragments_k128_v32_narrow_raw", "chunk_state_backward_fragments_k128_v32_narrow_raw_gated" })
            Assert.IsTrue(KernelCache.HasVariant($"delta_rule/{variant}"), $"{variant} is embedded");
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32", backend.StateFragmentsVariant(Backward, new FastWeightShape(1, 64, 1, 128, 96)).Variant, "Dv 96");
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k64_v64", backend.StateFragmentsVariant(Backward, new FastWeightShape(2, 128, 3, 64, 128)).Variant, "Dk 64");
        backend.DeltaRuleRawKeyReads = false;
        Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit", backend.StateFragmentsVariant("chunk_state_fragments", d128).Variant, "the forward pass");
        backend.DeltaRuleRawKeyReads = true;
        backend.DeltaRuleStateFragmentsJit = true;
        backend.DeltaRuleGatedStateFragmentsJit = true;
        Assert.AreEqual(("delta_rule/chunk_state_fragments_k128_v64_jit_raw", 64), backend.StateFragmentsVariant("chunk_state_fragments", d128));
        Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit_raw_gated", backend.StateFragmentsVariant("chunk_state_fragments", d128, gated: true).Variant);
        foreach (string variant in new[] { "chunk_state_fragments_k128_v64_jit_raw", "chunk_state_fragments_k128_v64_jit_raw_gated" })
            Assert.IsTrue(KernelCache.HasVariant($"delta_rule/{variant}"), $"{variant} is embedded");
        Assert.AreEqual("delta_rule/chunk_state_fragments_k64_v64", backend.StateFragmentsVariant("chunk_state_fragments", new FastWeightShape(2, 128, 3, 64, 128)).Variant,
            "raw keys: the _jit pass only");
        backend.DeltaRuleStateFragmentsJit = false;
        backend.DeltaRuleStateFragmentsLean = true;
        Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v32_lean", backend.StateFragmentsVariant("chunk_state_fragments", d128).Variant, "raw keys: _jit turned off");
        backend.DeltaRuleStateFragmentsJit = true;
        backend.DeltaRuleStateFragmentRows = 64;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64", backend.StateFragmentsVariant(Backward, d128).Variant, "rows asked for: 64");
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleCoopMatSplit = true;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32", backend.StateFragmentsVariant(Backward, d128).Variant, "split operands");
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleNarrowBackward = false;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64", backend.StateFragmentsVariant(Backward, d128).Variant, "narrow pass turned off");
    }
}
