using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;
using Inputs = FastWeights.Engine.Tests.DeltaRuleTests.Inputs;

namespace FastWeights.Engine.Tests;

/// <summary>The chunked (WY) delta rule, gated and not, against the float64 reference, the
/// recurrent kernel and finite differences. CPU only for now (the Vulkan chunked kernel is not in).
/// Tolerances (fp32 against float64, |err| &lt;= atol + rtol |ref|): rtol = atol = 1e-5 on o and the
/// final state; 1e-4 on the gradients, where dk and dalpha gather many terms (at 1e-5 the largest
/// sizes fail dk by up to ~3e-5: 0.42857 against 0.42858).</summary>
[TestClass]
public sealed class DeltaRuleChunkedTests
{
    private const float Scale = 0.7f;

    public static IEnumerable<object[]> Sizes() =>
        from size in new[] { (1, 1, 1, 16, 16), (2, 7, 3, 16, 24), (1, 63, 3, 33, 20), (1, 64, 2, 32, 32), (2, 65, 3, 64, 48), (1, 200, 2, 33, 40), (1, 130, 1, 128, 96) }
        from gated in new[] { false, true }
        from initial in new[] { true, false }
        select new object[] { size.Item1, size.Item2, size.Item3, size.Item4, size.Item5, gated, initial };

    private static ulong Seed(int b, int t, int h, int dk, int dv, bool gated, bool initial) =>
        (ulong)(b * 7919 + t * 104729 + h * 31 + dk * 101 + dv * 13 + (gated ? 5 : 0) + (initial ? 3 : 0));

    private static DeltaRuleReference Reference(Inputs x, bool initial)
    {
        var r = x.Reference(Scale);
        if (!initial) r.S0 = [];
        return r;
    }

    /// <summary>The inputs as CPU tensors (S_0 only when <c>initial</c>).</summary>
    private sealed class InputTensors(Inputs x, bool initial) : IDisposable
    {
        public readonly IBackend Cpu = TestBackends.Get("cpu");
        public Tensor Q => _q ??= Tensor.FromArray(Cpu, x.Q, x.Keys);
        public Tensor K => _k ??= Tensor.FromArray(Cpu, x.K, x.Keys);
        public Tensor V => _v ??= Tensor.FromArray(Cpu, x.V, x.Values);
        public Tensor Beta => _beta ??= Tensor.FromArray(Cpu, x.Beta, x.PerToken);
        public Tensor? Alpha => x.Alpha is null ? null : _alpha ??= Tensor.FromArray(Cpu, x.Alpha, x.PerToken);
        public Tensor? S0 => initial ? _s0 ??= Tensor.FromArray(Cpu, x.S0, x.State) : null;
        private Tensor? _q, _k, _v, _beta, _alpha, _s0;

        public void Dispose()
        {
            foreach (var t in new[] { _q, _k, _v, _beta, _alpha, _s0 }) t?.Dispose();
        }
    }

    /// <summary>Forward through the CPU backend: (o, final state).</summary>
    internal static (float[] O, float[] Final) Forward(Inputs x, bool initial, DeltaRuleAlgorithm algorithm)
    {
        using var t = new InputTensors(x, initial);
        using var output = Tensor.Full(t.Cpu, x.Values, float.NaN);
        using var final = Tensor.Full(t.Cpu, x.State, float.NaN);
        DeltaRule.Forward(t.Q, t.K, t.V, t.Beta, output, t.S0, final, t.Alpha, Scale, algorithm);
        return (output.ToArray(), final.ToArray());
    }

    internal sealed record Grads(float[] DQ, float[] DK, float[] DV, float[] DBeta, float[]? DAlpha, float[] DS0);

    internal static Grads Backward(Inputs x, bool initial, DeltaRuleAlgorithm algorithm, bool withDFinal = true)
    {
        using var t = new InputTensors(x, initial);
        var cpu = t.Cpu;
        using var dO = Tensor.FromArray(cpu, x.DO, x.Values);
        using var dFinal = withDFinal ? Tensor.FromArray(cpu, x.DFinal, x.State) : null;
        using var dq = Tensor.Full(cpu, x.Keys, float.NaN);
        using var dk = Tensor.Full(cpu, x.Keys, float.NaN);
        using var dv = Tensor.Full(cpu, x.Values, float.NaN);
        using var dbeta = Tensor.Full(cpu, x.PerToken, float.NaN);
        using var dalpha = x.Alpha is null ? null : Tensor.Full(cpu, x.PerToken, float.NaN);
        using var dS0 = Tensor.Full(cpu, x.State, float.NaN);
        DeltaRule.Backward(t.Q, t.K, t.V, t.Beta, dO, dq, dk, dv, dbeta, t.S0, dFinal, dS0, t.Alpha, dalpha, Scale, algorithm);
        return new Grads(dq.ToArray(), dk.ToArray(), dv.ToArray(), dbeta.ToArray(), dalpha?.ToArray(), dS0.ToArray());
    }

