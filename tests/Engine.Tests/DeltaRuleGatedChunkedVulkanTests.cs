using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The Vulkan gated chunked delta rule (the GATED builds of the portable stages,
/// VulkanBackend.DeltaRuleGated.cs) against the float64 reference, forward and every gradient (dalpha
/// included), at sizes around the chunk of 64 tokens with Dk on both sides of 64; decays small enough
/// that a chunk's cumulative decay underflows f32; half inputs; the saving forward; the recurrent
/// kernels.</summary>
[TestClass]
public sealed class DeltaRuleGatedChunkedVulkanTests
{
    internal const float Scale = DeltaRuleChunkedVulkanTests.Scale;

    private static VulkanBackend Vulkan() => (VulkanBackend)TestBackends.Get("vulkan");

    private static double Tolerance(int t, double perStep) => perStep * Math.Sqrt(Math.Max(t, 64));

    public static IEnumerable<object[]> Sizes() =>
        from size in new[]
        {
            (1, 1, 1, 16, 16), (2, 7, 3, 16, 24), (1, 64, 2, 64, 64), (2, 65, 3, 33, 20),
            (1, 200, 1, 32, 48), (1, 130, 2, 128, 128), (1, 70, 1, 100, 17),
        }
        from withInitial in new[] { true, false }
        select new object[] { size.Item1, size.Item2, size.Item3, size.Item4, size.Item5, withInitial };

    internal sealed class Device(IBackend backend, Inputs x, DType dtype, bool withInitial) : IDisposable
    {
        public readonly Tensor Q = Tensor.FromArray(backend, x.Q, x.Keys, dtype), K = Tensor.FromArray(backend, x.K, x.Keys, dtype),
            V = Tensor.FromArray(backend, x.V, x.Values, dtype), Beta = Tensor.FromArray(backend, x.Beta, x.PerToken, dtype),
            Alpha = Tensor.FromArray(backend, x.Alpha!, x.PerToken);
        public readonly Tensor? S0 = withInitial ? Tensor.FromArray(backend, x.S0, x.State) : null;
        public readonly Tensor DO = Tensor.FromArray(backend, x.DO, x.Values), DFinal = Tensor.FromArray(backend, x.DFinal, x.State),
            DQ = Tensor.Full(backend, x.Keys, float.NaN), DK = Tensor.Full(backend, x.Keys, float.NaN), DV = Tensor.Full(backend, x.Values, float.NaN),
            DBeta = Tensor.Full(backend, x.PerToken, float.NaN), DAlpha = Tensor.Full(backend, x.PerToken, float.NaN),
            DS0 = Tensor.Full(backend, x.State, float.NaN), O = Tensor.Full(backend, x.Values, float.NaN), Final = Tensor.Full(backend, x.State, float.NaN);

        public void Forward(DeltaRuleAlgorithm algorithm) =>
            DeltaRule.Forward(Q, K, V, Beta, O, S0, Final, Alpha, Scale, algorithm);

        // The initial state's gradient is asked for only where there is an initial state.
        public void Backward(DeltaRuleAlgorithm algorithm, DeltaRuleSaved? saved = null) =>
            DeltaRule.Backward(Q, K, V, Beta, DO, DQ, DK, DV, DBeta, S0, DFinal, S0 is null ? null : DS0, Alpha, DAlpha, Scale, algorithm, saved);

        public void Dispose()
        {
            foreach (var t in new[] { Q, K, V, Beta, Alpha, S0, DO, DFinal, DQ, DK, DV, DBeta, DAlpha, DS0, O, Final }) t?.Dispose();
        }
    }

    private static void AssertForward(Inputs x, bool withInitial, Device d, double tol, string what)
    {
        var (o, final) = x.Reference(Scale, withInitial).Forward(out _);
        TestData.AssertClose(o, d.O.ToArray(), tol, tol, $"{what} o");
        TestData.AssertClose(final, d.Final.ToArray(), tol, tol, $"{what} final state");
    }

    private static void AssertBackward(Inputs x, bool withInitial, Device d, double tol, string what)
    {
        var expected = x.Reference(Scale, withInitial).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));
        TestData.AssertClose(expected.DQ, d.DQ.ToArray(), tol, tol, $"{what} dq");
        TestData.AssertClose(expected.DK, d.DK.ToArray(), tol, tol, $"{what} dk");
        TestData.AssertClose(expected.DV, d.DV.ToArray(), tol, tol, $"{what} dv");
        TestData.AssertClose(expected.DBeta, d.DBeta.ToArray(), tol, tol, $"{what} dbeta");
        TestData.AssertClose(expected.DAlpha, d.DAlpha.ToArray(), tol, tol, $"{what} dalpha");
        if (withInitial) TestData.AssertClose(expected.DS0, d.DS0.ToArray(), tol, tol, $"{what} dInitialState");
    }

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    public void GatedChunkedMatchesReference(int b, int t, int h, int dk, int dv, bool withInitial)
    {
        var backend = Vulkan();
        var x = new Inputs(b, t, h, dk, dv, gated: true, (ulong)(b * 1000 + t * 10 + h + dk + dv + 7));
        using var d = new Device(backend, x, DType.F32, withInitial);
        Assert.IsTrue(backend.UsesChunkedDeltaRule("test", new DeltaRuleProblem(d.Q, d.K, d.V, d.Beta, d.Alpha, Scale, d.S0,
            new FastWeightShape(b, t, h, dk, dv), DeltaRuleAlgorithm.Chunked)), "the gated rule runs chunked");
        d.Forward(DeltaRuleAlgorithm.Chunked);
        AssertForward(x, withInitial, d, Tolerance(t, 2e-5), "gated chunked");
        d.Backward(DeltaRuleAlgorithm.Chunked);
        AssertBackward(x, withInitial, d, Tolerance(t, 5e-5), "gated chunked");
    }

    // alpha in (0.02, 0.3): over a chunk of 64 tokens the decay since the chunk start falls to about
    // 1e-60 or less, far below f32's smallest number. The kernels form every decay as the exp of a
    // difference of logs, so nothing divides by an underflowed decay, and every output and gradient
    // stays finite and matches the reference. A few alpha of exactly 1 and one token per chunk near 0.02
    // mix both ends.
    [TestMethod]
    [DataRow(1, 150, 2, 32, 40)]
    [DataRow(1, 130, 1, 128, 64)]
    public void SmallDecaysStayFinite(int b, int t, int h, int dk, int dv)
    {
        var backend = Vulkan();
        var x = new Inputs(b, t, h, dk, dv, gated: true, 77);
        var rng = TestData.Uniform(x.Alpha!.Length, 78, 0.02f, 0.3f);
        for (int i = 0; i < rng.Length; i++) x.Alpha[i] = i % 17 == 3 ? 1f : rng[i];
        using var d = new Device(backend, x, DType.F32, withInitial: true);
        d.Forward(DeltaRuleAlgorithm.Chunked);
        AssertForward(x, true, d, Tolerance(t, 2e-5), "small decays");
        d.Backward(DeltaRuleAlgorithm.Chunked);
        AssertBackward(x, true, d, Tolerance(t, 5e-5), "small decays");
    }

    // bf16 q, k, v, beta (alpha f32): the reference sees the rounded inputs, so the f32 bound holds
    // for the portable products, pinned here (DeltaRuleGatedTensorCoreTests checks the tensor-core ones,
    // the default for bf16 on a device that has them). (f16 reads through the same loadAs as bf16 and as the ungated kernels' f16 variants, which
    // DeltaRuleChunkedVulkanTests checks; one half type keeps lavapipe's first compile of the gated
    // kernels to one set: with a cold shader cache this class took 3 min 36 s on the 2-core machine.)
    [TestMethod]
    public void HalfInputsMatchReference()
    {
        var dtype = DType.BF16;
        var backend = Vulkan();
        var x = new Inputs(2, 100, 2, 64, 48, gated: true, 91, dtype);
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleGatedCoopMat = false;
        Assert.IsFalse(backend.DeltaRuleGatedUsesCoopMat(dtype), "the portable products");
        using var d = new Device(backend, x, dtype, withInitial: true);
        d.Forward(DeltaRuleAlgorithm.Chunked);
        AssertForward(x, true, d, Tolerance(100, 2e-5), dtype.Name());
        d.Backward(DeltaRuleAlgorithm.Chunked);
        AssertBackward(x, true, d, Tolerance(100, 5e-5), dtype.Name());
    }

    // chunk_decay_scale.comp (the operands of the gated state passes on fragments, which run only where
    // there are tensor cores): per chunk, with g_i the cumulative log alpha of its rows,
    // keysToEnd_i = exp(g_last - g_i) k_i and queriesFrom_i = exp(g_i) q_i rounded to bf16 (within one
    // rounding, 2^-8 relative), gamma_C = exp(g_last) within 2e-5; T = 130 ends in a partial chunk.
    [TestMethod]
    public void DecayedKeysAndQueriesMatchTheirDefinition()
    {
        var backend = Vulkan();
        int b = 2, t = 130, h = 3, dk = 40, chunk = VulkanBackend.DeltaRuleChunkSize;
        var x = new Inputs(b, t, h, dk, 8, gated: true, 17, DType.BF16);
        using var d = new Device(backend, x, DType.BF16, withInitial: false);
        var shape = new FastWeightShape(b, t, h, dk, 8);
        var problem = new DeltaRuleProblem(d.Q, d.K, d.V, d.Beta, d.Alpha, Scale, null, shape);
        using var decayed = backend.DecayOperands(problem, queries: true);
        float[] q = d.Q.ToArray(), k = d.K.ToArray(), alpha = d.Alpha.ToArray();
        float[] keysToEnd = decayed.KeysToEnd.ToArray(), queriesFrom = decayed.QueriesFrom!.ToArray(), chunkDecays = decayed.ChunkDecays.ToArray();
        // the forward's call, without queries, writes the same keys and decays
        using (var keysOnly = backend.DecayOperands(problem, queries: false))
        {
            Assert.IsNull(keysOnly.QueriesFrom, "no queries asked for");
            CollectionAssert.AreEqual(keysToEnd, keysOnly.KeysToEnd.ToArray(), "keysToEnd without queries");
            CollectionAssert.AreEqual(chunkDecays, keysOnly.ChunkDecays.ToArray(), "gamma_C without queries");
        }
        int chunks = (t + chunk - 1) / chunk;
        Assert.AreEqual(b * h * chunks, chunkDecays.Length, "gamma_C per (b H + h, chunk)");
        for (int bi = 0; bi < b; bi++)
            for (int hi = 0; hi < h; hi++)
                for (int n = 0; n < chunks; n++)
                {
                    int rows = Math.Min(chunk, t - n * chunk);
                    var g = new double[rows];
                    for (int i = 0; i < rows; i++) g[i] = (i > 0 ? g[i - 1] : 0) + Math.Log(alpha[(bi * t + n * chunk + i) * h + hi]);
                    double last = g[rows - 1];
                    double gammaC = Math.Exp(last), actualGammaC = chunkDecays[(bi * h + hi) * chunks + n];
                    Assert.IsTrue(Math.Abs(actualGammaC - gammaC) <= 2e-5 * gammaC, $"gamma_C of b {bi} h {hi} chunk {n}: {actualGammaC} against {gammaC}");
                    for (int i = 0; i < rows; i++)
                        for (int c = 0; c < dk; c++)
                        {
                            int at = ((bi * t + n * chunk + i) * h + hi) * dk + c;
                            double key = Math.Exp(last - g[i]) * k[at], query = Math.Exp(g[i]) * q[at];
                            Assert.IsTrue(Math.Abs(keysToEnd[at] - key) <= Math.Pow(2, -8) * Math.Abs(key), $"keysToEnd at row {n * chunk + i} b {bi} h {hi} column {c}: {keysToEnd[at]} against {key}");
                            Assert.IsTrue(Math.Abs(queriesFrom[at] - query) <= Math.Pow(2, -8) * Math.Abs(query), $"queriesFrom at row {n * chunk + i} b {bi} h {hi} column {c}: {queriesFrom[at]} against {query}");
                        }
                }
    }

    // The saving forward keeps W, U, U', X and the states; the backward from them equals the recomputing one.
    [TestMethod]
    public void BackwardFromSavedEqualsRecomputing()
    {
        var backend = Vulkan();
        var x = new Inputs(1, 129, 2, 40, 24, gated: true, 5);
        using var d = new Device(backend, x, DType.F32, withInitial: true);
        d.Backward(DeltaRuleAlgorithm.Chunked);
        var (dq, dk, dv, dbeta, dalpha, ds0) = (d.DQ.ToArray(), d.DK.ToArray(), d.DV.ToArray(), d.DBeta.ToArray(), d.DAlpha.ToArray(), d.DS0.ToArray());
        using (var saved = DeltaRule.ForwardSaving(d.Q, d.K, d.V, d.Beta, d.O, d.S0, d.Final, d.Alpha, Scale, DeltaRuleAlgorithm.Chunked))
        {
            Assert.IsNotNull(saved, "the gated chunked forward keeps its intermediates");
            d.Backward(DeltaRuleAlgorithm.Chunked, saved);
        }
        AssertForward(x, true, d, Tolerance(129, 2e-5), "saving forward");
        CollectionAssert.AreEqual(dq, d.DQ.ToArray(), "dq");
        CollectionAssert.AreEqual(dk, d.DK.ToArray(), "dk");
        CollectionAssert.AreEqual(dv, d.DV.ToArray(), "dv");
        CollectionAssert.AreEqual(dbeta, d.DBeta.ToArray(), "dbeta");
        CollectionAssert.AreEqual(dalpha, d.DAlpha.ToArray(), "dalpha");
        CollectionAssert.AreEqual(ds0, d.DS0.ToArray(), "dInitialState");
    }

    [TestMethod]
    public void GatedChunkedMatchesRecurrent()
    {
        var backend = Vulkan();
        var x = new Inputs(1, 140, 3, 24, 32, gated: true, 13);
        using var chunked = new Device(backend, x, DType.F32, withInitial: true);
        using var recurrent = new Device(backend, x, DType.F32, withInitial: true);
        chunked.Forward(DeltaRuleAlgorithm.Chunked);
        recurrent.Forward(DeltaRuleAlgorithm.Recurrent);
        double tol = Tolerance(140, 2e-5);
        TestData.AssertClose(TestData.ToDouble(recurrent.O.ToArray()), chunked.O.ToArray(), tol, tol, "o");
        TestData.AssertClose(TestData.ToDouble(recurrent.Final.ToArray()), chunked.Final.ToArray(), tol, tol, "final state");
        if (!backend.Capabilities.SharedFloatAtomicAdd) return; // the recurrent backward needs them
        chunked.Backward(DeltaRuleAlgorithm.Chunked);
        recurrent.Backward(DeltaRuleAlgorithm.Recurrent);
        tol = Tolerance(140, 5e-5);
        TestData.AssertClose(TestData.ToDouble(recurrent.DAlpha.ToArray()), chunked.DAlpha.ToArray(), tol, tol, "dalpha");
        TestData.AssertClose(TestData.ToDouble(recurrent.DK.ToArray()), chunked.DK.ToArray(), tol, tol, "dk");
    }
}

