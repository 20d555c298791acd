using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>DeltaRule.ForwardSaving and the backward that reads what it kept (Vulkan's chunked form
/// keeps W, U, X, U' and the chunk-start states): the same gradients as the float64 reference and
/// as the recomputing backward, also when the forward updated the initial state in place; the
/// recurrent form and the CPU backend keep nothing; misuse is an argument error.</summary>
[TestClass]
public sealed class DeltaRuleSavedTests
{
    private const float Scale = DeltaRuleChunkedVulkanTests.Scale;

    private static VulkanBackend Vulkan() => (VulkanBackend)TestBackends.Get("vulkan");

    private sealed record Run(float[] O, float[] Final, DeltaRuleChunkedVulkanTests.Grads Grads);

    // Forward then backward in one go; inPlace: the final state overwrites the initial state's tensor
    // (the saved intermediates must make the backward independent of it).
    private static Run ForwardBackward(IBackend backend, Inputs x, DType dtype, bool save, bool inPlace, DeltaRuleAlgorithm algorithm, out bool kept)
    {
        using var t = new DeltaRuleChunkedVulkanTests.DeviceInputs(backend, x, dtype, withInitial: true);
        using var g = new DeltaRuleChunkedVulkanTests.DeviceGradients(backend, x);
        using var separateFinal = inPlace ? null : Tensor.Full(backend, x.State, float.NaN);
        var final = separateFinal ?? t.S0!;
        using var output = Tensor.Full(backend, x.Values, float.NaN);
        DeltaRuleSaved? saved = null;
        if (save) saved = DeltaRule.ForwardSaving(t.Q, t.K, t.V, t.Beta, output, t.S0, final, scale: Scale, algorithm: algorithm);
        else DeltaRule.Forward(t.Q, t.K, t.V, t.Beta, output, t.S0, final, scale: Scale, algorithm: algorithm);
        kept = saved is not null;
        using (saved)
            DeltaRule.Backward(t.Q, t.K, t.V, t.Beta, g.DO, g.DQ, g.DK, g.DV, g.DBeta, t.S0, g.DFinal, g.DS0, scale: Scale, algorithm: algorithm, saved: saved);
        return new Run(output.ToArray(), final.ToArray(), g.Read());
    }

    [TestMethod]
    [DataRow(2, 130, 3, 32, 20, DType.F32, false)]
    [DataRow(1, 65, 2, 64, 64, DType.F32, true)]
    [DataRow(1, 200, 2, 48, 33, DType.BF16, true)]
    public void SavedBackwardMatchesReferenceAndRecomputed(int b, int t, int h, int dk, int dv, DType dtype, bool inPlace)
    {
        var backend = Vulkan();
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(t * 7 + dk + dv), dtype);
        var reference = x.Reference(Scale, true);
        var (o, final) = reference.Forward(out _);
        var expected = reference.Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));

        // bf16: on tensor cores the split products keep about 1e-3 (DeltaRuleTensorCoreTests), so this
        // pins them; the default rounded products (1e-2 norm-wise) are DeltaRuleTensorCoreTests' to check.
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleCoopMatSplit = true;
        CheckSaved(backend, x, t, dtype, inPlace, o, final, expected);
    }

    private static void CheckSaved(VulkanBackend backend, Inputs x, int t, DType dtype, bool inPlace, double[] o, double[] final,
        (double[] DQ, double[] DK, double[] DV, double[] DBeta, double[] DAlpha, double[] DS0) expected)
    {
        var saved = ForwardBackward(backend, x, dtype, save: true, inPlace, DeltaRuleAlgorithm.Chunked, out bool kept);
        Assert.IsTrue(kept, "the chunked forward kept nothing");
        double tol = dtype == DType.F32 ? 5e-5 * Math.Sqrt(t) : 2e-3;
        TestData.AssertClose(o, saved.O, tol, tol, "o");
        TestData.AssertClose(final, saved.Final, tol, tol, "final state");
        TestData.AssertClose(expected.DQ, saved.Grads.DQ, tol, tol, "saved dq");
        TestData.AssertClose(expected.DK, saved.Grads.DK, tol, tol, "saved dk");
        TestData.AssertClose(expected.DV, saved.Grads.DV, tol, tol, "saved dv");
        TestData.AssertClose(expected.DBeta, saved.Grads.DBeta, tol, tol, "saved dbeta");
        TestData.AssertClose(expected.DS0, saved.Grads.DS0, tol, tol, "saved dInitialState");

        // The recomputing backward runs the same kernels on the same values: equal to rounding.
        var recomputed = ForwardBackward(backend, x, dtype, save: false, inPlace: false, DeltaRuleAlgorithm.Chunked, out _);
        TestData.AssertClose(TestData.ToDouble(recomputed.Grads.DK), saved.Grads.DK, 1e-6, 1e-6, "saved vs recomputed dk");
        TestData.AssertClose(TestData.ToDouble(recomputed.Grads.DBeta), saved.Grads.DBeta, 1e-6, 1e-6, "saved vs recomputed dbeta");
    }

    [TestMethod]
    public void RecurrentAndCpuKeepNothing()
    {
        var x = new Inputs(1, 20, 2, 16, 8, gated: false, 3);
        var expected = x.Reference(Scale, true).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));
        foreach (var (backend, algorithm) in new[] { (TestBackends.Get("vulkan"), DeltaRuleAlgorithm.Recurrent), (TestBackends.Get("cpu"), DeltaRuleAlgorithm.Chunked) })
        {
            var run = ForwardBackward(backend, x, DType.F32, save: true, inPlace: false, algorithm, out bool kept);
            Assert.IsFalse(kept, $"{backend.Name} {algorithm} kept intermediates");
            TestData.AssertClose(expected.DK, run.Grads.DK, 1e-4, 1e-4, $"{backend.Name} {algorithm} dk");
        }
    }

    [TestMethod]
    public void RejectsSavedOfAnotherProblemAndDisposed()
    {
        var backend = Vulkan();
        var shapeK = new Shape(1, 70, 2, 16);
        var shapeV = new Shape(1, 70, 2, 8);
        using var q = Tensor.Full(backend, shapeK, 0.1f);
        using var k = Tensor.Full(backend, shapeK, 0.2f);
        using var otherK = Tensor.Full(backend, shapeK, 0.2f);
        using var v = Tensor.Full(backend, shapeV, 0.3f);
        using var beta = Tensor.Full(backend, new Shape(1, 70, 2), 0.5f);
        using var o = Tensor.Zeros(backend, shapeV);
        using var dq = Tensor.Zeros(backend, shapeK);
        using var dk = Tensor.Zeros(backend, shapeK);
        using var dv = Tensor.Zeros(backend, shapeV);
        using var dbeta = Tensor.Zeros(backend, new Shape(1, 70, 2));
        var saved = DeltaRule.ForwardSaving(q, k, v, beta, o, algorithm: DeltaRuleAlgorithm.Chunked);
        Assert.IsNotNull(saved);
        var e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Backward(q, otherK, v, beta, o, dq, dk, dv, dbeta, algorithm: DeltaRuleAlgorithm.Chunked, saved: saved));
        StringAssert.Contains(e.Message, "DeltaRuleBackward: argument 'saved' was kept by a forward of other tensors (k [1, 70, 2, 16], v [1, 70, 2, 8], initial state none)");
        using var alpha = Tensor.Full(backend, new Shape(1, 70, 2), 0.9f);
        using var dalpha = Tensor.Zeros(backend, new Shape(1, 70, 2));
        e = Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Backward(q, k, v, beta, o, dq, dk, dv, dbeta, alpha: alpha, dalpha: dalpha, algorithm: DeltaRuleAlgorithm.Chunked, saved: saved));
        StringAssert.Contains(e.Message, "argument 'saved' was kept by a forward of other tensors");
        saved.Dispose();
        var disposed = Assert.ThrowsExactly<ObjectDisposedException>(() => DeltaRule.Backward(q, k, v, beta, o, dq, dk, dv, dbeta, algorithm: DeltaRuleAlgorithm.Chunked, saved: saved));
        StringAssert.Contains(disposed.Message, "DeltaRuleBackward: argument 'saved' was disposed");
    }
}