    /// <summary>Every gradient within rtol = atol = tol (dalpha when the run was gated).</summary>
    private static void AssertGradients((double[] DQ, double[] DK, double[] DV, double[] DBeta, double[] DAlpha, double[] DS0) expected, Grads actual, double tol, string what)
    {
        TestData.AssertClose(expected.DQ, actual.DQ, tol, tol, $"{what} dq");
        TestData.AssertClose(expected.DK, actual.DK, tol, tol, $"{what} dk");
        TestData.AssertClose(expected.DV, actual.DV, tol, tol, $"{what} dv");
        TestData.AssertClose(expected.DBeta, actual.DBeta, tol, tol, $"{what} dbeta");
        TestData.AssertClose(expected.DS0, actual.DS0, tol, tol, $"{what} dS0");
        if (actual.DAlpha is not null) TestData.AssertClose(expected.DAlpha, actual.DAlpha, tol, tol, $"{what} dalpha");
    }

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    public void ForwardMatchesReference(int b, int t, int h, int dk, int dv, bool gated, bool initial)
    {
        var x = new Inputs(b, t, h, dk, dv, gated, Seed(b, t, h, dk, dv, gated, initial));
        var (o, final) = Reference(x, initial).Forward(out _);
        var (actualO, actualFinal) = Forward(x, initial, DeltaRuleAlgorithm.Chunked);
        double tol = 1e-5;
        TestData.AssertClose(o, actualO, tol, tol, "chunked o");
        TestData.AssertClose(final, actualFinal, tol, tol, "chunked final state");
    }

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    public void BackwardMatchesReference(int b, int t, int h, int dk, int dv, bool gated, bool initial)
    {
        var x = new Inputs(b, t, h, dk, dv, gated, Seed(b, t, h, dk, dv, gated, initial) + 17);
        var expected = Reference(x, initial).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));
        var actual = Backward(x, initial, DeltaRuleAlgorithm.Chunked);
        AssertGradients(expected, actual, 1e-4, "chunked");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void BackwardWithoutFinalStateGradient(bool gated)
    {
        var x = new Inputs(2, 150, 3, 24, 40, gated, 314);
        var expected = Reference(x, true).Backward(TestData.ToDouble(x.DO), null);
        var actual = Backward(x, true, DeltaRuleAlgorithm.Chunked, withDFinal: false);
        AssertGradients(expected, actual, 1e-4, "chunked, no dFinal");
    }

    /// <summary>Strong decay (alpha down to 0.02): the in-chunk products of alpha underflow fp32
    /// (0.02^64 ~ 1e-109), so gamma_i is 0 for late rows while Gamma_ij and tail_i, built from
    /// differences of log-decays, stay exact; no 0/0 may appear.</summary>
    [TestMethod]
    public void GatedWithUnderflowingDecayMatchesReference()
    {
        var x = new Inputs(1, 150, 2, 24, 20, true, 4242);
        TestData.Uniform(x.Alpha!.Length, 4243, 0.02f, 1f).CopyTo(x.Alpha, 0);
        var reference = Reference(x, true);
        var (o, final) = reference.Forward(out _);
        var (actualO, actualFinal) = Forward(x, true, DeltaRuleAlgorithm.Chunked);
        TestData.AssertClose(o, actualO, 1e-5, 1e-5, "o");
        TestData.AssertClose(final, actualFinal, 1e-5, 1e-5, "final state");
        var expected = reference.Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal));
        AssertGradients(expected, Backward(x, true, DeltaRuleAlgorithm.Chunked), 1e-4, "strong decay");
    }

    /// <summary>Chunked and recurrent fp32 kernels agree, forward and backward.</summary>
    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void ChunkedMatchesRecurrent(bool gated)
    {
        var x = new Inputs(2, 300, 2, 64, 64, gated, 99);
        var (o, final) = Forward(x, true, DeltaRuleAlgorithm.Recurrent);
        var (co, cfinal) = Forward(x, true, DeltaRuleAlgorithm.Chunked);
        double tol = 1e-5;
        TestData.AssertClose(TestData.ToDouble(o), co, tol, tol, "o");
        TestData.AssertClose(TestData.ToDouble(final), cfinal, tol, tol, "final state");
        var r = Backward(x, true, DeltaRuleAlgorithm.Recurrent);
        var c = Backward(x, true, DeltaRuleAlgorithm.Chunked);
        var expected = (TestData.ToDouble(r.DQ), TestData.ToDouble(r.DK), TestData.ToDouble(r.DV), TestData.ToDouble(r.DBeta),
            r.DAlpha is null ? [] : TestData.ToDouble(r.DAlpha), TestData.ToDouble(r.DS0));
        AssertGradients(expected, c, 1e-4, "chunked vs recurrent");
    }

    /// <summary>Two runs chained through the state equal one run over the whole sequence, the split
    /// inside a chunk. Forward: the second half's initial state is the first half's final state,
    /// updated in place. Backward, in reverse: the second half's dInitialState is the first half's
    /// dFinalState.</summary>
    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void HalvesChainedThroughTheStateEqualOneRun(bool gated)
    {
        var x = new Inputs(2, 190, 3, 20, 28, gated, 2024);
        var (o, final) = Forward(x, true, DeltaRuleAlgorithm.Chunked);
        var whole = Backward(x, true, DeltaRuleAlgorithm.Chunked);
        var cpu = TestBackends.Get("cpu");
        var halves = new[] { (Start: 0, Length: 77), (Start: 77, Length: x.T - 77) };
        using var state = Tensor.FromArray(cpu, x.S0, x.State);
        var startStates = new List<float[]>();
        var chained = new float[o.Length];
        foreach (var (start, length) in halves)
        {
            startStates.Add(state.ToArray());
            using var half = new HalfTensors(x, start, length);
            using var output = Tensor.Full(cpu, half.Values, float.NaN);
            DeltaRule.Forward(half.Q, half.K, half.V, half.Beta, output, state, state, half.Alpha, Scale, DeltaRuleAlgorithm.Chunked);
            half.Scatter(output.ToArray(), chained, x.Dv);
        }
        TestData.AssertClose(TestData.ToDouble(o), chained, 1e-5, 1e-5, "outputs of the chained halves");
        TestData.AssertClose(TestData.ToDouble(final), state.ToArray(), 1e-5, 1e-5, "state after the chained halves");

        var g = new Grads(new float[x.Q.Length], new float[x.K.Length], new float[x.V.Length], new float[x.Beta.Length], gated ? new float[x.Beta.Length] : null, []);
        float[] dState = x.DFinal;
        for (int part = halves.Length - 1; part >= 0; part--)
        {
            var (start, length) = halves[part];
            using var half = new HalfTensors(x, start, length);
            using var s0 = Tensor.FromArray(cpu, startStates[part], x.State);
            using var dFinal = Tensor.FromArray(cpu, dState, x.State);
            using var dO = Tensor.FromArray(cpu, half.Part(x.DO, x.Dv), half.Values);
            using var dq = Tensor.Full(cpu, half.Keys, float.NaN);
            using var dk = Tensor.Full(cpu, half.Keys, float.NaN);
            using var dv = Tensor.Full(cpu, half.Values, float.NaN);
            using var dbeta = Tensor.Full(cpu, half.PerToken, float.NaN);
            using var dalpha = gated ? Tensor.Full(cpu, half.PerToken, float.NaN) : null;
            using var dS0 = Tensor.Full(cpu, x.State, float.NaN);
            DeltaRule.Backward(half.Q, half.K, half.V, half.Beta, dO, dq, dk, dv, dbeta, s0, dFinal, dS0, half.Alpha, dalpha, Scale, DeltaRuleAlgorithm.Chunked);
            half.Scatter(dq.ToArray(), g.DQ, x.Dk);
            half.Scatter(dk.ToArray(), g.DK, x.Dk);
            half.Scatter(dv.ToArray(), g.DV, x.Dv);
            half.Scatter(dbeta.ToArray(), g.DBeta, 1);
            if (dalpha is not null) half.Scatter(dalpha.ToArray(), g.DAlpha!, 1);
            dState = dS0.ToArray();
        }
        var expected = (TestData.ToDouble(whole.DQ), TestData.ToDouble(whole.DK), TestData.ToDouble(whole.DV), TestData.ToDouble(whole.DBeta),
            whole.DAlpha is null ? [] : TestData.ToDouble(whole.DAlpha), TestData.ToDouble(whole.DS0));
        AssertGradients(expected, g with { DS0 = dState }, 1e-4, "gradients of the chained halves");
    }

    /// <summary>Tokens start .. start + length of every batch row as tensors of their own.</summary>
    private sealed class HalfTensors(Inputs x, int start, int length) : IDisposable
    {
        private readonly IBackend _cpu = TestBackends.Get("cpu");
        public Shape Keys => new(x.B, length, x.H, x.Dk);
        public Shape Values => new(x.B, length, x.H, x.Dv);
        public Shape PerToken => new(x.B, length, x.H);
        public Tensor Q => _q ??= Tensor.FromArray(_cpu, Part(x.Q, x.Dk), Keys);
        public Tensor K => _k ??= Tensor.FromArray(_cpu, Part(x.K, x.Dk), Keys);
        public Tensor V => _v ??= Tensor.FromArray(_cpu, Part(x.V, x.Dv), Values);
        public Tensor Beta => _beta ??= Tensor.FromArray(_cpu, Part(x.Beta, 1), PerToken);
        public Tensor? Alpha => x.Alpha is null ? null : _alpha ??= Tensor.FromArray(_cpu, Part(x.Alpha, 1), PerToken);
        private Tensor? _q, _k, _v, _beta, _alpha;

        public float[] Part(float[] whole, int width) =>
            Enumerable.Range(0, x.B).SelectMany(b => whole.Skip((b * x.T + start) * x.H * width).Take(length * x.H * width)).ToArray();

        /// <summary>The inverse of Part: this half's rows back into the whole sequence's array.</summary>
        public void Scatter(float[] part, float[] whole, int width)
        {
            for (int b = 0; b < x.B; b++) Array.Copy(part, b * length * x.H * width, whole, (b * x.T + start) * x.H * width, length * x.H * width);
        }

        public void Dispose()
        {
            foreach (var t in new[] { _q, _k, _v, _beta, _alpha }) t?.Dispose();
        }
    }

    /// <summary>The chunked backward against central differences of the chunked forward itself
    /// (independent of the reference): along a random direction in every input (q, k, v, beta,
    /// alpha, S_0), L = &lt;dO, o&gt; + &lt;dFinal, S_T&gt; in float64 from the fp32 outputs.</summary>
    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void BackwardMatchesFiniteDifferencesOfChunkedForward(bool gated)
    {
        var x = new Inputs(1, 140, 2, 16, 12, gated, 77);
        var grads = Backward(x, true, DeltaRuleAlgorithm.Chunked);
        var inputs = new List<(float[] Values, float[] Grad)> { (x.Q, grads.DQ), (x.K, grads.DK), (x.V, grads.DV), (x.Beta, grads.DBeta), (x.S0, grads.DS0) };
        if (gated) inputs.Add((x.Alpha!, grads.DAlpha!));
        var directions = inputs.Select((input, i) => TestData.Uniform(input.Values.Length, 500 + (ulong)i, -1f, 1f)).ToList();
        double analytic = 0;
        for (int i = 0; i < inputs.Count; i++)
            for (int j = 0; j < inputs[i].Values.Length; j++) analytic += (double)inputs[i].Grad[j] * directions[i][j];
        var originals = inputs.Select(input => (float[])input.Values.Clone()).ToList();
        double Loss(float step)
        {
            for (int i = 0; i < inputs.Count; i++)
                for (int j = 0; j < inputs[i].Values.Length; j++) inputs[i].Values[j] = originals[i][j] + step * directions[i][j];
            var (o, final) = Forward(x, true, DeltaRuleAlgorithm.Chunked);
            double loss = 0;
            for (int j = 0; j < o.Length; j++) loss += (double)o[j] * x.DO[j];
            for (int j = 0; j < final.Length; j++) loss += (double)final[j] * x.DFinal[j];
            return loss;
        }
        const float h = 1e-3f; // beta in (0.1, 1.9), alpha in (0.5, 1): a step of 1e-3 keeps both in range
        double numeric = (Loss(h) - Loss(-h)) / (2 * h);
        Loss(0);
        Assert.AreEqual(analytic, numeric, 2e-3 * Math.Max(1, Math.Abs(analytic)), $"directional derivative (analytic {analytic}, numeric {numeric})");
    }

    /// <summary>Auto takes the chunked form from CpuBackend.ChunkedDeltaRuleMinSteps tokens on: the
    /// results agree with an explicit Chunked run bit for bit there, and with Recurrent below.</summary>
    [TestMethod]
    public void AutoChoosesByLength()
    {
        int longer = Cpu.CpuBackend.ChunkedDeltaRuleMinSteps, shorter = longer - 1;
        var xl = new Inputs(1, longer, 2, 16, 16, false, 5);
        CollectionAssert.AreEqual(Forward(xl, true, DeltaRuleAlgorithm.Chunked).O, Forward(xl, true, DeltaRuleAlgorithm.Auto).O, "long: Auto is chunked");
        var xs = new Inputs(1, shorter, 2, 16, 16, false, 6);
        CollectionAssert.AreEqual(Forward(xs, true, DeltaRuleAlgorithm.Recurrent).O, Forward(xs, true, DeltaRuleAlgorithm.Auto).O, "short: Auto is recurrent");
    }
}