/// <summary>The gated rule's parallel stages on tensor cores (VulkanBackend.DeltaRuleGatedCoopMat, on by
/// default, the `_gated_bf16_cm` builds) and, where T is a multiple of 64 and Dk is 64 or 128, its state
/// passes on accumulator fragments (DeltaRuleGatedUsesStateFragments: the GATED builds of the ungated
/// fragment passes, from the keys and queries chunk_decay_scale.comp decays): o, the final state and
/// every gradient (dalpha included) within 1e-2 norm-wise of the float64 reference on the bf16 inputs,
/// as DeltaRuleTensorCoreTests holds the ungated stages, with operands rounded to bf16 (the default) and
/// split. Needs bf16 cooperative matrices (the GPU machine).</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class DeltaRuleGatedTensorCoreTests
{
    [TestMethod]
    [DataRow(2, 128, 3, 64, 64, true)]
    [DataRow(1, 192, 2, 128, 64, true)]
    [DataRow(1, 256, 2, 128, 128, true)]
    [DataRow(1, 130, 2, 48, 100, false)]
    public void GatedStagesOnTensorCoresMatchReference(int b, int t, int h, int dk, int dv, bool stateFragments)
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        using var settings = BackendSettings.Keep(backend);
        backend.DeltaRuleGatedCoopMat = true;
        Assert.IsTrue(backend.DeltaRuleGatedUsesCoopMat(DType.BF16), $"{backend.Capabilities.Name} does not run the gated stages on tensor cores");
        var x = new Inputs(b, t, h, dk, dv, gated: true, (ulong)(3 * t + dk + dv), DType.BF16);
        var (o, final) = x.Reference(DeltaRuleGatedChunkedVulkanTests.Scale, true).Forward(out _);
        var expected = x.Reference(DeltaRuleGatedChunkedVulkanTests.Scale, true).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));
        foreach (bool split in new[] { false, true })
        {
            backend.DeltaRuleCoopMatSplit = split;
            string setting = split ? "split" : "rounded";
            Assert.AreEqual(stateFragments, backend.DeltaRuleGatedUsesStateFragments(DType.BF16, new FastWeightShape(b, t, h, dk, dv)), $"state passes on fragments ({setting})");
            Assert.AreEqual(stateFragments && backend.DeltaRuleGatedOutputFragments, backend.DeltaRuleGatedUsesOutputFragments(DType.BF16, new FastWeightShape(b, t, h, dk, dv)),
                $"output stage and values gradient on fragments ({setting})");
            Assert.AreEqual(stateFragments && backend.DeltaRuleGatedGradQKFragments, backend.DeltaRuleGatedUsesGradQKFragments(DType.BF16, new FastWeightShape(b, t, h, dk, dv)),
                $"q, k gradients on fragments ({setting})");
            Assert.AreEqual(stateFragments && backend.DeltaRuleGatedWyFragments, backend.DeltaRuleGatedUsesWyFragments(DType.BF16, new FastWeightShape(b, t, h, dk, dv)),
                $"stage 1 on fragments ({setting})");
            Assert.AreEqual(stateFragments && backend.DeltaRuleGatedWyBackwardFragments, backend.DeltaRuleGatedUsesWyBackwardFragments(DType.BF16, new FastWeightShape(b, t, h, dk, dv)),
                $"WY backward on fragments ({setting})");
            using var d = new DeltaRuleGatedChunkedVulkanTests.Device(backend, x, DType.BF16, withInitial: true);
            d.Forward(DeltaRuleAlgorithm.Chunked);
            DeltaRuleTensorCoreTests.AssertNormwise(o, d.O.ToArray(), $"o ({setting})");
            DeltaRuleTensorCoreTests.AssertNormwise(final, d.Final.ToArray(), $"final state ({setting})");
            d.Backward(DeltaRuleAlgorithm.Chunked);
            DeltaRuleTensorCoreTests.AssertNormwise(expected.DQ, d.DQ.ToArray(), $"dq ({setting})");
            DeltaRuleTensorCoreTests.AssertNormwise(expected.DK, d.DK.ToArray(), $"dk ({setting})");
            DeltaRuleTensorCoreTests.AssertNormwise(expected.DV, d.DV.ToArray(), $"dv ({setting})");
            DeltaRuleTensorCoreTests.AssertNormwise(expected.DBeta, d.DBeta.ToArray(), $"dbeta ({setting})");
            DeltaRuleTensorCoreTests.AssertNormwise(expected.DAlpha, d.DAlpha.ToArray(), $"dalpha ({setting})");
            DeltaRuleTensorCoreTests.AssertNormwise(expected.DS0, d.DS0.ToArray(), $"dInitialState ({setting})");
        }
    }
}
