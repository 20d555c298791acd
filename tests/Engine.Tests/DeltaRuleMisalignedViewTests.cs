using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The Vulkan chunked delta rule with every tensor a view that does not start on a 16-byte
/// boundary (a flat tensor's elements from the second on, reshaped): the tensor-core and fragment
/// kernels read 16-byte vectors from each tensor's start, so the backend copies such views into
/// aligned tensors and copies outputs back (VulkanBackend.AlignedDeltaRuleCall). Forward (plain and
/// saving) and backward (recomputing and from the saved intermediates) must give the same bits as
/// with ordinary tensors, and land in the caller's views. On lavapipe this checks the copies; on a
/// GPU with tensor cores (bf16, T a multiple of 64, head dims 64) also the routes that need them.</summary>
[TestClass]
public sealed class DeltaRuleMisalignedViewTests
{
    // A view of `values` starting one element past a flat tensor's (aligned) start; the flat tensor
    // goes into `owners`.
    private static Tensor Misaligned(IBackend backend, float[] values, Shape shape, DType dtype, List<Tensor> owners)
    {
        var flat = Tensor.FromArray(backend, [float.NaN, .. values], new Shape(values.Length + 1), dtype);
        owners.Add(flat);
        var view = flat.SliceRows(1, values.Length).Reshape(shape);
        Assert.AreNotEqual(0L, view.ByteOffset % 16, "the view must start off a 16-byte boundary");
        return view;
    }

    private static Tensor MisalignedNaN(IBackend backend, Shape shape, List<Tensor> owners) =>
        Misaligned(backend, Enumerable.Repeat(float.NaN, checked((int)shape.ElementCount)).ToArray(), shape, DType.F32, owners);

    [TestMethod]
    [DataRow(DType.BF16, 2, 128, 2, 64, 64)]
    [DataRow(DType.F32, 1, 130, 3, 32, 48)]
    public void MisalignedViewsGiveTheSameBits(DType dtype, int b, int t, int h, int dk, int dv)
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        const float Scale = DeltaRuleChunkedVulkanTests.Scale;
        var x = new Inputs(b, t, h, dk, dv, gated: false, (ulong)(t + dk), dtype);
        var (expectedO, expectedFinal) = DeltaRuleChunkedVulkanTests.RunForward(backend, x, true, dtype, DeltaRuleAlgorithm.Chunked);
        var expected = DeltaRuleChunkedVulkanTests.RunBackward(backend, x, true, dtype, DeltaRuleAlgorithm.Chunked);

        var owners = new List<Tensor>();
        try
        {
            Tensor q = Misaligned(backend, x.Q, x.Keys, dtype, owners), k = Misaligned(backend, x.K, x.Keys, dtype, owners),
                v = Misaligned(backend, x.V, x.Values, dtype, owners), beta = Misaligned(backend, x.Beta, x.PerToken, dtype, owners),
                s0 = Misaligned(backend, x.S0, x.State, DType.F32, owners), dO = Misaligned(backend, x.DO, x.Values, DType.F32, owners),
                dFinal = Misaligned(backend, x.DFinal, x.State, DType.F32, owners);
            foreach (bool saving in new[] { false, true })
            {
                Tensor o = MisalignedNaN(backend, x.Values, owners), final = MisalignedNaN(backend, x.State, owners);
                using var saved = saving
                    ? DeltaRule.ForwardSaving(q, k, v, beta, o, s0, final, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked)
                    : null;
                if (!saving) DeltaRule.Forward(q, k, v, beta, o, s0, final, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked);
                CollectionAssert.AreEqual(expectedO, o.ToArray(), $"o (saving {saving})");
                CollectionAssert.AreEqual(expectedFinal, final.ToArray(), $"final state (saving {saving})");

                Tensor dq = MisalignedNaN(backend, x.Keys, owners), dk_ = MisalignedNaN(backend, x.Keys, owners),
                    dv_ = MisalignedNaN(backend, x.Values, owners), dbeta = MisalignedNaN(backend, x.PerToken, owners),
                    ds0 = MisalignedNaN(backend, x.State, owners);
                DeltaRule.Backward(q, k, v, beta, dO, dq, dk_, dv_, dbeta, s0, dFinal, ds0, scale: Scale, algorithm: DeltaRuleAlgorithm.Chunked, saved: saved);
                string what = saving ? "from the saved intermediates" : "recomputing";
                CollectionAssert.AreEqual(expected.DQ, dq.ToArray(), $"dq ({what})");
                CollectionAssert.AreEqual(expected.DK, dk_.ToArray(), $"dk ({what})");
                CollectionAssert.AreEqual(expected.DV, dv_.ToArray(), $"dv ({what})");
                CollectionAssert.AreEqual(expected.DBeta, dbeta.ToArray(), $"dbeta ({what})");
                CollectionAssert.AreEqual(expected.DS0, ds0.ToArray(), $"dInitialState ({what})");
            }
        }
        finally
        {
            foreach (var owner in owners) owner.Dispose();
        }
    }
}
