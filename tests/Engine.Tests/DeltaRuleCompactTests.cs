using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;
using Runners = FastWeights.Engine.Tests.DeltaRuleChunkedVulkanTests;

namespace FastWeights.Engine.Tests;

/// <summary>Compact intermediates (VulkanBackend.DeltaRuleCompactIntermediates, fragment_types.glsl's
/// COMPACT): with the operands rounded to bf16 and every stage on fragments, W, X, U', the chunk-start
/// states, dU', the dS_C and dW are stored as the bf16 values every reader would round them to, so the
/// outputs and gradients must be bit for bit those of f32 storage (their distance from the reference
/// is DeltaRuleTensorCoreTests' rounded rows, which run compact by default). Needs bf16 cooperative
/// matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleCompactTests
{
    private const float Scale = Runners.Scale;

    /// <summary>The Vulkan backend, asserted to run the chunked delta rule on tensor cores.</summary>
    internal static VulkanBackend Vulkan()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        Assert.IsTrue(backend.DeltaRuleUsesCoopMat(DType.BF16), $"{backend.Capabilities.Name} does not run the chunked delta rule on tensor cores");
        return backend;
    }

    internal sealed record Everything(float[] O, float[] Final, Runners.Grads Recomputed, float[] SavingO, float[] SavingFinal, Runners.Grads Saved);

    // The plain forward (the fused state pass at Dk = 64), the recomputing backward, and the saving
    // forward with the backward from what it kept.
    internal static Everything RunAll(VulkanBackend backend, Inputs x)
    {
        var (o, final) = Runners.RunForward(backend, x, true, DType.BF16, DeltaRuleAlgorithm.Chunked);
        var recomputed = Runners.RunBackward(backend, x, true, DType.BF16, DeltaRuleAlgorithm.Chunked);
        using var inputs = new Runners.DeviceInputs(backend, x, DType.BF16, withInitial: true);
        using var g = new Runners.DeviceGradients(backend, x);
        using var savingO = Tensor.Full(backend, x.Values, float.NaN);
        using var savingFinal = Tensor.Full(backend, x.State, float.NaN);
        using (var saved = DeltaRule.ForwardSaving(inputs.Q, inputs.K, inputs.V, inputs.Beta, savingO, inputs.S0, savingFinal, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked))
            DeltaRule.Backward(inputs.Q, inputs.K, inputs.V, inputs.Beta, g.DO, g.DQ, g.DK, g.DV, g.DBeta, inputs.S0, g.DFinal, g.DS0, scale: Scale,
                algorithm: DeltaRuleAlgorithm.Chunked, saved: saved);
        return new Everything(o, final, recomputed, savingO.ToArray(), savingFinal.ToArray(), g.Read());
    }

    internal static void AssertSameGrads(Runners.Grads expected, Runners.Grads actual, string what)
    {
        CollectionAssert.AreEqual(expected.DQ, actual.DQ, $"{what}: dq");
        CollectionAssert.AreEqual(expected.DK, actual.DK, $"{what}: dk");
        CollectionAssert.AreEqual(expected.DV, actual.DV, $"{what}: dv");
        CollectionAssert.AreEqual(expected.DBeta, actual.DBeta, $"{what}: dbeta");
        CollectionAssert.AreEqual(expected.DS0, actual.DS0, $"{what}: dInitialState");
    }

    // At Dk = 128 with the backend's rows (32 forward, 64 backward) and 64 for both; at Dk = 64 with the
    // saving forward's outputs formed in the state pass and in the output stage.
    /// <summary>(b, t, h, dk, dv) of the bit-for-bit comparisons: both head dims each way, T not a power of two.</summary>
    internal static IEnumerable<object[]> BitShapes() =>
    [
        [2, 128, 3, 64, 64],
        [1, 192, 2, 128, 64],
        [1, 128, 2, 64, 128],
        [2, 256, 1, 128, 128],
    ];

    [TestMethod]
    [DynamicData(nameof(BitShapes))]
    public void CompactIntermediatesChangeNoBit(int b, int t, int h, int dk, int dv)
    {
        var backend = Vulkan();
        using var kept = BackendSettings.Keep(backend);
        var shape = new FastWeightShape(b, t, h, dk, dv);
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(11 * t + dk + 3 * dv), DType.BF16);
        backend.DeltaRuleCoopMatSplit = false;
        backend.DeltaRuleCompactSummands = false;   // bf16 summands change bits (DeltaRuleCompactSummandsTests)
        backend.DeltaRuleCompactU = false;          // and so does a bf16 U
        var settings = dk == 128 ? new[] { (0, true), (64, true) } : new[] { (0, true), (0, false) };
        foreach (var (rows, fusedSaving) in settings)
        {
            string setting = $"rows {rows}, fused saving {fusedSaving}";
            backend.DeltaRuleStateFragmentRows = rows;
            backend.DeltaRuleFusedSaving = fusedSaving;
            backend.DeltaRuleCompactIntermediates = true;
            Assert.IsTrue(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape), "rounded, every stage on fragments: compact");
            var compact = RunAll(backend, x);
            backend.DeltaRuleCompactIntermediates = false;
            Assert.IsFalse(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape), "switched off");
            var wide = RunAll(backend, x);

            Assert.IsFalse(compact.O.Any(float.IsNaN), $"o has NaNs ({setting})");
            CollectionAssert.AreEqual(wide.O, compact.O, $"o ({setting})");
            CollectionAssert.AreEqual(wide.Final, compact.Final, $"final state ({setting})");
            CollectionAssert.AreEqual(wide.SavingO, compact.SavingO, $"o (saving forward, {setting})");
            CollectionAssert.AreEqual(wide.SavingFinal, compact.SavingFinal, $"final state (saving forward, {setting})");
            AssertSameGrads(wide.Recomputed, compact.Recomputed, $"recomputing backward ({setting})");
            AssertSameGrads(wide.Saved, compact.Saved, $"backward from the saving forward ({setting})");
        }
    }

    // Compact storage needs the rounded operands and every stage on fragments; intermediates kept by a
    // forward are refused by a backward whose settings would read them in the other storage.
    [TestMethod]
    public void CompactOnlyWhereEveryReaderTakesIt()
    {
        var backend = Vulkan();
        using var settings = BackendSettings.Keep(backend);
        var shape = new FastWeightShape(1, 128, 2, 64, 64);
        backend.DeltaRuleCompactIntermediates = true;
        backend.DeltaRuleCoopMatSplit = true;
        Assert.IsFalse(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape), "split operands need f32 intermediates");
        backend.DeltaRuleCoopMatSplit = false;
        Assert.IsTrue(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape), "rounded");
        Assert.IsFalse(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape, forBackward: false), "a plain forward at Dk = 64 keeps f32");
        Assert.IsTrue(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape with { KeyDim = 128 }, forBackward: false), "a plain forward at Dk = 128");
        Assert.IsFalse(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape with { Steps = 130 }), "T not a multiple of 64: tile stages");
        Assert.IsFalse(backend.DeltaRuleUsesCompactIntermediates(DType.F32, shape), "f32 inputs: portable products");

        var x = new Inputs(1, 128, 2, 64, 64, gated: false, 5, DType.BF16);
        using var inputs = new Runners.DeviceInputs(backend, x, DType.BF16, withInitial: true);
        using var g = new Runners.DeviceGradients(backend, x);
        using var output = Tensor.Empty(backend, x.Values);
        using var saved = DeltaRule.ForwardSaving(inputs.Q, inputs.K, inputs.V, inputs.Beta, output, inputs.S0, null, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked);
        backend.DeltaRuleGradQKFragments = false;   // the tile kernel reads f32 only
        Assert.IsFalse(backend.DeltaRuleUsesCompactIntermediates(DType.BF16, shape), "a stage off fragments");
        var e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Backward(inputs.Q, inputs.K, inputs.V, inputs.Beta, g.DO, g.DQ, g.DK, g.DV, g.DBeta,
            inputs.S0, g.DFinal, g.DS0, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked, saved: saved));
        StringAssert.Contains(e.Message, "saved");
        StringAssert.Contains(e.Message, "bf16");
    }
}
