using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The parallel stages' lane stores (chunk_fragments.glsl, STORE_RESULT; VulkanBackend.DeltaRuleLaneStores):
/// a result tile written through the subgroup's scratch tile as 16-byte words (bf16 rounded to nearest,
/// or f32) holds the values coopMatStore writes, so every output and gradient is bit for bit the same,
/// ungated and gated, with bf16 and f32 outputs, saving and recomputing, at Dk 64 and 128. Needs bf16
/// cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleLaneStoresTests
{
    [TestMethod]
    [DataRow(1, 192, 2, 128, 64, false)]
    [DataRow(2, 128, 3, 64, 128, false)]
    [DataRow(1, 256, 2, 128, 128, true)]
    [DataRow(2, 128, 1, 64, 64, true)]
    public void LaneStoresChangeNoBit(int b, int t, int h, int dk, int dv, bool gated)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated, (ulong)(7 * t + 3 * dk + dv + (gated ? 1 : 0)), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        Assert.IsTrue(gated ? backend.DeltaRuleGatedUsesOutputFragments(DType.BF16, shape) : backend.DeltaRuleUsesOutputFragments(DType.BF16, shape),
            $"{backend.Capabilities.Name} does not run the output stage on fragments at {shape}");
        foreach (var outputs in new[] { DType.BF16, DType.F32 })
            foreach (bool saving in new[] { true, false })
            {
                string what = $"{shape}{(gated ? " gated" : "")}, {outputs.Name()} outputs, {(saving ? "saving forward" : "recomputing backward")}";
                backend.DeltaRuleLaneStores = LaneStores.None;
                var fragments = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                backend.DeltaRuleLaneStores = LaneStores.Half | LaneStores.Float | LaneStores.StagedState;
                var lanes = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, outputs, DeltaRuleAlgorithm.Chunked, saving);
                Assert.IsFalse(lanes.O.Any(float.IsNaN) || lanes.DQ.Any(float.IsNaN) || lanes.DK.Any(float.IsNaN) || lanes.DV.Any(float.IsNaN),
                    $"{what}: an element was not written");
                Assert.IsTrue(lanes.O.Any(o => o != 0f), $"{what}: o is all zeros");
                DeltaRuleHalfOutputsTests.AssertSame(fragments, lanes, what);
            }
    }
}
