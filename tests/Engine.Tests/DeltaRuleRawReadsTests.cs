using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The state passes reading K and Q as 16-byte pieces staged in shared memory instead of as
/// fragments straight from the tensors: the _narrow backward pass's _narrow_raw variants
/// (VulkanBackend.DeltaRuleRawTokenReads; each subgroup stages its own K rows and Q columns) and the _jit
/// forward pass's _jit_raw variants (VulkanBackend.DeltaRuleRawKeyReads; K's block staged in region1).
/// The backward's form also reads bf16 dO and dU'_local as pieces. Their fragments hold the same bf16
/// values and enter the same products in the same order, so every output and gradient must be bit for
/// bit what the fragment-reading variant gives, with f32 and bf16 outputs, f32 and compact
/// intermediates, saving and recomputing, ungated and gated. Needs bf16 cooperative matrices (the GPU
/// machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleRawReadsTests
{
    private const string Forward = "chunk_state_fragments", Backward = "chunk_state_backward_fragments";

    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 320, 3, 128, 64)]
    public void RawTokenReadsChangeNoBit(int b, int t, int h, int dk, int dv) =>
        SameBits(new Inputs(b, t, h, dk, dv, gated: false, (ulong)(29 * t + dk + 3 * dv), DType.BF16), Backward,
            (backend, on) => backend.DeltaRuleRawTokenReads = on, "chunk_state_backward_fragments_k128_v32_narrow", "_raw");

    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 128, 3, 128, 64)]
    public void RawKeyReadsChangeNoBit(int b, int t, int h, int dk, int dv) =>
        SameBits(new Inputs(b, t, h, dk, dv, gated: false, (ulong)(37 * t + dk + 3 * dv), DType.BF16), Forward,
            (backend, on) => backend.DeltaRuleRawKeyReads = on, "chunk_state_fragments_k128_v64_jit", "_raw");

    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    public void GatedRawTokenReadsChangeNoBit(int b, int t, int h, int dk, int dv) =>
        SameBits(new Inputs(b, t, h, dk, dv, gated: true, (ulong)(31 * t + dk + 5 * dv), DType.BF16), Backward,
            (backend, on) => backend.DeltaRuleRawTokenReads = on, "chunk_state_backward_fragments_k128_v32_narrow", "_raw");

    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    public void GatedRawKeyReadsChangeNoBit(int b, int t, int h, int dk, int dv) =>
        SameBits(new Inputs(b, t, h, dk, dv, gated: true, (ulong)(41 * t + dk + 3 * dv), DType.BF16), Forward,
            (backend, on) => backend.DeltaRuleRawKeyReads = on, "chunk_state_fragments_k128_v64_jit", "_raw");

    // Runs x with the switch off, then on (the pass of `kernel` taking variant `off`, then `off` + `suffix`,
    // the gated suffix after both), with f32 and bf16 outputs and gradients (the backward pass reads a bf16
    // dO and, with compact intermediates, a bf16 dU'_local as pieces too), compact and f32 intermediates,
    // saving and recomputing, and asserts the same bits for o, the final state and every gradient (dalpha
    // too, gated).
    private static void SameBits(Inputs x, string kernel, Action<VulkanBackend, bool> turn, string off, string suffix)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var shape = new FastWeightShape(x.B, x.T, x.H, x.Dk, x.Dv);
        bool isGated = x.Alpha is not null;
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleNarrowBackward = true;
        backend.DeltaRuleStateFragmentsJit = true;
        backend.DeltaRuleGatedStateFragmentsJit = true;
        backend.DeltaRuleRawTokenReads = false;
        backend.DeltaRuleRawKeyReads = false;
        if (isGated) backend.DeltaRuleGatedCoopMat = true;
        string gated = isGated ? "_gated" : "";
        foreach (var outputs in new[] { DType.F32, DType.BF16 })
        foreach (bool compact in new[] { true, false })
            foreach (bool saving in new[] { true, false })
            {
                string what = $"{shape} {outputs} outputs, {(compact ? "compact" : "f32")} intermediates, {(saving ? "saving forward" : "recomputing backward")}";
                if (isGated) backend.DeltaRuleGatedCompactIntermediates = compact;
                else backend.DeltaRuleCompactIntermediates = compact;
                DeltaRuleHalfOutputsTests.Results Run(bool on)
                {
                    turn(backend, on);
                    Assert.AreEqual($"delta_rule/{off}{(on ? suffix : "")}{gated}", backend.StateFragmentsVariant(kernel, shape, gated: isGated).Variant, what);
                    return DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                }
                var fragments = Run(false);
                var raw = Run(true);
                Assert.IsFalse(raw.O.Any(float.IsNaN), $"o has NaNs ({what})");
                Assert.IsTrue(raw.O.Any(o => o != 0f), $"o is all zeros ({what})");
                Assert.IsTrue(raw.DQ.Any(g => g != 0f), $"dq is all zeros ({what})");
                DeltaRuleHalfOutputsTests.AssertSame(fragments, raw, what);
            }
    }
}

