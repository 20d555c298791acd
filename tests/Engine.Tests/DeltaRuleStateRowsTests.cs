using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The forward state pass with 16 state rows per subgroup (chunk_state_rows.comp,
/// VulkanBackend.DeltaRuleStateRows): the same products in the same order as chunk_state_fragments.comp
/// with rounded operands and compact intermediates, so everything downstream must be bit for bit what
/// the fragment pass gives, and within the rounded tolerance of the float64 reference. Needs bf16
/// cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleStateRowsTests
{
    // Both head dims; Dv = 96 leaves two of the second workgroup's four subgroups without rows.
    [TestMethod]
    [DataRow(2, 128, 3, 64, 64)]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(2, 256, 1, 128, 128)]
    [DataRow(1, 128, 3, 128, 96)]
    public void StateRowsMatchFragmentPass(int b, int t, int h, int dk, int dv)
    {
        var backend = DeltaRuleCompactTests.Vulkan();
        bool previousSplit = backend.DeltaRuleCoopMatSplit, previousRows = backend.DeltaRuleStateRows;
        var shape = new FastWeightShape(b, t, h, dk, dv);
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(13 * t + dk + 5 * dv), DType.BF16);
        try
        {
            backend.DeltaRuleCoopMatSplit = false;
            backend.DeltaRuleStateRows = false;
            Assert.IsFalse(backend.DeltaRuleUsesStateRows(DType.BF16, shape), "off");
            var fragments = DeltaRuleCompactTests.RunAll(backend, x);
            backend.DeltaRuleStateRows = true;
            Assert.IsTrue(backend.DeltaRuleUsesStateRows(DType.BF16, shape), "on, rounded, compact");
            var rows = DeltaRuleCompactTests.RunAll(backend, x);
            DeltaRuleTensorCoreTests.Check(backend, b, t, h, dk, dv, DeltaRuleTensorCoreTests.AssertNormwise);

            Assert.IsFalse(rows.SavingO.Any(float.IsNaN), "o has NaNs");
            CollectionAssert.AreEqual(fragments.SavingO, rows.SavingO, "o (saving forward)");
            CollectionAssert.AreEqual(fragments.SavingFinal, rows.SavingFinal, "final state (saving forward)");
            CollectionAssert.AreEqual(fragments.O, rows.O, "o");
            CollectionAssert.AreEqual(fragments.Final, rows.Final, "final state");
            DeltaRuleCompactTests.AssertSameGrads(fragments.Recomputed, rows.Recomputed, "recomputing backward");
            DeltaRuleCompactTests.AssertSameGrads(fragments.Saved, rows.Saved, "backward from the saving forward");

            backend.DeltaRuleCoopMatSplit = true;
            Assert.IsFalse(backend.DeltaRuleUsesStateRows(DType.BF16, shape), "split operands keep the fragment pass");
        }
        finally { backend.DeltaRuleCoopMatSplit = previousSplit; backend.DeltaRuleStateRows = previousRows; }
    }
}
