using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The forward state pass's _jit variant at Dk = 128 (chunk_state_fragments.comp, JIT_FETCH;
/// VulkanBackend.DeltaRuleStateFragmentsJit, the default where it applies): 64 state rows per workgroup
/// with every read issued right before its use. Its products, operands and order are those of the
/// 64-row lean pass with late reads, so every output and gradient must be bit for bit what that pass gives (whose distance
/// from the reference DeltaRuleTensorCoreTests.StateFragmentsMatchReference checks), with f32 and with
/// compact intermediates, through a plain forward, a saving one and both backwards. Needs bf16
/// cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleJitStatePassTests
{
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 128, 3, 128, 64)]
    public void JitPassChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        bool defaultLean = backend.DeltaRuleStateFragmentsLean, defaultEarly = backend.DeltaRuleStateEarlyFetch;
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(13 * t + dk + 5 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleRawKeyReads = false;   // its _jit_raw variants: DeltaRuleRawReadsTests
        backend.DeltaRuleCompactU = false;   // bf16 U is the _jit pass's alone (DeltaRuleCompactSummandsTests)
        foreach (bool compact in new[] { true, false })
        {
            string what = compact ? "compact" : "f32 intermediates";
            backend.DeltaRuleCompactIntermediates = compact;
            backend.DeltaRuleStateFragmentRows = 0;
            backend.DeltaRuleStateFragmentsJit = true;
            Assert.IsTrue(backend.DeltaRuleUsesStateFragments(DType.BF16, shape), what);
            var jit = DeltaRuleCompactTests.RunAll(backend, x);
            backend.DeltaRuleStateFragmentsJit = false;
            backend.DeltaRuleStateFragmentRows = 64;
            backend.DeltaRuleStateFragmentsLean = true;
            backend.DeltaRuleStateEarlyFetch = false;
            var lean = DeltaRuleCompactTests.RunAll(backend, x);
            Assert.IsFalse(jit.O.Any(float.IsNaN), $"o has NaNs ({what})");
            Assert.IsTrue(jit.O.Any(o => o != 0f), $"o is all zeros ({what})");
            CollectionAssert.AreEqual(lean.O, jit.O, $"o ({what})");
            CollectionAssert.AreEqual(lean.Final, jit.Final, $"final state ({what})");
            CollectionAssert.AreEqual(lean.SavingO, jit.SavingO, $"o (saving forward, {what})");
            CollectionAssert.AreEqual(lean.SavingFinal, jit.SavingFinal, $"final state (saving forward, {what})");
            DeltaRuleCompactTests.AssertSameGrads(lean.Recomputed, jit.Recomputed, $"recomputing backward ({what})");
            DeltaRuleCompactTests.AssertSameGrads(lean.Saved, jit.Saved, $"backward from the saving forward ({what})");
            backend.DeltaRuleStateFragmentsLean = defaultLean;
            backend.DeltaRuleStateEarlyFetch = defaultEarly;
        }
    }

    /// <summary>The gated build of the _jit pass (chunk_state_fragments_k128_v64_jit_gated,
    /// VulkanBackend.DeltaRuleGatedStateFragmentsJit) against the gated 64-row lean pass with late reads:
    /// the same products of the same decayed operands in the same order, so every output and gradient,
    /// dalpha included, bit for bit, with compact and f32 intermediates, saving and recomputing.</summary>
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    public void GatedJitPassChangesNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: true, (ulong)(11 * t + dk + 3 * dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleRawKeyReads = false;   // its _jit_raw variants: DeltaRuleRawReadsTests
        foreach (bool compact in new[] { true, false })
            foreach (bool saving in new[] { true, false })
            {
                string what = $"{shape} {(compact ? "compact" : "f32 intermediates")}, {(saving ? "saving forward" : "recomputing backward")}";
                backend.DeltaRuleGatedCompactIntermediates = compact;
                backend.DeltaRuleStateFragmentRows = 0;
                backend.DeltaRuleStateFragmentsJit = true;
                backend.DeltaRuleGatedStateFragmentsJit = true;
                Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_jit_gated", backend.StateFragmentsVariant("chunk_state_fragments", shape, gated: true).Variant, what);
                Assert.IsTrue(backend.DeltaRuleGatedUsesStateFragments(DType.BF16, shape), what);
                var jit = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.F32, DeltaRuleAlgorithm.Chunked, saving);
                backend.DeltaRuleGatedStateFragmentsJit = false;
                backend.DeltaRuleStateFragmentRows = 64;
                backend.DeltaRuleStateFragmentsLean = true;
                backend.DeltaRuleStateEarlyFetch = false;
                Assert.AreEqual("delta_rule/chunk_state_fragments_k128_v64_lean_gated", backend.StateFragmentsVariant("chunk_state_fragments", shape, gated: true).Variant, what);
                var lean = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.F32, DeltaRuleAlgorithm.Chunked, saving);
                Assert.IsFalse(jit.O.Any(float.IsNaN), $"o has NaNs ({what})");
                Assert.IsTrue(jit.O.Any(o => o != 0f), $"o is all zeros ({what})");
                DeltaRuleHalfOutputsTests.AssertSame(lean, jit, what);
            }
    }
}
