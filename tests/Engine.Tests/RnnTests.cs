using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class RnnTests
{
    internal sealed record Case(RnnCell Cell, int B, int T, int H, int Dh, ulong Seed)
    {
        public float RScale { get; init; } = 0.6f;
        /// <summary>X and R rounded through this dtype (f16/bf16 inputs hold exactly these values).</summary>
        public DType Rounding { get; init; } = DType.F32;
        public int G => Cell.Gates();
        public int Hd => H * Dh;
        public float[] X => Round(TestData.Uniform(B * T * G * Hd, Seed, -1.5f, 1.5f));
        public float[] R => Round(TestData.Uniform(H * G * Dh * Dh, Seed + 1, -RScale, RScale));
        private float[] Round(float[] values) => Rounding == DType.F32 ? values : TestData.RoundTrip(values, Rounding);
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
        (from backend in new[] { "cpu", "vulkan", "vulkan-steps" }
        from cell in Enum.GetValues<RnnCell>()
        from size in new[] { (1, 1, 1, 5), (2, 2, 3, 13), (3, 37, 1, 32), (9, 5, 2, 64), (17, 3, 1, 7) }
        select new object[] { backend, cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        // All steps in one dispatch: heads of <= 16 units. Odd head sizes only, so that each cell
        // compiles one forward and one backward pipeline on lavapipe (each costs seconds there); the
        // vec4 exchange loads run in RnnPersistentTests on the GPU.
        .Concat(from cell in Enum.GetValues<RnnCell>()
                from size in new[] { (1, 1, 1, 5), (2, 2, 3, 13), (17, 37, 2, 15) }   // 17 rows: two batch tiles
                select new object[] { "vulkan-persistent", cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        // One unit per workgroup: an odd number of outputs (GRU's 3 gate rows, Elman's 1; backward every
        // cell's one column of R), so some invocations of the product own only one output. Two cells
        // each way: every case costs lavapipe a pipeline compile.
        .Concat(from cell in new[] { RnnCell.Gru, RnnCell.Elman } select new object[] { "vulkan-steps-u1", cell, 3, 4, 2, 7 });

    [TestMethod]
    [DynamicData(nameof(ForwardCases))]
    public void ForwardMatchesReference(string backendName, RnnCell cell, int b, int t, int h, int dh)
    {
        using var path = Path(backendName);
        var backend = path.Backend;
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

    /// <summary>A backend by test name: "cpu", "vulkan" (the fused kernels for heads of up to 128
    /// units, batch tiles picked by size: 1 row at these sizes), "vulkan-tile8" (fused, 8 batch rows
    /// per workgroup), "vulkan-steps" (every head through the per-step kernels of large heads, the
    /// backward staging dq), "vulkan-steps-u16" or "vulkan-steps-u1" (the same with 16 or 1 units per
    /// workgroup), "vulkan-steps-rows" and "-rows-u1" (the backward's product split over gate rows, 8
    /// or 1 units; the "vulkan-steps" paths one dispatch per step even where all workgroups would fit
    /// at once), "vulkan-steps-auto" (per-step kernels as the backend chooses them: persistent where
    /// they fit, row partials where dq takes many chunks), "vulkan-persistent-u4" (forced
    /// persistent, 4 units; "vulkan-persistent-l2" the same with R read from L2 every step instead of
    /// kept in registers) or "vulkan-persistent"
    /// (per-step kernels with 16 units, all steps in one dispatch; on a device that does not promise to run
    /// workgroups side by side, lavapipe, only heads of up to 16 units: one workgroup per head and tile;
    /// RnnPersistentTests covers groups of many workgroups on a GPU).
    /// Settings are restored on dispose; the tests run one at a time.</summary>
    internal sealed class BackendPath : IDisposable
    {
        private readonly Vulkan.VulkanBackend? _vulkan;
        private readonly int _keepMax, _keepTile, _keepUnits;
        private readonly bool? _keepPersistent;
        private readonly bool _keepRegisters;
        private readonly bool? _keepRowPartials;
        private readonly int _keepRowUnits;
        public BackendPath(string name)
        {
            Backend = TestBackends.Get(name.StartsWith("vulkan") ? "vulkan" : name);
            if (Backend is not Vulkan.VulkanBackend vulkan) return;
            _vulkan = vulkan;
            (_keepMax, _keepTile, _keepUnits, _keepPersistent, _keepRegisters, _keepRowPartials) = (vulkan.FusedRnnMaxHeadDim, vulkan.FusedRnnBatchTile, vulkan.RnnStepUnits, vulkan.RnnPersistent, vulkan.RnnWeightsInRegisters, vulkan.RnnBackwardRowPartials);
            _keepRowUnits = vulkan.RnnRowPartialUnits;
            if (name.StartsWith("vulkan-steps") || name.StartsWith("vulkan-persistent")) vulkan.FusedRnnMaxHeadDim = 0;
            if (name == "vulkan-steps-u16" || name == "vulkan-persistent") vulkan.RnnStepUnits = 16;
            if (name == "vulkan-steps-u1") vulkan.RnnStepUnits = 1;
            // the backward's product split over the gate rows (one dispatch per step)
            // "vulkan-steps", "-u1", "-u16": the staged product (the multi-chunk cases test its chunks)
            if (name.StartsWith("vulkan-steps") && name != "vulkan-steps-auto") vulkan.RnnBackwardRowPartials = name.StartsWith("vulkan-steps-rows");
            if (name == "vulkan-steps-rows-u1") vulkan.RnnRowPartialUnits = 1;
            // "vulkan-steps*": one dispatch per step also where the device would run them persistent
            if (name.StartsWith("vulkan-steps")) vulkan.RnnPersistent = name == "vulkan-steps-auto" ? null : false;
            if (name == "vulkan-persistent") vulkan.RnnPersistent = true;
            if (name == "vulkan-persistent-u4") (vulkan.RnnStepUnits, vulkan.RnnPersistent) = (4, true);
            if (name == "vulkan-persistent-l2") (vulkan.RnnStepUnits, vulkan.RnnPersistent, vulkan.RnnWeightsInRegisters) = (4, true, false);
            if (name == "vulkan-tile8") vulkan.FusedRnnBatchTile = 8;
        }
        public IBackend Backend { get; }
        public void Dispose()
        {
            if (_vulkan is null) return;
            (_vulkan.FusedRnnMaxHeadDim, _vulkan.FusedRnnBatchTile, _vulkan.RnnStepUnits, _vulkan.RnnPersistent, _vulkan.RnnWeightsInRegisters, _vulkan.RnnBackwardRowPartials) = (_keepMax, _keepTile, _keepUnits, _keepPersistent, _keepRegisters, _keepRowPartials);
            _vulkan.RnnRowPartialUnits = _keepRowUnits;
        }
    }

    internal static BackendPath Path(string name) => new(name);

    public static IEnumerable<object[]> BackwardCases() =>
        (from backend in new[] { "cpu", "vulkan", "vulkan-steps" }
         from cell in Enum.GetValues<RnnCell>()
         from size in new[] { (1, 1, 1, 3), (2, 4, 2, 3), (1, 6, 3, 2), (2, 2, 1, 5), (5, 3, 1, 37) }
         select new object[] { backend, cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        .Concat(from cell in Enum.GetValues<RnnCell>()       // all steps in one dispatch: heads of <= 16 units
                from size in new[] { (1, 1, 1, 3), (2, 4, 2, 3), (1, 6, 3, 3) }
                select new object[] { "vulkan-persistent", cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        .Concat(from cell in new[] { RnnCell.Lstm, RnnCell.Gru } select new object[] { "vulkan-steps-u1", cell, 2, 3, 2, 7 })
        .Concat(from cell in Enum.GetValues<RnnCell>() select new object[] { "vulkan-steps-rows", cell, 2, 4, 2, 5 });

    [TestMethod]
    [DynamicData(nameof(BackwardCases))]
    public void BackwardMatchesFiniteDifferencesOfReference(string backendName, RnnCell cell, int b, int t, int h, int dh)
    {
        using var path = Path(backendName);
        var c = new Case(cell, b, t, h, dh, (ulong)(b + t * 3 + h * 7 + dh * 11 + (int)cell * 100));
        var reference = c.Reference();
        float[] w = TestData.Uniform(b * t * c.Hd, 91), wh = TestData.Uniform(b * c.Hd, 92);
        double[] wd = TestData.ToDouble(w), whd = TestData.ToDouble(wh);
        var g = RunBackward(path.Backend, c, w, wh, null);
        const double tol = 2e-4;
        string what = $"{cell} {backendName}";
        TestData.AssertClose(reference.NumericGradient(reference.X, wd, whd), g.Dx, tol, tol, $"{what} dx");
        TestData.AssertClose(reference.NumericGradient(reference.R, wd, whd), g.Dr, tol, tol, $"{what} dR");
        TestData.AssertClose(reference.NumericGradient(reference.Bias, wd, whd), g.Dbias, tol, tol, $"{what} dbias");
        TestData.AssertClose(reference.NumericGradient(reference.Initial[0], wd, whd), g.DInitial[0], tol, tol, $"{what} dh0");
        if (cell == RnnCell.Lstm) TestData.AssertClose(reference.NumericGradient(reference.Initial[1], wd, whd), g.DInitial[1], tol, tol, $"{what} dc0");
        if (cell == RnnCell.SLstm)
        {
            // c0 and n0 enter h only through c/n ratios scaled by the same stabiliser
            TestData.AssertClose(reference.NumericGradient(reference.Initial[1], wd, whd), g.DInitial[1], tol, tol, $"{what} dc0");
            TestData.AssertClose(reference.NumericGradient(reference.Initial[2], wd, whd), g.DInitial[2], tol, tol, $"{what} dn0");
            Assert.IsTrue(g.DInitial[3].All(v => v == 0f), $"{what}: dm0 must be 0 (m is a stabiliser)");
        }
    }

    public static IEnumerable<object[]> CpuVersusVulkanCases() =>
        (from backend in new[] { "vulkan", "vulkan-steps" }
         from cell in Enum.GetValues<RnnCell>()
         from size in new[] { (1, 1, 1, 5), (2, 2, 3, 13), (3, 37, 1, 32), (9, 5, 2, 64), (17, 3, 1, 7), (2, 3, 1, 96), (2, 600, 1, 7) }   // 1200 tokens: dR in 2 token splits
         select new object[] { backend, cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        .Concat(from cell in Enum.GetValues<RnnCell>()       // whole and partial tiles of 8 rows
                from size in new[] { (3, 4, 2, 13), (17, 3, 1, 7) }
                select new object[] { "vulkan-tile8", cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        .Concat(from cell in Enum.GetValues<RnnCell>()       // per-step kernels, 16 units per workgroup, partial blocks
                from size in new[] { (3, 4, 2, 13), (17, 3, 1, 7) }
                select new object[] { "vulkan-steps-u16", cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        .Concat(from cell in Enum.GetValues<RnnCell>()       // per-step kernels, inputs staged in several chunks
                from size in new[] { (2, 3, 1, 150), (2, 2, 1, 521), (3, 2, 1, 516) }   // (odd, vec4 loads)
                select new object[] { "vulkan-steps", cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        .Concat(from cell in Enum.GetValues<RnnCell>()       // the backward's product over gate rows: two batch tiles, partial
                from size in new[] { (17, 5, 2, 13), (3, 4, 1, 516) }   // blocks, scalar loads; vec4 loads and more columns than invocations
                select new object[] { "vulkan-steps-rows", cell, size.Item1, size.Item2, size.Item3, size.Item4 })
        .Concat(from cell in new[] { RnnCell.Gru, RnnCell.Elman } select new object[] { "vulkan-steps-rows-u1", cell, 3, 4, 2, 7 })
        .Concat([new object[] { "vulkan-steps-rows", RnnCell.Lstm, 2, 2, 1, 1030 }])    // 258 vec4 columns: some invocations own two
        .Concat(from cell in Enum.GetValues<RnnCell>()       // all steps in one dispatch, heads of <= 16 units (odd: above)
                from size in new[] { (3, 4, 2, 13), (2, 600, 3, 15), (33, 9, 2, 11) }   // tiles: 1, 1, 3
                select new object[] { "vulkan-persistent", cell, size.Item1, size.Item2, size.Item3, size.Item4 });

    /// <summary>Sizes too large for finite differences: every gradient of the Vulkan backward against
    /// the CPU backward (itself checked against the reference above), with a final-state gradient for
    /// c too (LSTM).</summary>
    [TestMethod]
    [DynamicData(nameof(CpuVersusVulkanCases))]
    public void VulkanBackwardMatchesCpu(string backendName, RnnCell cell, int b, int t, int h, int dh)
    {
        using var path = Path(backendName);
        // R scaled so that the recurrence neither explodes nor saturates over 37 steps (an Elman
        // recurrence with spectral radius 2 amplifies fp32 rounding beyond any fixed tolerance)
        var c = new Case(cell, b, t, h, dh, (ulong)(b * 5 + t * 3 + h * 7 + dh * 11 + (int)cell * 100)) { RScale = MathF.Min(0.6f, 2f / MathF.Sqrt(dh)) };
        float[] w = TestData.Uniform(b * t * c.Hd, 93), wh = TestData.Uniform(b * c.Hd, 94);
        float[]? wc = cell == RnnCell.Lstm ? TestData.Uniform(b * c.Hd, 95) : null;
        var expected = RunBackward(TestBackends.Get("cpu"), c, w, wh, wc);
        var actual = RunBackward(path.Backend, c, w, wh, wc);
        AssertSameGradients(expected, actual, b * t, 2e-5 * Math.Sqrt(t), $"{cell} {backendName} B{b} T{t} H{h} Dh{dh}");
    }

    /// <summary>Heads of more than 128 units (here 130, not a power of two) take the per-step kernels on
    /// Vulkan: forward against the reference, backward against the CPU.</summary>
    [TestMethod]
    [DataRow(RnnCell.Lstm)]
    [DataRow(RnnCell.Gru)]
    [DataRow(RnnCell.SLstm)]
    [DataRow(RnnCell.Elman)]
    public void LargeHeadsMatchOnVulkan(RnnCell cell)
    {
        const int b = 2, t = 3, h = 1, dh = 130;
        var vulkan = TestBackends.Get("vulkan");
        var c = new Case(cell, b, t, h, dh, 7 + (ulong)cell) { RScale = 0.1f };
        var (y, final) = c.Reference().Forward();
        float[] w = TestData.Uniform(b * t * c.Hd, 96), wh = TestData.Uniform(b * c.Hd, 97);
        float[]? wc = cell == RnnCell.Lstm ? TestData.Uniform(b * c.Hd, 98) : null;
        var actual = RunBackward(vulkan, c, w, wh, wc);
        TestData.AssertClose(y, actual.Outputs, 1e-4, 1e-4, $"{cell} Dh {dh} outputs");
        TestData.AssertClose(final[0], actual.FinalH, 1e-4, 1e-4, $"{cell} Dh {dh} final h");
        AssertSameGradients(RunBackward(TestBackends.Get("cpu"), c, w, wh, wc), actual, b * t, 1e-4, $"{cell} Dh {dh}");
    }

    internal sealed record Gradients(float[] Outputs, float[] FinalH, float[] Dx, float[] Dr, float[] Dbias, float[][] DInitial);

    // Forward with saved activations, then the backward of L = sum(w ⊙ y) + sum(wh ⊙ h_T) (+ sum(wc ⊙ c_T)).
    // inputs: the dtype of the pre-activation and R tensors (the values are c's either way).
    internal static Gradients RunBackward(IBackend backend, Case c, float[] w, float[] wh, float[]? wc, DType inputs = DType.F32)
    {
        var stateShape = new Shape(c.B, c.Hd);
        using var x = Tensor.FromArray(backend, c.X, new Shape(c.B, c.T, c.G * c.Hd), inputs);
        using var r = Tensor.FromArray(backend, c.R, new Shape(c.H, c.G * c.Dh, c.Dh), inputs);
        using var bias = Tensor.FromArray(backend, c.Bias, new Shape(c.G * c.Hd));
        var initial = c.Initial.Select(s => (Tensor?)Tensor.FromArray(backend, s, stateShape)).ToList();
        using var output = Tensor.Full(backend, new Shape(c.B, c.T, c.Hd), float.NaN);
        using var finalH = Tensor.Full(backend, stateShape, float.NaN);
        var dInitial = initial.Select(_ => (Tensor?)Tensor.Full(backend, stateShape, float.NaN)).ToList();
        using var saved = Tensor.Full(backend, Rnn.SavedShape(c.Cell, c.B, c.T, c.Hd), float.NaN);
        using var dY = Tensor.FromArray(backend, w, new Shape(c.B, c.T, c.Hd));
        using var dHT = Tensor.FromArray(backend, wh, stateShape);
        using var dCT = wc is null ? null : Tensor.FromArray(backend, wc, stateShape);
        using var dx = Tensor.Full(backend, x.Shape, float.NaN);
        using var dr = Tensor.Full(backend, r.Shape, float.NaN);
        using var dbias = Tensor.Full(backend, bias.Shape, float.NaN);
        try
        {
            var problem = Rnn.Forward(c.Cell, x, r, bias, output, initial, [finalH], saved);
            Rnn.Backward(problem, output, saved, dY, dx, dr, dbias, dCT is null ? [dHT] : [dHT, dCT], dInitial);
            return new Gradients(output.ToArray(), finalH.ToArray(), dx.ToArray(), dr.ToArray(), dbias.ToArray(), dInitial.Select(d => d!.ToArray()).ToArray());
        }
        finally
        {
            foreach (var s in initial.Concat(dInitial)) s?.Dispose();
        }
    }

    internal static void AssertSameGradients(Gradients expected, Gradients actual, int tokens, double tol, string what)
    {
        static double[] D(float[] v) => TestData.ToDouble(v);
        TestData.AssertClose(D(expected.Outputs), actual.Outputs, tol, tol, $"{what} outputs");
        TestData.AssertClose(D(expected.Dx), actual.Dx, tol, tol, $"{what} dx");
        // dR and the bias gradient sum B*T terms each: fp32 rounding grows like sqrt(B*T)
        double sumTol = tol * Math.Max(1.0, Math.Sqrt(tokens) / 2);
        TestData.AssertClose(D(expected.Dr), actual.Dr, sumTol, sumTol, $"{what} dR");
        TestData.AssertClose(D(expected.Dbias), actual.Dbias, sumTol, sumTol, $"{what} dbias");
        for (int i = 0; i < expected.DInitial.Length; i++)
            TestData.AssertClose(D(expected.DInitial[i]), actual.DInitial[i], tol, tol, $"{what} dInitial[{i}]");
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

    public static IEnumerable<object[]> HalfInputCases() =>
        from backend in new[] { "vulkan", "vulkan-steps" }
        from cell in Enum.GetValues<RnnCell>()
        from dtype in new[] { DType.F16, DType.BF16 }
        select new object[] { backend, cell, dtype };

    /// <summary>f16/bf16 pre-activations and R on Vulkan (widened on entry): the same outputs and
    /// gradients as the CPU's f32 run on the rounded values, forward and backward, fused and per step.</summary>
    [TestMethod]
    [DynamicData(nameof(HalfInputCases))]
    public void VulkanTakesHalfPreactivationsAndWeights(string backendName, RnnCell cell, DType dtype)
    {
        using var path = Path(backendName);
        int b = 3, t = 5, h = 2, dh = 13;
        var c = new Case(cell, b, t, h, dh, 300 + (ulong)cell * 10 + (ulong)dtype) { Rounding = dtype };
        float[] w = TestData.Uniform(b * t * c.Hd, 96), wh = TestData.Uniform(b * c.Hd, 97);
        float[]? wc = cell == RnnCell.Lstm ? TestData.Uniform(b * c.Hd, 98) : null;
        var expected = RunBackward(TestBackends.Get("cpu"), c, w, wh, wc);
        var actual = RunBackward(path.Backend, c, w, wh, wc, dtype);
        AssertSameGradients(expected, actual, b * t, 2e-5 * Math.Sqrt(t), $"{cell} {backendName} {dtype.Name()} inputs");
    }

    [TestMethod]
    public void CpuRejectsHalfInputsNamingTheArgument()
    {
        var cpu = TestBackends.Get("cpu");
        using var x = Tensor.Zeros(cpu, new Shape(2, 3, 4 * 2 * 5));
        using var xHalf = Tensor.Zeros(cpu, x.Shape, DType.F16);
        using var r = Tensor.Zeros(cpu, new Shape(2, 4 * 5, 5));
        using var rHalf = Tensor.Zeros(cpu, r.Shape, DType.BF16);
        using var y = Tensor.Zeros(cpu, new Shape(2, 3, 10));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Rnn.Forward(RnnCell.Lstm, x, rHalf, null, y)).Message,
            "LstmForward: argument 'recurrentWeights' [2, 20, 5] has dtype bf16 but the cpu backend's recurrent cells take f32 only");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Rnn.Forward(RnnCell.Lstm, xHalf, r, null, y)).Message,
            "LstmForward: argument 'preactivations' [2, 3, 40] has dtype f16 but the cpu backend's recurrent cells take f32 only");
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
