using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The chunked delta rule's tensor-core products (shaders/delta_rule/chunk_tiles_coopmat.glsl)
/// on bf16 inputs against the float64 reference of the rounded inputs, forward and every gradient,
/// at sizes that are not multiples of the chunk or the 16 x 16 tiles. Needs a device listing bf16
/// 16x16x16 cooperative matrices (a GPU host; CI's lavapipe has none and excludes the category);
/// fails rather than skips where they are missing.
/// Tolerance: that of the portable kernels on the same rounded inputs (1e-3 relative, and 1e-3 of
/// the tensor's RMS absolute): f32 intermediates enter the products as two bf16 parts, so the
/// tensor cores do not add bf16-sized errors.</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleTensorCoreTests
{
    private const float Scale = 0.7f;
    private const double Tolerance = 1e-3;

    private static VulkanBackend Vulkan()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        Assert.IsTrue(backend.DeltaRuleUsesCoopMat(DType.BF16), $"{backend.Capabilities.Name} does not run the chunked delta rule on tensor cores");
        return backend;
    }

    private static void AssertNear(double[] expected, float[] actual, string what)
    {
        double rms = Math.Sqrt(expected.Sum(e => e * e) / Math.Max(1, expected.Length));
        TestData.AssertClose(expected, actual, Tolerance, Tolerance * Math.Max(1, rms), what);
    }

    [TestMethod]
    [DataRow(1, 7, 3, 16, 24)]
    [DataRow(2, 65, 3, 33, 20)]
    [DataRow(1, 130, 2, 64, 64)]
    [DataRow(1, 200, 1, 128, 100)]
    [DataRow(2, 129, 2, 64, 128)]
    public void Bf16MatchesReference(int b, int t, int h, int dk, int dv)
    {
        var backend = Vulkan();
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(7 * t + dk + dv), DType.BF16);
        var reference = x.Reference(Scale, true);
        var (o, final) = reference.Forward(out _);
        var grads = x.Reference(Scale, true).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));

        using var q = Tensor.FromArray(backend, x.Q, x.Keys, DType.BF16);
        using var k = Tensor.FromArray(backend, x.K, x.Keys, DType.BF16);
        using var v = Tensor.FromArray(backend, x.V, x.Values, DType.BF16);
        using var beta = Tensor.FromArray(backend, x.Beta, x.PerToken, DType.BF16);
        using var s0 = Tensor.FromArray(backend, x.S0, x.State);
        using var output = Tensor.Full(backend, x.Values, float.NaN);
        using var finalState = Tensor.Full(backend, x.State, float.NaN);
        DeltaRule.Forward(q, k, v, beta, output, s0, finalState, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked);
        AssertNear(o, output.ToArray(), "o");
        AssertNear(final, finalState.ToArray(), "final state");

        using var dO = Tensor.FromArray(backend, x.DO, x.Values);
        using var dFinal = Tensor.FromArray(backend, x.DFinal, x.State);
        using var dq = Tensor.Full(backend, x.Keys, float.NaN);
        using var dK = Tensor.Full(backend, x.Keys, float.NaN);
        using var dV = Tensor.Full(backend, x.Values, float.NaN);
        using var dbeta = Tensor.Full(backend, x.PerToken, float.NaN);
        using var dS0 = Tensor.Full(backend, x.State, float.NaN);
        DeltaRule.Backward(q, k, v, beta, dO, dq, dK, dV, dbeta, s0, dFinal, dS0, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked);
        AssertNear(grads.DQ, dq.ToArray(), "dq");
        AssertNear(grads.DK, dK.ToArray(), "dk");
        AssertNear(grads.DV, dV.ToArray(), "dv");
        AssertNear(grads.DBeta, dbeta.ToArray(), "dbeta");
        AssertNear(grads.DS0, dS0.ToArray(), "dInitialState");
    }
}
