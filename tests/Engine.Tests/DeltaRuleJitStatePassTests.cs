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
}
