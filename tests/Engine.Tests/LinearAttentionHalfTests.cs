using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Tests;

/// <summary>Linear attention on f16/bf16 q, k, v, o and gradients: the backends compute from and into f32,
/// so the results must be those of f32 tensors holding the same values, with o, dq, dk, dv rounded to
/// the half dtype (to nearest), bit for bit; the final state and normaliser are f32 either way.</summary>
[TestClass]
public sealed class LinearAttentionHalfTests
{
    private sealed record Results(float[] O, float[] Final, float[] DQ, float[] DK, float[] DV);

    private static Results Run(IBackend backend, float[] q, float[] k, float[] v, float[] s0, float[] dO, Shape keys, Shape values, Shape state,
        DType dtype, bool normalise)
    {
        using var tq = Tensor.FromArray(backend, q, keys, dtype);
        using var tk = Tensor.FromArray(backend, k, keys, dtype);
        using var tv = Tensor.FromArray(backend, v, values, dtype);
        using var initial = Tensor.FromArray(backend, s0, state);
        using var o = Tensor.Full(backend, values, float.NaN, dtype);
        using var final = Tensor.Full(backend, state, float.NaN);
        using var tdO = Tensor.FromArray(backend, dO, values, dtype);
        using var dq = Tensor.Full(backend, keys, float.NaN, dtype);
        using var dk = Tensor.Full(backend, keys, float.NaN, dtype);
        using var dv = Tensor.Full(backend, values, float.NaN, dtype);
        LinearAttention.Forward(tq, tk, tv, o, initial, final, normalise, scale: 0.5f);
        LinearAttention.Backward(tq, tk, tv, tdO, dq, dk, dv, initial, normalise: normalise, scale: 0.5f);
        return new Results(o.ToArray(), final.ToArray(), dq.ToArray(), dk.ToArray(), dv.ToArray());
    }

    [TestMethod]
    [DataRow("cpu", DType.BF16, false)]
    [DataRow("cpu", DType.F16, true)]
    [DataRow("vulkan", DType.BF16, false)]
    [DataRow("vulkan", DType.F16, true)]
    public void HalfTensorsAreTheF32ResultsRounded(string backendName, DType dtype, bool normalise)
    {
        var backend = TestBackends.Get(backendName);
        var keys = new Shape(2, 70, 3, 16);
        var values = new Shape(2, 70, 3, 24);
        var state = new Shape(2, 3, 24, 16);
        // positive q, k as a feature map gives them (the normaliser divides by z . q)
        float low = normalise ? 0.1f : -1f;
        var q = TestData.RoundTrip(TestData.Uniform((int)keys.ElementCount, 1, low, 1f), dtype);
        var k = TestData.RoundTrip(TestData.Uniform((int)keys.ElementCount, 2, low, 1f), dtype);
        var v = TestData.RoundTrip(TestData.Uniform((int)values.ElementCount, 3), dtype);
        var dO = TestData.RoundTrip(TestData.Uniform((int)values.ElementCount, 4), dtype);
        var s0 = TestData.Uniform((int)state.ElementCount, 5, -0.5f, 0.5f);
        var wide = Run(backend, q, k, v, s0, dO, keys, values, state, DType.F32, normalise);
        var half = Run(backend, q, k, v, s0, dO, keys, values, state, dtype, normalise);
        string what = $"{backendName} {dtype.Name()}{(normalise ? " normalised" : "")}";
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.O, dtype), half.O, $"{what}: o");
        CollectionAssert.AreEqual(wide.Final, half.Final, $"{what}: final state");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DQ, dtype), half.DQ, $"{what}: dq");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DK, dtype), half.DK, $"{what}: dk");
        CollectionAssert.AreEqual(TestData.RoundTrip(wide.DV, dtype), half.DV, $"{what}: dv");
        Assert.IsFalse(half.O.Any(float.IsNaN) || half.DQ.Any(float.IsNaN), $"{what}: unwritten elements");
    }
}
