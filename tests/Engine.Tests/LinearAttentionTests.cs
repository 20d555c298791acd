using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class LinearAttentionTests
{
    /// <summary>Random inputs. Unnormalised: q, k, v in (-1, 1). Normalised: q, k in (0.05, 1), as
    /// after a positive feature map, so z_t . q_t is positive and grows with t. Always a random
    /// initial state (and normaliser) and random final-state gradients.</summary>
    private sealed class Inputs
    {
        public readonly int B, T, H, Dk, Dv;
        public readonly bool Normalise;
        public readonly float[] Q, K, V, S0, Z0, DO, DFinal, DFinalZ;

        public Inputs(int b, int t, int h, int dk, int dv, bool normalise, ulong seed)
        {
            (B, T, H, Dk, Dv, Normalise) = (b, t, h, dk, dv, normalise);
            float low = normalise ? 0.05f : -1f;
            Q = TestData.Uniform(b * t * h * dk, seed, low, 1f);
            K = TestData.Uniform(b * t * h * dk, seed + 1, low, 1f);
            V = TestData.Uniform(b * t * h * dv, seed + 2);
            S0 = TestData.Uniform(b * h * dv * dk, seed + 3, -0.5f, 0.5f);
            Z0 = TestData.Uniform(b * h * dk, seed + 4, 0.05f, 0.5f);
            DO = TestData.Uniform(b * t * h * dv, seed + 5);
            DFinal = TestData.Uniform(b * h * dv * dk, seed + 6);
            DFinalZ = TestData.Uniform(b * h * dk, seed + 7);
        }

        public LinearAttentionReference Reference(float scale) => new(B, T, H, Dk, Dv)
        {
            Q = TestData.ToDouble(Q), K = TestData.ToDouble(K), V = TestData.ToDouble(V),
            S0 = TestData.ToDouble(S0), Z0 = Normalise ? TestData.ToDouble(Z0) : [], Scale = scale, Normalise = Normalise,
        };

        public Shape Keys => new(B, T, H, Dk);
        public Shape Values => new(B, T, H, Dv);
        public Shape State => new(B, H, Dv, Dk);
        public Shape Normaliser => new(B, H, Dk);
    }

    /// <summary>fp32 against float64: sums of t Dk products with cancellation, so an element can be
    /// far smaller than the terms that formed it. The bound is rtol relative per element plus the
    /// same rtol times the RMS of the whole expected tensor (the size of a typical term).</summary>
    private static void Close(double[] expected, float[] actual, string what, double rtol = 1e-5)
    {
        double rms = Math.Sqrt(expected.Sum(e => e * e) / Math.Max(1, expected.Length));
        TestData.AssertClose(expected, actual, rtol, rtol * rms, what);
    }

    private static readonly (int B, int T, int H, int Dk, int Dv)[] SizeGrid =
        [(1, 1, 3, 16, 24), (2, 7, 3, 5, 9), (1, 63, 3, 33, 20), (2, 65, 3, 64, 48), (1, 200, 3, 40, 72), (1, 70, 2, 256, 200)];

    public static IEnumerable<object[]> Sizes() =>
        from backend in new[] { "cpu" }
        from size in SizeGrid
        from normalise in new[] { false, true }
        from algorithm in new[] { LinearAttentionAlgorithm.Recurrent, LinearAttentionAlgorithm.Chunked }
        select new object[] { backend, size.B, size.T, size.H, size.Dk, size.Dv, normalise, algorithm };

    // Vulkan: the recurrent kernels (state in registers; every case), and the chunked ones for the
    // unnormalised rule with head dims up to 128 (the normalised rule runs recurrent whatever is
    // asked). The last size (Dv 200 x 8 lanes) needs several workgroups per head.
    public static IEnumerable<object[]> VulkanSizes() =>
        from size in SizeGrid
        from normalise in new[] { false, true }
        from algorithm in new[] { LinearAttentionAlgorithm.Recurrent, LinearAttentionAlgorithm.Chunked }
        where algorithm == LinearAttentionAlgorithm.Recurrent || (!normalise && size.Dk <= 128 && size.Dv <= 128)
        select new object[] { "vulkan", size.B, size.T, size.H, size.Dk, size.Dv, normalise, algorithm };

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    [DynamicData(nameof(VulkanSizes))]
    public void ForwardMatchesReference(string backendName, int b, int t, int h, int dk, int dv, bool normalise, LinearAttentionAlgorithm algorithm)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(b, t, h, dk, dv, normalise, (ulong)(b * 1000 + t * 10 + h + dk + dv));
        const float scale = 0.7f;
        var (o, final, finalZ) = x.Reference(scale).Forward(out _);
        using var q = Tensor.FromArray(backend, x.Q, x.Keys);
        using var k = Tensor.FromArray(backend, x.K, x.Keys);
        using var v = Tensor.FromArray(backend, x.V, x.Values);
        using var s0 = Tensor.FromArray(backend, x.S0, x.State);
        using var z0 = normalise ? Tensor.FromArray(backend, x.Z0, x.Normaliser) : null;
        using var output = Tensor.Full(backend, x.Values, float.NaN);
        using var sT = Tensor.Full(backend, x.State, float.NaN);
        using var zT = normalise ? Tensor.Full(backend, x.Normaliser, float.NaN) : null;
        LinearAttention.Forward(q, k, v, output, s0, sT, normalise, z0, zT, scale, algorithm: algorithm);
        string what = $"{backendName} {algorithm} normalise={normalise} [{b}, {t}, {h}, {dk}/{dv}]";
        Close(o, output.ToArray(), $"{what} o");
        Close(final, sT.ToArray(), $"{what} final state");
        if (normalise) Close(finalZ, zT!.ToArray(), $"{what} final normaliser");
    }

    [TestMethod]
    [DynamicData(nameof(Sizes))]
    [DynamicData(nameof(VulkanSizes))]
    public void BackwardMatchesReference(string backendName, int b, int t, int h, int dk, int dv, bool normalise, LinearAttentionAlgorithm algorithm)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(b, t, h, dk, dv, normalise, (ulong)(b * 1000 + t * 10 + h + dk + dv + 99));
        const float scale = 0.7f;
        var expected = x.Reference(scale).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal), TestData.ToDouble(x.DFinalZ));
        using var q = Tensor.FromArray(backend, x.Q, x.Keys);
        using var k = Tensor.FromArray(backend, x.K, x.Keys);
        using var v = Tensor.FromArray(backend, x.V, x.Values);
        using var s0 = Tensor.FromArray(backend, x.S0, x.State);
        using var z0 = normalise ? Tensor.FromArray(backend, x.Z0, x.Normaliser) : null;
        using var dO = Tensor.FromArray(backend, x.DO, x.Values);
        using var dFinal = Tensor.FromArray(backend, x.DFinal, x.State);
        using var dFinalZ = normalise ? Tensor.FromArray(backend, x.DFinalZ, x.Normaliser) : null;
        using var dq = Tensor.Full(backend, x.Keys, float.NaN);
        using var dk_ = Tensor.Full(backend, x.Keys, float.NaN);
        using var dv_ = Tensor.Full(backend, x.Values, float.NaN);
        using var dS0 = Tensor.Full(backend, x.State, float.NaN);
        using var dZ0 = normalise ? Tensor.Full(backend, x.Normaliser, float.NaN) : null;
        LinearAttention.Backward(q, k, v, dO, dq, dk_, dv_, s0, dFinal, dS0, normalise, z0, dFinalZ, dZ0, scale, algorithm: algorithm);
        string what = $"{backendName} {algorithm} normalise={normalise} [{b}, {t}, {h}, {dk}/{dv}]";
        Close(expected.DQ, dq.ToArray(), $"{what} dq");
        Close(expected.DK, dk_.ToArray(), $"{what} dk");
        Close(expected.DV, dv_.ToArray(), $"{what} dv");
        Close(expected.DS0, dS0.ToArray(), $"{what} dS0");
        if (normalise) Close(expected.DZ0, dZ0!.ToArray(), $"{what} dz0");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void ReferenceBackwardMatchesFiniteDifferences(bool normalise)
    {
        var x = new Inputs(2, 5, 2, 3, 4, normalise, 42);
        var r = x.Reference(0.9f);
        double[] dO = TestData.ToDouble(x.DO), dFinal = TestData.ToDouble(x.DFinal), dFinalZ = TestData.ToDouble(x.DFinalZ);
        var analytic = r.Backward(dO, dFinal, dFinalZ);
        double Loss()
        {
            var (o, final, finalZ) = r.Forward(out _);
            double loss = o.Select((val, i) => val * dO[i]).Sum() + final.Select((val, i) => val * dFinal[i]).Sum();
            return normalise ? loss + finalZ.Select((val, i) => val * dFinalZ[i]).Sum() : loss;
        }
        void Check(double[] values, double[] grad, string name) => FiniteDifferences.AssertGradient(values, grad, Loss, name);
        Check(r.Q, analytic.DQ, "dq");
        Check(r.K, analytic.DK, "dk");
        Check(r.V, analytic.DV, "dv");
        Check(r.S0, analytic.DS0, "dS0");
        if (normalise) Check(r.Z0, analytic.DZ0, "dz0");
    }

    /// <summary>The two CPU algorithms against each other (not only each against float64), forward
    /// and backward, over several chunks and a short last one.</summary>
    [TestMethod]
    [DataRow("cpu", false)]
    [DataRow("cpu", true)]
    [DataRow("vulkan", false)]
    public void RecurrentAndChunkedAgree(string backendName, bool normalise)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(2, 200, 3, 24, 40, normalise, 5);
        using var q = Tensor.FromArray(backend, x.Q, x.Keys);
        using var k = Tensor.FromArray(backend, x.K, x.Keys);
        using var v = Tensor.FromArray(backend, x.V, x.Values);
        using var dO = Tensor.FromArray(backend, x.DO, x.Values);
        float[][] Run(LinearAttentionAlgorithm algorithm)
        {
            using var o = Tensor.Full(backend, x.Values, float.NaN);
            using var dq = Tensor.Full(backend, x.Keys, float.NaN);
            using var dk = Tensor.Full(backend, x.Keys, float.NaN);
            using var dv = Tensor.Full(backend, x.Values, float.NaN);
            LinearAttention.Forward(q, k, v, o, normalise: normalise, algorithm: algorithm);
            LinearAttention.Backward(q, k, v, dO, dq, dk, dv, normalise: normalise, algorithm: algorithm);
            return [o.ToArray(), dq.ToArray(), dk.ToArray(), dv.ToArray()];
        }
        var recurrent = Run(LinearAttentionAlgorithm.Recurrent);
        var chunked = Run(LinearAttentionAlgorithm.Chunked);
        string[] names = ["o", "dq", "dk", "dv"];
        // both sides carry fp32 error (hence 2e-5). With the normaliser o_t is invariant to the size of
        // q_t (up to eps), so dq_t . q_t = 0: dq = S^T dnum + dden z is the sum of two opposing terms
        // each 2-3 times its size (RMS, measured at these sizes) and carries their rounding: 3x.
        for (int i = 0; i < names.Length; i++)
            Close(TestData.ToDouble(recurrent[i]), chunked[i], $"chunked vs recurrent {names[i]}", normalise && names[i] == "dq" ? 6e-5 : 2e-5);
    }

    /// <summary>Running the first 90 tokens, then the last 110 from the state (and normaliser) the
    /// first half returned, equals one run of 200; and the backward chains the other way: the second
    /// half's initial-state gradients are the first half's final-state gradients.</summary>
    [TestMethod]
    [DataRow("cpu", false, LinearAttentionAlgorithm.Recurrent)]
    [DataRow("cpu", true, LinearAttentionAlgorithm.Recurrent)]
    [DataRow("cpu", false, LinearAttentionAlgorithm.Chunked)]
    [DataRow("cpu", true, LinearAttentionAlgorithm.Chunked)]
    [DataRow("vulkan", false, LinearAttentionAlgorithm.Recurrent)]
    [DataRow("vulkan", true, LinearAttentionAlgorithm.Recurrent)]
    [DataRow("vulkan", false, LinearAttentionAlgorithm.Chunked)]
    public void HalvesChainThroughTheState(string backendName, bool normalise, LinearAttentionAlgorithm algorithm)
    {
        var backend = TestBackends.Get(backendName);
        const int first = 90;
        var x = new Inputs(1, 200, 3, 20, 12, normalise, 11);
        var full = x.Reference(1f).Backward(TestData.ToDouble(x.DO), TestData.ToDouble(x.DFinal), TestData.ToDouble(x.DFinalZ));
        var (o, final, finalZ) = x.Reference(1f).Forward(out _);
        // [1, T, H, D] tensors split along T: rows of T are contiguous for batch 1
        Tensor Part(float[] values, int width, int start, int count) =>
            Tensor.FromArray(backend, values.AsSpan(start * x.H * width, count * x.H * width), new Shape(1, count, x.H, width));
        var halves = new[] { (Start: 0, Count: first), (Start: first, Count: x.T - first) };
        using var state = Tensor.FromArray(backend, x.S0, x.State);
        using var z = normalise ? Tensor.FromArray(backend, x.Z0, x.Normaliser) : null;
        var outputs = new List<float>();
        var states = new List<float[]>();
        var normalisers = new List<float[]?>();
        foreach (var (start, count) in halves)
        {
            states.Add(state.ToArray());
            normalisers.Add(z?.ToArray());
            using var q = Part(x.Q, x.Dk, start, count);
            using var k = Part(x.K, x.Dk, start, count);
            using var v = Part(x.V, x.Dv, start, count);
            using var oh = Tensor.Full(backend, v.Shape, float.NaN);
            LinearAttention.Forward(q, k, v, oh, state, state, normalise, z, z, algorithm: algorithm); // in place
            outputs.AddRange(oh.ToArray());
        }
        Close(o, outputs.ToArray(), "o of two halves");
        Close(final, state.ToArray(), "final state of two halves");
        if (normalise) Close(finalZ, z!.ToArray(), "final normaliser of two halves");

        using var dState = Tensor.FromArray(backend, x.DFinal, x.State);
        using var dz = normalise ? Tensor.FromArray(backend, x.DFinalZ, x.Normaliser) : null;
        var dqs = new float[x.Q.Length];
        var dks = new float[x.K.Length];
        var dvs = new float[x.V.Length];
        for (int half = 1; half >= 0; half--)
        {
            var (start, count) = halves[half];
            using var q = Part(x.Q, x.Dk, start, count);
            using var k = Part(x.K, x.Dk, start, count);
            using var v = Part(x.V, x.Dv, start, count);
            using var dO = Part(x.DO, x.Dv, start, count);
            using var s0 = Tensor.FromArray(backend, states[half], x.State);
            using var z0 = normalise ? Tensor.FromArray(backend, normalisers[half]!, x.Normaliser) : null;
            using var dq = Tensor.Full(backend, q.Shape, float.NaN);
            using var dk = Tensor.Full(backend, k.Shape, float.NaN);
            using var dv = Tensor.Full(backend, v.Shape, float.NaN);
            // dInitialState is dFinalState: read, then overwritten
            LinearAttention.Backward(q, k, v, dO, dq, dk, dv, s0, dState, dState, normalise, z0, dz, dz, algorithm: algorithm);
            dq.ToArray().CopyTo(dqs, start * x.H * x.Dk);
            dk.ToArray().CopyTo(dks, start * x.H * x.Dk);
            dv.ToArray().CopyTo(dvs, start * x.H * x.Dv);
        }
        Close(full.DQ, dqs, "dq of two halves");
        Close(full.DK, dks, "dk of two halves");
        Close(full.DV, dvs, "dv of two halves");
        Close(full.DS0, dState.ToArray(), "dS0 of two halves");
        if (normalise) Close(full.DZ0, dz!.ToArray(), "dz0 of two halves");
    }

    [TestMethod]
    [DataRow("cpu", false)]
    [DataRow("cpu", true)]
    [DataRow("vulkan", false)]
    [DataRow("vulkan", true)]
    public void StepRepeatedEqualsForward(string backendName, bool normalise)
    {
        var backend = TestBackends.Get(backendName);
        var x = new Inputs(2, 13, 3, 20, 12, normalise, 7);
        const float scale = 0.8f;
        var (o, final, finalZ) = x.Reference(scale).Forward(out _);
        using var state = Tensor.FromArray(backend, x.S0, x.State);
        using var z = normalise ? Tensor.FromArray(backend, x.Z0, x.Normaliser) : null;
        var outputs = new float[o.Length];
        for (int t = 0; t < x.T; t++)
        {
            float[] Slice(float[] src, int width) => Enumerable.Range(0, x.B).SelectMany(b => src.Skip((b * x.T + t) * x.H * width).Take(x.H * width)).ToArray();
            using var q = Tensor.FromArray(backend, Slice(x.Q, x.Dk), new Shape(x.B, x.H, x.Dk));
            using var k = Tensor.FromArray(backend, Slice(x.K, x.Dk), new Shape(x.B, x.H, x.Dk));
            using var v = Tensor.FromArray(backend, Slice(x.V, x.Dv), new Shape(x.B, x.H, x.Dv));
            using var ot = Tensor.Full(backend, new Shape(x.B, x.H, x.Dv), float.NaN);
            LinearAttention.Step(q, k, v, state, ot, z, scale);
            var values = ot.ToArray();
            for (int b = 0; b < x.B; b++) Array.Copy(values, b * x.H * x.Dv, outputs, (b * x.T + t) * x.H * x.Dv, x.H * x.Dv);
        }
        Close(o, outputs, "outputs of repeated steps");
        Close(final, state.ToArray(), "state after repeated steps");
        if (normalise) Close(finalZ, z!.ToArray(), "normaliser after repeated steps");
    }

    [TestMethod]
    public void RejectsBadInputs()
    {
        var cpu = TestBackends.Get("cpu");
        using var q = Tensor.Full(cpu, new Shape(2, 5, 3, 8), 0.5f);
        using var k7 = Tensor.Full(cpu, new Shape(2, 5, 3, 7), 0.5f);
        using var kT = Tensor.Full(cpu, new Shape(2, 4, 3, 8), 0.5f);
        using var v = Tensor.Full(cpu, new Shape(2, 5, 3, 6), 0.5f);
        using var vH = Tensor.Full(cpu, new Shape(2, 5, 2, 6), 0.5f);
        using var vT = Tensor.Full(cpu, new Shape(2, 6, 3, 6), 0.5f);
        using var o = Tensor.Full(cpu, new Shape(2, 5, 3, 6), 0.5f);
        using var wrongState = Tensor.Full(cpu, new Shape(2, 3, 8, 6), 0.5f);
        using var state = Tensor.Full(cpu, new Shape(2, 3, 6, 8), 0.5f);
        using var z = Tensor.Full(cpu, new Shape(2, 3, 8), 0.5f);
        using var wrongZ = Tensor.Full(cpu, new Shape(2, 3, 6), 0.5f);
        using var qHalf = Tensor.Full(cpu, new Shape(2, 5, 3, 8), 0.5f, DType.F16);
        string Message(Action action) => Assert.ThrowsExactly<OpArgumentException>(action).Message;

        Assert.AreEqual("LinearAttentionForward: argument 'k' has shape [2, 5, 3, 7] but q has shape [2, 5, 3, 8]: its key dimension differs from q's",
            Message(() => LinearAttention.Forward(q, k7, v, o)));
        Assert.AreEqual("LinearAttentionForward: argument 'k' has shape [2, 4, 3, 8] but q has shape [2, 5, 3, 8]: its batch, length or heads differ from q's",
            Message(() => LinearAttention.Forward(q, kT, v, o)));
        Assert.AreEqual("LinearAttentionForward: argument 'v' has shape [2, 5, 2, 6] but q has shape [2, 5, 3, 8]: batch, length and heads must match",
            Message(() => LinearAttention.Forward(q, q, vH, o)));
        Assert.AreEqual("LinearAttentionForward: argument 'v' has shape [2, 6, 3, 6] but q has shape [2, 5, 3, 8]: batch, length and heads must match",
            Message(() => LinearAttention.Forward(q, q, vT, o)));
        Assert.AreEqual("LinearAttentionForward: argument 'initialState' has shape [2, 3, 8, 6] but must have shape [2, 3, 6, 8] ([B, H, Dv, Dk])",
            Message(() => LinearAttention.Forward(q, q, v, o, wrongState)));
        Assert.AreEqual("LinearAttentionForward: argument 'finalState' has shape [2, 3, 8, 6] but must have shape [2, 3, 6, 8] ([B, H, Dv, Dk])",
            Message(() => LinearAttention.Forward(q, q, v, o, state, wrongState)));
        Assert.AreEqual("LinearAttentionForward: argument 'initialNormaliser' has shape [2, 3, 6] but must have shape [2, 3, 8] ([B, H, Dk])",
            Message(() => LinearAttention.Forward(q, q, v, o, normalise: true, initialNormaliser: wrongZ)));
        Assert.AreEqual("LinearAttentionForward: argument 'initialNormaliser' [2, 3, 8] was given but normalise is false",
            Message(() => LinearAttention.Forward(q, q, v, o, initialNormaliser: z)));
        Assert.AreEqual("LinearAttentionForward: argument 'k' [2, 5, 3, 8] is f32 but q [2, 5, 3, 8] is f16: q, k and v must share one dtype",
            Message(() => LinearAttention.Forward(qHalf, q, v, o)));
        Assert.AreEqual("LinearAttentionForward: argument 'output' [2, 5, 3, 6] overlaps input 'v' [2, 5, 3, 6]; this op cannot run in place",
            Message(() => LinearAttention.Forward(q, q, v, v)));
        Assert.AreEqual("LinearAttentionForward: argument 'scale' is NaN; it must be finite",
            Message(() => LinearAttention.Forward(q, q, v, o, scale: float.NaN)));
        Assert.AreEqual("LinearAttentionBackward: argument 'dInitialState' has shape [2, 3, 8, 6] but must have shape [2, 3, 6, 8] ([B, H, Dv, Dk])",
            Message(() => LinearAttention.Backward(q, q, v, o, Tensor.Zeros(cpu, q.Shape), Tensor.Zeros(cpu, q.Shape), Tensor.Zeros(cpu, v.Shape), dInitialState: wrongState)));
        Assert.AreEqual("LinearAttentionBackward: argument 'dq' has shape [2, 5, 3, 7] but must have shape [2, 5, 3, 8] ([B, T, H, Dk], as q)",
            Message(() => LinearAttention.Backward(q, q, v, o, k7, Tensor.Zeros(cpu, q.Shape), Tensor.Zeros(cpu, v.Shape))));
        Assert.AreEqual("LinearAttentionBackward: argument 'dOutput' has shape [2, 5, 2, 6] but must have shape [2, 5, 3, 6] ([B, T, H, Dv])",
            Message(() => LinearAttention.Backward(q, q, v, vH, Tensor.Zeros(cpu, q.Shape), Tensor.Zeros(cpu, q.Shape), Tensor.Zeros(cpu, v.Shape))));
        using var q3 = Tensor.Full(cpu, new Shape(2, 3, 8), 0.5f);
        using var v3 = Tensor.Full(cpu, new Shape(2, 3, 6), 0.5f);
        using var o3 = Tensor.Full(cpu, new Shape(2, 3, 6), 0.5f);
        Assert.AreEqual("LinearAttentionStep: argument 'state' has shape [2, 3, 8, 6] but must have shape [2, 3, 6, 8] ([B, H, Dv, Dk] from q and v)",
            Message(() => LinearAttention.Step(q3, q3, v3, wrongState, o3)));
        Assert.AreEqual("LinearAttentionStep: argument 'q' must have rank 3 but has shape [2, 5, 3, 8]",
            Message(() => LinearAttention.Step(q, q3, v3, state, o3)));
        Assert.AreEqual("LinearAttentionStep: argument 'normaliser' has shape [2, 3, 6] but must have shape [2, 3, 8] ([B, H, Dk], as q)",
            Message(() => LinearAttention.Step(q3, q3, v3, state, o3, wrongZ)));
    }
}