/// <summary>Where the raw reads apply (a choice of the host, checked on any Vulkan device, lavapipe
/// included): token reads exactly where the backward state pass takes its _narrow variant, key reads
/// exactly where the forward pass takes its _jit variant, ungated and gated; the variants the host then
/// names are embedded; every other pass keeps its variant.</summary>
[TestClass]
public sealed class DeltaRuleRawReadsChoiceTests
{
    private const string Forward = "chunk_state_fragments", Backward = "chunk_state_backward_fragments";

    [TestMethod]
    public void RawOnlyWhereTheNarrowAndJitPassesRun()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        using var settings = BackendSettings.Keep(backend);
        var d128 = new FastWeightShape(2, 128, 3, 128, 128);
        var d64 = new FastWeightShape(2, 128, 3, 64, 128);
        backend.DeltaRuleNarrowBackward = true;
        backend.DeltaRuleStateFragmentsJit = true;
        backend.DeltaRuleGatedStateFragmentsJit = true;
        backend.DeltaRuleStateFragmentsLean = true;
        backend.DeltaRuleRawTokenReads = true;
        backend.DeltaRuleRawKeyReads = true;
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleStateFragmentRows = 0;
        Assert.AreEqual(("delta_rule/chunk_state_backward_fragments_k128_v32_narrow_raw", 32), backend.StateFragmentsVariant(Backward, d128));
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32_narrow_raw_gated", backend.StateFragmentsVariant(Backward, d128, gated: true).Variant);
        Assert.AreEqual(("delta_rule/chunk_state_fragments_k128_v64_jit_raw", 64), backend.StateFragmentsVariant(Forward, d128));
        Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit_raw_gated", backend.StateFragmentsVariant(Forward, d128, gated: true).Variant);
        foreach (string variant in new[] { "chunk_state_backward_fragments_k128_v32_narrow_raw", "chunk_state_backward_fragments_k128_v32_narrow_raw_gated",
                     "chunk_state_fragments_k128_v64_jit_raw", "chunk_state_fragments_k128_v64_jit_raw_gated" })
            Assert.IsTrue(KernelCache.HasVariant($"delta_rule/{variant}"), $"{variant} is embedded");
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32", backend.StateFragmentsVariant(Backward, new FastWeightShape(1, 64, 1, 128, 96)).Variant, "Dv 96");
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k64_v64", backend.StateFragmentsVariant(Backward, d64).Variant, "Dk 64, backward");
        Assert.AreEqual("delta_rule/chunk_state_fragments_k64_v64", backend.StateFragmentsVariant(Forward, d64).Variant, "Dk 64, forward");
        backend.DeltaRuleStateFragmentsJit = false;
        Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v32_lean", backend.StateFragmentsVariant(Forward, d128).Variant, "_jit turned off");
        backend.DeltaRuleStateFragmentsJit = true;
        backend.DeltaRuleStateFragmentRows = 64;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64", backend.StateFragmentsVariant(Backward, d128).Variant, "rows asked for: 64");
        backend.DeltaRuleStateFragmentRows = 0;
        backend.DeltaRuleCoopMatSplit = true;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v32", backend.StateFragmentsVariant(Backward, d128).Variant, "split operands, backward");
        Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v32_lean", backend.StateFragmentsVariant(Forward, d128).Variant, "split operands, forward");
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleNarrowBackward = false;
        Assert.AreEqual("delta_rule/chunk_state_backward_fragments_k128_v64", backend.StateFragmentsVariant(Backward, d128).Variant, "narrow pass turned off");
    }
}
