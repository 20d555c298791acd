using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class RnnTests
{
    private sealed record Case(RnnCell Cell, int B, int T, int H, int Dh, ulong Seed)
    {
        public int G => Cell.Gates();
        public int Hd => H * Dh;
        public float[] X => TestData.Uniform(B * T * G * Hd, Seed, -1.5f, 1.5f);
        public float[] R => TestData.Uniform(H * G * Dh * Dh, Seed + 1, -0.6f, 0.6f);
        public float[] Bias => TestData.Uniform(G * Hd, Seed + 2, -0.5f, 0.5f);
        public float[][] Initial => Rnn.StateNames(Cell).Select((name, i) => name == "n"
            ? TestData.Uniform(B * Hd, Seed + 10 + (ulong)i, 0.5f, 1.5f)        // a normaliser is positive
            : name == "m" ? TestData.Uniform(B * Hd, Seed + 10 + (ulong)i, -0.5f, 0.5f)
            : TestData.Uniform(B * Hd, Seed + 10 + (ulong)i)).ToArray();

        public RnnReference Reference() => new(Cell, B, T, H, Dh)
        {
            X = TestData.ToDouble(X), R = TestData.ToDouble(R), Bias = TestData.ToDouble(Bias),
            Initial = Initial.Select(TestData.ToDouble).ToArray(),
        };
    }

    public static IEnumerable<object[]> ForwardCases() =>
        from backend in new[] { "cpu", "vulkan" }
        from cell in Enum.GetValues<RnnCell>()
        from size in new[] { (1, 1, 1, 5), (2, 2, 3, 13), (3, 37, 1, 32), (9, 5, 2, 64) }
        select new object[] { backend, cell, size.Item1, size.Item2, size.Item3, size.Item4 };

    [TestMethod]
    [DynamicData(nameof(ForwardCases))]
    public void ForwardMatchesReference(string backendName, RnnCell cell, int b, int t, int h, int dh)
    {
        var backend = TestBackends.Get(backendName);
        var c = new Case(cell, b, t, h, dh, (ulong)(b * 100 + t * 10 + h + dh + (int)cell * 1000));
        var (y, final) = c.Reference().Forward();
        using var x = Tensor.FromArray(backend, c.X, new Shape(b, t, c.G * c.Hd));
        using var r = Tensor.FromArray(backend, c.R, new Shape(h, c.G * dh, dh));
        using var bias = Tensor.FromArray(backend, c.Bias, new Shape(c.G * c.Hd));
        var initial = c.Initial.Select(s => (Tensor?)Tensor.FromArray(backend, s, new Shape(b, c.Hd))).ToList();
        var finals = initial.Select(_ => (Tensor?)Tensor.Full(backend, new Shape(b, c.Hd), float.NaN)).ToList();
        using var output = Tensor.Full(backend, new Shape(b, t, c.Hd), float.NaN);
        try
        {
            Rnn.Forward(cell, x, r, bias, output, initial, finals);
            double tol = 2e-5 * Math.Sqrt(t);
            TestData.AssertClose(y, output.ToArray(), tol, tol, $"{cell} {backendName} outputs");
            for (int i = 0; i < finals.Count; i++) TestData.AssertClose(final[i], finals[i]!.ToArray(), tol, tol, $"{cell} {backendName} final {Rnn.StateNames(cell)[i]}");
        }
        finally
        {
            foreach (var s in initial.Concat(finals)) s?.Dispose();
        }
    }

    public static IEnumerable<object[]> BackwardCases() =>
        from cell in Enum.GetValues<RnnCell>()
        from size in new[] { (1, 1, 1, 3), (2, 4, 2, 3), (1, 6, 3, 2), (5, 3, 1, 37) }
        select new object[] { cell, size.Item1, size.Item2, size.Item3, size.Item4 };

    [TestMethod]
    [DynamicData(nameof(BackwardCases))]
    public void CpuBackwardMatchesFiniteDifferencesOfReference(RnnCell cell, int b, int t, int h, int dh)
    {
        var cpu = TestBackends.Get("cpu");
        var c = new Case(cell, b, t, h, dh, (ulong)(b + t * 3 + h * 7 + dh * 11 + (int)cell * 100));
        var reference = c.Reference();
        float[] w = TestData.Uniform(b * t * c.Hd, 91), wh = TestData.Uniform(b * c.Hd, 92);
        double[] wd = TestData.ToDouble(w), whd = TestData.ToDouble(wh);
        using var x = Tensor.FromArray(cpu, c.X, new Shape(b, t, c.G * c.Hd));
        using var r = Tensor.FromArray(cpu, c.R, new Shape(h, c.G * dh, dh));
        using var bias = Tensor.FromArray(cpu, c.Bias, new Shape(c.G * c.Hd));
        var initial = c.Initial.Select(s => (Tensor?)Tensor.FromArray(cpu, s, new Shape(b, c.Hd))).ToList();
        using var output = Tensor.Empty(cpu, new Shape(b, t, c.Hd));
        var problem = Rnn.Forward(cell, x, r, bias, output, initial, null, null);
        using var saved = Tensor.Empty(cpu, problem.SavedShape);
        Rnn.Forward(cell, x, r, bias, output, initial, null, saved);
        using var dY = Tensor.FromArray(cpu, w, new Shape(b, t, c.Hd));
        using var dHT = Tensor.FromArray(cpu, wh, new Shape(b, c.Hd));
        using var dx = Tensor.Full(cpu, x.Shape, float.NaN);
        using var dr = Tensor.Full(cpu, r.Shape, float.NaN);
        using var dbias = Tensor.Full(cpu, bias.Shape, float.NaN);
        var dInitial = initial.Select(_ => (Tensor?)Tensor.Full(cpu, new Shape(b, c.Hd), float.NaN)).ToList();
        try
        {
            Rnn.Backward(problem, output, saved, dY, dx, dr, dbias, [dHT], dInitial);
            const double tol = 2e-4;
            TestData.AssertClose(reference.NumericGradient(reference.X, wd, whd), dx.ToArray(), tol, tol, $"{cell} dx");
            TestData.AssertClose(reference.NumericGradient(reference.R, wd, whd), dr.ToArray(), tol, tol, $"{cell} dR");
            TestData.AssertClose(reference.NumericGradient(reference.Bias, wd, whd), dbias.ToArray(), tol, tol, $"{cell} dbias");
            TestData.AssertClose(reference.NumericGradient(reference.Initial[0], wd, whd), dInitial[0]!.ToArray(), tol, tol, $"{cell} dh0");
            if (cell == RnnCell.Lstm) TestData.AssertClose(reference.NumericGradient(reference.Initial[1], wd, whd), dInitial[1]!.ToArray(), tol, tol, "dc0");
            if (cell == RnnCell.SLstm)
            {
                // c0 and n0 enter h only through c/n ratios scaled by the same stabiliser
                TestData.AssertClose(reference.NumericGradient(reference.Initial[1], wd, whd), dInitial[1]!.ToArray(), tol, tol, "dc0");
                TestData.AssertClose(reference.NumericGradient(reference.Initial[2], wd, whd), dInitial[2]!.ToArray(), tol, tol, "dn0");
            }
        }
        finally
        {
            foreach (var s in initial.Concat(dInitial)) s?.Dispose();
        }
    }

    [TestMethod]
    [DataRow("cpu", RnnCell.Lstm)]
    [DataRow("cpu", RnnCell.Gru)]
    [DataRow("vulkan", RnnCell.Lstm)]
    [DataRow("vulkan", RnnCell.Gru)]
    public void SingleHeadCellsFollowPyTorchEquations(string backendName, RnnCell cell)
    {
        // nn.LSTM / nn.GRU as their documentation writes them, from the state-dict tensors
        // weight_ih_l0 [G*hidden, in], weight_hh_l0 [G*hidden, hidden], bias_ih_l0, bias_hh_l0:
        //   LSTM  i = σ(W_ii x + b_ii + W_hi h + b_hi), f, g = tanh(...), o; c' = f c + i g; h' = o tanh(c')
        //   GRU   r = σ(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
        //         h' = (1 - z) n + z h
        // Our op takes x W_ih^T + b_ih as pre-activations and weight_hh_l0, bias_hh_l0 unchanged as R, bias.
        var backend = TestBackends.Get(backendName);
        int gates = cell.Gates();
        const int batch = 3, steps = 5, input = 7, hidden = 6;
        double[] wIh = TestData.ToDouble(TestData.Uniform(gates * hidden * input, 1, -0.5f, 0.5f));
        float[] wHh = TestData.Uniform(gates * hidden * hidden, 2, -0.5f, 0.5f);
        double[] bIh = TestData.ToDouble(TestData.Uniform(gates * hidden, 3)), bHh = TestData.ToDouble(TestData.Uniform(gates * hidden, 4));
        double[] xs = TestData.ToDouble(TestData.Uniform(batch * steps * input, 5));
        double Dot(double[] w, int rowStart, double[] v, int vStart, int n) { double s = 0; for (int k = 0; k < n; k++) s += w[rowStart + k] * v[vStart + k]; return s; }
        double S(double v) => 1 / (1 + Math.Exp(-v));
        var expected = new double[batch * steps * hidden];
        var pre = new float[batch * steps * gates * hidden];
        double[] whh = TestData.ToDouble(wHh);
        for (int b = 0; b < batch; b++)
        {
            var h = new double[hidden]; var c = new double[hidden];
            for (int t = 0; t < steps; t++)
            {
                int xAt = (b * steps + t) * input;
                double Wx(int row) => Dot(wIh, row * input, xs, xAt, input) + bIh[row];
                double Wh(int row) => Dot(whh, row * hidden, h, 0, hidden) + bHh[row];
                for (int row = 0; row < gates * hidden; row++) pre[(b * steps + t) * gates * hidden + row] = (float)Wx(row);
                var hNew = new double[hidden];
                for (int j = 0; j < hidden; j++)
                {
                    if (cell == RnnCell.Lstm)
                    {
                        double i = S(Wx(j) + Wh(j)), f = S(Wx(hidden + j) + Wh(hidden + j));
                        double g = Math.Tanh(Wx(2 * hidden + j) + Wh(2 * hidden + j)), o = S(Wx(3 * hidden + j) + Wh(3 * hidden + j));
                        c[j] = f * c[j] + i * g;
                        hNew[j] = o * Math.Tanh(c[j]);
                    }
                    else
                    {
                        double rg = S(Wx(j) + Wh(j)), z = S(Wx(hidden + j) + Wh(hidden + j));
                        double n = Math.Tanh(Wx(2 * hidden + j) + rg * Wh(2 * hidden + j));
                        hNew[j] = (1 - z) * n + z * h[j];
                    }
                }
                h = hNew;
                Array.Copy(h, 0, expected, (b * steps + t) * hidden, hidden);
            }
        }
        using var x = Tensor.FromArray(backend, pre, new Shape(batch, steps, gates * hidden));
        using var r = Tensor.FromArray(backend, wHh, new Shape(1, gates * hidden, hidden));
        using var bias = Tensor.FromArray(backend, bHh.Select(v => (float)v).ToArray(), new Shape(gates * hidden));
        using var y = Tensor.Full(backend, new Shape(batch, steps, hidden), float.NaN);
        Rnn.Forward(cell, x, r, bias, y);
        TestData.AssertClose(expected, y.ToArray(), 1e-5, 1e-5, $"{cell} vs PyTorch's equations");
    }

    [TestMethod]
    [DataRow("cpu", RnnCell.Lstm)]
    [DataRow("cpu", RnnCell.SLstm)]
    [DataRow("vulkan", RnnCell.SLstm)]
    [DataRow("vulkan", RnnCell.Gru)]
    public void StepsAndHalvesEqualOneRun(string backendName, RnnCell cell)
    {
        var backend = TestBackends.Get(backendName);
        var c = new Case(cell, 2, 6, 2, 5, 3);
        using var x = Tensor.FromArray(backend, c.X, new Shape(c.B, c.T, c.G * c.Hd));
        using var r = Tensor.FromArray(backend, c.R, new Shape(c.H, c.G * c.Dh, c.Dh));
        using var bias = Tensor.FromArray(backend, c.Bias, new Shape(c.G * c.Hd));
        using var whole = Tensor.Empty(backend, new Shape(c.B, c.T, c.Hd));
        Rnn.Forward(cell, x, r, bias, whole);
        float[] expected = whole.ToArray();
        var states = Rnn.StateNames(cell).Select(_ => Tensor.Zeros(backend, new Shape(c.B, c.Hd))).ToList();
        try
        {
            float[] xs = c.X;
            for (int t = 0; t < c.T; t++)
            {
                var xt = Enumerable.Range(0, c.B).SelectMany(b => xs.Skip((b * c.T + t) * c.G * c.Hd).Take(c.G * c.Hd)).ToArray();
                using var xStep = Tensor.FromArray(backend, xt, new Shape(c.B, c.G * c.Hd));
                Rnn.Step(cell, xStep, r, bias, states);
                var h = states[0].ToArray();
                for (int b = 0; b < c.B; b++)
                    TestData.AssertClose(TestData.ToDouble(expected.Skip((b * c.T + t) * c.Hd).Take(c.Hd).ToArray()), h.Skip(b * c.Hd).Take(c.Hd).ToArray(), 1e-5, 1e-5, $"{cell} step {t} batch {b}");
            }
        }
        finally { foreach (var s in states) s.Dispose(); }
    }

    [TestMethod]
    public void RejectsBadInputs()
    {
        var cpu = TestBackends.Get("cpu");
        using var x = Tensor.Zeros(cpu, new Shape(2, 3, 4 * 2 * 5));
        using var r = Tensor.Zeros(cpu, new Shape(2, 4 * 5, 5));
        using var rWrong = Tensor.Zeros(cpu, new Shape(2, 3 * 5, 5));
        using var y = Tensor.Zeros(cpu, new Shape(2, 3, 10));
        using var h0 = Tensor.Zeros(cpu, new Shape(2, 9));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Rnn.Forward(RnnCell.Lstm, x, rWrong, null, y)).Message, "LstmForward: argument 'recurrentWeights' has shape [2, 15, 5] but a Lstm head needs 4 gates x 5 units = 20 rows");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Rnn.Forward(RnnCell.Gru, x, r, null, y)).Message, "GruForward: argument 'recurrentWeights' has shape [2, 20, 5] but a Gru head needs 3 gates x 5 units = 15 rows");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Rnn.Forward(RnnCell.Lstm, x, r, null, y, [h0])).Message, "LstmForward: argument 'initialStates[0] (h)' has shape [2, 9] but must have shape [2, 10]");
        using var x3 = Tensor.Zeros(cpu, new Shape(2, 3, 30));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Rnn.Forward(RnnCell.Lstm, x3, r, null, y)).Message, "LstmForward: argument 'preactivations' has shape [2, 3, 30] but Lstm with 2 heads of 5 needs a last axis of G*H*Dh = 4*2*5 = 40");
    }
}
