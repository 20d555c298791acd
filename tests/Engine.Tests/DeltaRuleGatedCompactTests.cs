using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The gated rule's compact intermediates (VulkanBackend.DeltaRuleGatedCompactIntermediates): with
/// every gated stage on fragments and the operands rounded, W, X, U', the chunk-start states, dU', the
/// dS_C and dW stored as the bf16 values every product reads them as, so every output and gradient is
/// bit for bit that of f32 storage except dalpha, whose last-row term sums the states' products in f32
/// (chunk_grad_qk_fragments.comp) and so moves within the bf16 bound. Both the saving forward with its
/// backward and the plain forward with the recomputing backward. Needs bf16 cooperative matrices.</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleGatedCompactTests
{
    [TestMethod]
    [DataRow(2, 128, 3, 64, 64)]
    [DataRow(1, 192, 2, 128, 64)]
    [DataRow(1, 256, 2, 128, 128)]
    public void CompactChangesNothingButTheDecaysLastTerm(int b, int t, int h, int dk, int dv)
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        using var settings = BackendSettings.Keep(backend);
        var x = new Inputs(b, t, h, dk, dv, gated: true, (ulong)(5 * t + dk + dv), DType.BF16);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleGatedCompactIntermediates = true;
        Assert.IsTrue(backend.DeltaRuleGatedUsesCompactIntermediates(DType.BF16, shape), $"{backend.Capabilities.Name} does not store the gated intermediates as bf16 at {shape}");
        foreach (bool saving in new[] { true, false })
        {
            backend.DeltaRuleGatedCompactIntermediates = false;
            var wide = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.F32, DeltaRuleAlgorithm.Chunked, saving);
            backend.DeltaRuleGatedCompactIntermediates = true;
            var compact = DeltaRuleHalfOutputsTests.Run(backend, x, DType.BF16, DType.F32, DeltaRuleAlgorithm.Chunked, saving);
            string what = $"{shape} {(saving ? "saving forward" : "recomputing backward")}";
            DeltaRuleHalfOutputsTests.AssertSame(wide, compact, what, withDAlpha: false);
            DeltaRuleTensorCoreTests.AssertNormwise(TestData.ToDouble(wide.DAlpha!), compact.DAlpha!, $"{what}: dalpha");
        }
    }
}
