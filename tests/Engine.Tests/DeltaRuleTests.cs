using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class DeltaRuleTests
{
    /// <summary>Random inputs as DeltaNet sees them: k L2-normalised per token, beta in (0.1, 1.9),
    /// alpha in (0.5, 1) when gated, a random initial state, dO and dFinal; optionally rounded
    /// through f16/bf16 (the reference then sees the rounded values).</summary>
    internal sealed class Inputs
    {
        public readonly int B, T, H, Dk, Dv;
        public readonly float[] Q, K, V, Beta, S0, DO, DFinal;
        public readonly float[]? Alpha;

        public Inputs(int b, int t, int h, int dk, int dv, bool gated, ulong seed, DType dtype = DType.F32)
        {
            (B, T, H, Dk, Dv) = (b, t, h, dk, dv);
            Q = TestData.Uniform(b * t * h * dk, seed);
            K = TestData.Uniform(b * t * h * dk, seed + 1);
            for (int i = 0; i < b * t * h; i++)
            {
                double norm = Math.Sqrt(Enumerable.Range(0, dk).Sum(j => (double)K[i * dk + j] * K[i * dk + j]));
                for (int j = 0; j < dk; j++) K[i * dk + j] = (float)(K[i * dk + j] / norm);
            }
            V = TestData.Uniform(b * t * h * dv, seed + 2);
            Beta = TestData.Uniform(b * t * h, seed + 3, 0.1f, 1.9f);
            Alpha = gated ? TestData.Uniform(b * t * h, seed + 4, 0.5f, 1f) : null;
            S0 = TestData.Uniform(b * h * dv * dk, seed + 5, -0.5f, 0.5f);
            DO = TestData.Uniform(b * t * h * dv, seed + 6);
            DFinal = TestData.Uniform(b * h * dv * dk, seed + 7);
            if (dtype != DType.F32)
            {
                Q = TestData.RoundTrip(Q, dtype);
                K = TestData.RoundTrip(K, dtype);
                V = TestData.RoundTrip(V, dtype);
                Beta = TestData.RoundTrip(Beta, dtype);
                if (Alpha is not null) Alpha = TestData.RoundTrip(Alpha, dtype);
            }
        }

        /// <summary>The float64 reference of these inputs; without the initial state when
        /// <paramref name="withInitial"/> is false.</summary>
        public DeltaRuleReference Reference(float scale, bool withInitial = true) => new(B, T, H, Dk, Dv)
        {
            Q = TestData.ToDouble(Q), K = TestData.ToDouble(K), V = TestData.ToDouble(V), Beta = TestData.ToDouble(Beta),
            Alpha = Alpha is null ? null : TestData.ToDouble(Alpha), S0 = withInitial ? TestData.ToDouble(S0) : [], Scale = scale,
        };

        public Shape Keys => new(B, T, H, Dk);
        public Shape Values => new(B, T, H, Dv);
        public Shape PerToken => new(B, T, H);
        public Shape State => new(B, H, Dv, Dk);
    }

    public static IEnumerable<object[]> Sizes() =>
        from backend in new[] { "cpu", "vulkan" }
        from size in new[] { (1, 1, 1, 16, 16), (2, 7, 3, 16, 24), (1, 63, 3, 33, 20), (1, 65, 2, 64, 64), (2, 200, 1, 32, 48), (1, 9, 2, 128, 128) }
        from gated in new[] { false, true }
        select new object[] { backend, size.Item1, size.Item2, size.Item3, size.Item4, size.Item5, gated };

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    public void ForwardMatchesReference(string backendName, int b, int t, int h, int dk, int dv, bool gated)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(b, t, h, dk, dv, gated, (ulong)(b * 1000 + t * 10 + h + dk + dv));
        const float scale = 0.7f;
        var (o, final) = x.Reference(scale).Forward(out _);
        using var q = Tensor.FromArray(backend, x.Q, x.Keys);
        using var k = Tensor.FromArray(backend, x.K, x.Keys);
        using var v = Tensor.FromArray(backend, x.V, x.Values);
        using var beta = Tensor.FromArray(backend, x.Beta, x.PerToken);
        using var alpha = x.Alpha is null ? null : Tensor.FromArray(backend, x.Alpha, x.PerToken);
        using var s0 = Tensor.FromArray(backend, x.S0, x.State);
        using var output = Tensor.Full(backend, x.Values, float.NaN);
        using var sT = Tensor.Full(backend, x.State, float.NaN);
        DeltaRule.Forward(q, k, v, beta, output, s0, sT, alpha, scale);
        // fp32 error grows with the number of steps the state has absorbed
        double tol = 2e-5 * Math.Sqrt(t);
        TestData.AssertClose(o, output.ToArray(), tol, tol, $"{backendName} o");
        TestData.AssertClose(final, sT.ToArray(), tol, tol, $"{backendName} final state");
    }

    public static IEnumerable<object[]> BackwardSizes() => Sizes();

    [TestMethod]
    [DynamicData(nameof(BackwardSizes))]
    public void BackwardMatchesReference(string backendName, int b, int t, int h, int dk, int dv, bool gated)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(b, t, h, dk, dv, gated, (ulong)(b * 1000 + t * 10 + h + dk + dv + 99));
        const float scale = 0.7f;
        var expected = x.Reference(scale).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));
        using var q = Tensor.FromArray(backend, x.Q, x.Keys);
        using var k = Tensor.FromArray(backend, x.K, x.Keys);
        using var v = Tensor.FromArray(backend, x.V, x.Values);
        using var beta = Tensor.FromArray(backend, x.Beta, x.PerToken);
        using var alpha = x.Alpha is null ? null : Tensor.FromArray(backend, x.Alpha, x.PerToken);
        using var s0 = Tensor.FromArray(backend, x.S0, x.State);
        using var dO = Tensor.FromArray(backend, x.DO, x.Values);
        using var dFinal = Tensor.FromArray(backend, x.DFinal, x.State);
        using var dq = Tensor.Full(backend, x.Keys, float.NaN);
        using var dk_ = Tensor.Full(backend, x.Keys, float.NaN);
        using var dv_ = Tensor.Full(backend, x.Values, float.NaN);
        using var dbeta = Tensor.Full(backend, x.PerToken, float.NaN);
        using var dalpha = gated ? Tensor.Full(backend, x.PerToken, float.NaN) : null;
        using var dS0 = Tensor.Full(backend, x.State, float.NaN);
        DeltaRule.Backward(q, k, v, beta, dO, dq, dk_, dv_, dbeta, s0, dFinal, dS0, alpha, dalpha, scale);
        double tol = 5e-5 * Math.Sqrt(t);
        TestData.AssertClose(expected.DQ, dq.ToArray(), tol, tol, "dq");
        TestData.AssertClose(expected.DK, dk_.ToArray(), tol, tol, "dk");
        TestData.AssertClose(expected.DV, dv_.ToArray(), tol, tol, "dv");
        TestData.AssertClose(expected.DBeta, dbeta.ToArray(), tol, tol, "dbeta");
        TestData.AssertClose(expected.DS0, dS0.ToArray(), tol, tol, "dS0");
        if (gated) TestData.AssertClose(expected.DAlpha, dalpha!.ToArray(), tol, tol, "dalpha");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void ReferenceBackwardMatchesFiniteDifferences(bool gated)
    {
        var x = new Inputs(2, 5, 2, 3, 4, gated, 42);
        var r = x.Reference(0.9f);
        double[] dO = TestData.ToDouble(x.DO), dFinal = TestData.ToDouble(x.DFinal);
        var analytic = r.Backward(dO, dFinal);
        double Loss()
        {
            var (o, final) = r.Forward(out _);
            return o.Select((val, i) => val * dO[i]).Sum() + final.Select((val, i) => val * dFinal[i]).Sum();
        }
        void Check(double[] values, double[] grad, string name) => FiniteDifferences.AssertGradient(values, grad, Loss, name);
        Check(r.Q, analytic.DQ, "dq");
        Check(r.K, analytic.DK, "dk");
        Check(r.V, analytic.DV, "dv");
        Check(r.Beta, analytic.DBeta, "dbeta");
        Check(r.S0, analytic.DS0, "dS0");
        if (gated) Check(r.Alpha!, analytic.DAlpha, "dalpha");
    }

    [TestMethod]
    [DataRow("cpu", false)]
    [DataRow("cpu", true)]
    [DataRow("vulkan", false)]
    [DataRow("vulkan", true)]
    public void StepRepeatedEqualsForwardAndHalvesChain(string backendName, bool gated)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(2, 12, 3, 20, 12, gated, 7);
        var (o, final) = x.Reference(1f).Forward(out _);
        using var state = Tensor.FromArray(backend, x.S0, x.State);
        var outputs = new float[o.Length];
        for (int t = 0; t < x.T; t++)
        {
            float[] Slice(float[] src, int width) => Enumerable.Range(0, x.B).SelectMany(b => src.Skip(((b * x.T + t) * x.H) * width).Take(x.H * width)).ToArray();
            using var q = Tensor.FromArray(backend, Slice(x.Q, x.Dk), new Shape(x.B, x.H, x.Dk));
            using var k = Tensor.FromArray(backend, Slice(x.K, x.Dk), new Shape(x.B, x.H, x.Dk));
            using var v = Tensor.FromArray(backend, Slice(x.V, x.Dv), new Shape(x.B, x.H, x.Dv));
            using var beta = Tensor.FromArray(backend, Slice(x.Beta, 1), new Shape(x.B, x.H));
            using var alpha = x.Alpha is null ? null : Tensor.FromArray(backend, Slice(x.Alpha, 1), new Shape(x.B, x.H));
            using var ot = Tensor.Full(backend, new Shape(x.B, x.H, x.Dv), float.NaN);
            DeltaRule.Step(q, k, v, beta, state, ot, alpha);
            var values = ot.ToArray();
            for (int b = 0; b < x.B; b++) Array.Copy(values, b * x.H * x.Dv, outputs, ((b * x.T + t) * x.H) * x.Dv, x.H * x.Dv);
        }
        TestData.AssertClose(o, outputs, 1e-4, 1e-4, "outputs of repeated steps");
        TestData.AssertClose(final, state.ToArray(), 1e-4, 1e-4, "state after repeated steps");
    }

    [TestMethod]
    public void RejectsBadInputs()
    {
        var cpu = TestBackends.Get("cpu");
        using var q = Tensor.Zeros(cpu, new Shape(2, 5, 3, 8));
        using var k7 = Tensor.Zeros(cpu, new Shape(2, 5, 3, 7));
        using var kT = Tensor.Zeros(cpu, new Shape(2, 4, 3, 8));
        using var v = Tensor.Zeros(cpu, new Shape(2, 5, 3, 6));
        using var vH = Tensor.Zeros(cpu, new Shape(2, 5, 2, 6));
        using var beta = Tensor.Full(cpu, new Shape(2, 5, 3), 0.5f);
        using var badBeta = Tensor.Full(cpu, new Shape(2, 5, 3), 2.5f);
        using var o = Tensor.Zeros(cpu, new Shape(2, 5, 3, 6));
        using var wrongState = Tensor.Zeros(cpu, new Shape(2, 3, 8, 6));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(q, k7, v, beta, o)).Message, "DeltaRuleForward: argument 'k' has shape [2, 5, 3, 7] but q has shape [2, 5, 3, 8]: its key dimension differs from q's");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(q, kT, v, beta, o)).Message, "argument 'k' has shape [2, 4, 3, 8] but q has shape [2, 5, 3, 8]: its batch, length or heads differ");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(q, q, vH, beta, o)).Message, "DeltaRuleForward: argument 'v' has shape [2, 5, 2, 6] but q has shape [2, 5, 3, 8]");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(q, q, v, beta, o, wrongState)).Message, "DeltaRuleForward: argument 'initialState' has shape [2, 3, 8, 6] but must have shape [2, 3, 6, 8]");
        bool keep = EngineOptions.CheckValues;
        EngineOptions.CheckValues = true;
        try
        {
            StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => DeltaRule.Forward(q, q, v, badBeta, o)).Message, "DeltaRuleForward: argument 'beta' [2, 5, 3] holds 2.5 at flat index 0, outside (0, 2)");
        }
        finally { EngineOptions.CheckValues = keep; }
    }
}
