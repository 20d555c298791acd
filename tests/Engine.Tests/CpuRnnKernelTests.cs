using FastWeights.Engine.Cpu;
using FastWeights.Engine.Cpu.Rnn;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Tests;

/// <summary>The CPU recurrences' parts: the per-step packed product (both register-tile layouts)
/// against a float64 reference at awkward sizes, and the split of a head's units over threads (bitwise equal to one thread: every
/// unit's arithmetic is the same whoever computes it).</summary>
[TestClass]
public sealed unsafe class CpuRnnKernelTests
{
    [TestMethod]
    [DataRow(4, 1, 8)]
    [DataRow(4, 37, 16)]
    [DataRow(8, 37, 24)]
    [DataRow(20, 64, 40)]
    [DataRow(16, 300, 1032)]
    [DataRow(12, 1024, 136)]
    [DataRow(4, 37, 32)]
    [DataRow(8, 64, 56)]
    [DataRow(16, 256, 512)]
    public void StepProductMatchesReference(int rows, int k, int n)
    {
        float[] x = TestData.Uniform(rows * k, (ulong)(rows + k + n)), w = TestData.Uniform(k * n, (ulong)(rows * k * n + 1));
        float[] y0 = TestData.Uniform(rows * (n + 3), 7);
        bool keep = StepProduct.Wide;
        try
        {
            // both layouts: the Vector256 tiles, and the Vector512 ones (emulated where not accelerated)
            foreach (bool wide in new[] { false, true })
                foreach (bool accumulate in new[] { false, true })
                {
                    StepProduct.Wide = wide;
                    StepProductCase(x, w, y0, rows, k, n, accumulate, wide);
                }
        }
        finally { StepProduct.Wide = keep; }
    }

    private static void StepProductCase(float[] x, float[] w, float[] y0, int rows, int k, int n, bool accumulate, bool wide)
    {
        var expected = new double[rows * (n + 3)];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < n + 3; c++)
            {
                double sum = accumulate || c >= n ? y0[r * (n + 3) + c] : 0;
                if (c < n) for (int l = 0; l < k; l++) sum += (double)x[r * k + l] * w[l * n + c];
                expected[r * (n + 3) + c] = sum;
            }
        var y = (float[])y0.Clone();
        var packed = new float[k * n];
        fixed (float* pw = w, pp = packed, px = x, py = y)
        {
            StepProduct.Pack(k, n, new RowMajor(pw), n, pp);
            // y has 3 extra columns per row (ldy = n + 3) that must stay untouched.
            StepProduct.Multiply(px, k, rows, k, pp, n, py, n + 3, accumulate);
        }
        TestData.AssertClose(expected, y, TestData.F32Tolerance(k), TestData.F32Tolerance(k), $"StepProduct {rows}x{k}x{n} accumulate={accumulate} wide={wide}");
    }

    [TestMethod]
    public void ActivationsMatchDoublePrecision()
    {
        // Exp relative error below 1e-6 over the range it does not clamp; sigmoid and tanh absolute
        // error below 1e-6 everywhere, their limits exact at +-inf.
        float[] xs = [.. Enumerable.Range(-8000, 16001).Select(i => i * 0.0109f), -1e-7f, 1e-7f, 0f, float.NegativeInfinity, float.PositiveInfinity];
        foreach (float x in xs)
        {
            var v = System.Runtime.Intrinsics.Vector256.Create(x);
            if (float.IsFinite(x) && Math.Abs(x) <= 87)
                Assert.AreEqual(Math.Exp(x), CellMath.Exp(v)[0], 1e-6 * Math.Exp(x), $"exp({x})");
            Assert.AreEqual(1 / (1 + Math.Exp(-(double)x)), CellMath.Sigmoid(v)[0], 1e-6, $"sigmoid({x})");
            Assert.AreEqual(Math.Tanh(x), CellMath.Tanh(v)[0], 1e-6, $"tanh({x})");
            double logSigmoid = x >= 0 ? -Math.Log(1 + Math.Exp(-(double)x)) : x - Math.Log(1 + Math.Exp(x));
            if (float.IsFinite(x)) Assert.AreEqual(logSigmoid, CellMath.LogSigmoid(v)[0], 1e-6 * Math.Max(1, Math.Abs(logSigmoid)), $"logsigmoid({x})");
        }
        Assert.AreEqual(0f, CellMath.Exp(System.Runtime.Intrinsics.Vector256.Create(float.NegativeInfinity))[0], 1e-37f);
    }

    // Column c of a row-major w [k, n]: w + c, element stride n.
    private readonly struct RowMajor(float* w) : StepProduct.IColumns
    {
        public float* Column(int c) => w + c;
    }

    public static IEnumerable<object[]> SplitCases() =>
        from cell in Enum.GetValues<RnnCell>()
        from size in new[] { (5, 4, 37), (16, 3, 64), (3, 2, 17) }
        select new object[] { cell, size.Item1, size.Item2, size.Item3 };

    [TestMethod]
    [DynamicData(nameof(SplitCases))]
    public void UnitsSplitOverThreadsMatchOneThread(RnnCell cell, int b, int t, int dh)
    {
        if (Environment.ProcessorCount < 2) Assert.Inconclusive("one core: there is no split to compare");
        var one = new CpuBackend { Threads = 1 };
        var two = new CpuBackend { Threads = 2 };
        double keep = RnnRecurrence.MinFlopsToSplitStep;
        RnnRecurrence.MinFlopsToSplitStep = 0;
        try
        {
            var (y1, g1) = ForwardBackward(one, cell, b, t, dh, out int parties1);
            var (y2, g2) = ForwardBackward(two, cell, b, t, dh, out int parties2);
            Assert.AreEqual(1, parties1);
            Assert.AreEqual(2, parties2, "the two-thread run did not split (GEMM helpers busy?)");
            CollectionAssert.AreEqual(y1, y2, $"{cell} outputs and final states");
            for (int i = 0; i < g1.Length; i++) CollectionAssert.AreEqual(g1[i], g2[i], $"{cell} gradient {i}");
        }
        finally { RnnRecurrence.MinFlopsToSplitStep = keep; }
    }

    // Outputs followed by final states; then dx, dR, dbias, dh0 (, dc0, dn0, dm0).
    private static (float[] Forward, float[][] Gradients) ForwardBackward(CpuBackend backend, RnnCell cell, int b, int t, int dh, out int parties)
    {
        int g = cell.Gates();
        var names = Rnn.StateNames(cell);
        using var x = Tensor.Uniform(backend, new Shape(b, t, g * dh), 1, -1.5f, 1.5f);
        using var r = Tensor.Uniform(backend, new Shape(1, g * dh, dh), 2, -0.3f, 0.3f);
        using var bias = Tensor.Uniform(backend, new Shape(g * dh), 3, -0.5f, 0.5f);
        var initial = names.Select((name, i) => (Tensor?)Tensor.Uniform(backend, new Shape(b, dh), (ulong)(10 + i), name == "n" ? 0.5f : -0.5f, name == "n" ? 1.5f : 0.5f)).ToList();
        var finals = names.Select(_ => (Tensor?)Tensor.Full(backend, new Shape(b, dh), float.NaN)).ToList();
        var dInitial = names.Select(_ => (Tensor?)Tensor.Full(backend, new Shape(b, dh), float.NaN)).ToList();
        using var y = Tensor.Full(backend, new Shape(b, t, dh), float.NaN);
        using var dy = Tensor.Uniform(backend, new Shape(b, t, dh), 4);
        using var dhT = Tensor.Uniform(backend, new Shape(b, dh), 5);
        using var dx = Tensor.Full(backend, x.Shape, float.NaN);
        using var dr = Tensor.Full(backend, r.Shape, float.NaN);
        using var dbias = Tensor.Full(backend, bias.Shape, float.NaN);
        try
        {
            var problem = Rnn.Forward(cell, x, r, bias, y, initial, null, null);
            using var saved = Tensor.Empty(backend, problem.SavedShape);
            Rnn.Forward(cell, x, r, bias, y, initial, finals, saved);
            parties = RnnParties.LastParties;
            Rnn.Backward(problem, y, saved, dy, dx, dr, dbias, [dhT], dInitial);
            var forward = y.ToArray().Concat(finals.SelectMany(f => f!.ToArray())).ToArray();
            float[][] gradients = [dx.ToArray(), dr.ToArray(), dbias.ToArray(), .. dInitial.Select(d => d!.ToArray())];
            foreach (var v in forward.Concat(gradients.SelectMany(a => a))) Assert.IsTrue(float.IsFinite(v), $"{cell}: non-finite result");
            return (forward, gradients);
        }
        finally
        {
            foreach (var s in initial.Concat(finals).Concat(dInitial)) s?.Dispose();
        }
    }

    /// <summary>A party that throws mid-recurrence (the test hook, at step 4 of 9) must not leave the
    /// other spinning at the step barrier for good: the call fails with that exception, forward and
    /// backward, whether the caller's party or the helper's fails, and the threads split the next call
    /// as before.</summary>
    [TestMethod]
    [DataRow(false, 0)]
    [DataRow(false, 1)]
    [DataRow(true, 0)]
    [DataRow(true, 1)]
    public void FailingPartyFailsTheCallInsteadOfHanging(bool backward, int failingParty)
    {
        if (Environment.ProcessorCount < 2) Assert.Inconclusive("one core: there is no split to fail");
        var backend = new CpuBackend { Threads = 2 };
        const int b = 4, t = 9, dh = 32, g = 4;
        using var x = Tensor.Uniform(backend, new Shape(b, t, g * dh), 1);
        using var r = Tensor.Uniform(backend, new Shape(1, g * dh, dh), 2, -0.3f, 0.3f);
        using var bias = Tensor.Uniform(backend, new Shape(g * dh), 3);
        using var y = Tensor.Empty(backend, new Shape(b, t, dh));
        using var dy = Tensor.Uniform(backend, y.Shape, 4);
        using var dx = Tensor.Empty(backend, x.Shape);
        using var dr = Tensor.Empty(backend, r.Shape);
        double keep = RnnRecurrence.MinFlopsToSplitStep;
        RnnRecurrence.MinFlopsToSplitStep = 0;
        try
        {
            var problem = Rnn.Forward(RnnCell.Lstm, x, r, bias, y);
            using var saved = Tensor.Empty(backend, problem.SavedShape);
            void Call()
            {
                if (backward) Rnn.Backward(problem, y, saved, dy, dx, dr, null);
                else Rnn.Forward(RnnCell.Lstm, x, r, bias, y, null, null, saved);
            }
            Call();
            nint target = (nint)CpuBackend.F32(x);
            int seen = 0;
            RnnParties.StepHook = (preactivations, party, step) =>
            {
                if (preactivations != target) return;
                Interlocked.Or(ref seen, 1 << party);
                if (party == failingParty && step == 4) throw new InvalidOperationException("injected failure");
            };
            var run = Task.Run(Call);
            Assert.IsTrue(((IAsyncResult)run).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(60)), "the recurrence hung after a party failed");
            RnnParties.StepHook = null;
            Assert.AreEqual(3, seen, "both parties should have run (GEMM helpers busy?)");
            var e = Assert.ThrowsExactly<InvalidOperationException>(() => run.GetAwaiter().GetResult());
            Assert.AreEqual("injected failure", e.Message);
            Call();
            Assert.AreEqual(2, RnnParties.LastParties, "the next call did not split");
        }
        finally
        {
            RnnParties.StepHook = null;
            RnnRecurrence.MinFlopsToSplitStep = keep;
        }
    }

    /// <summary>More threads than a head has 8-unit groups (a 16-core host runs Dh 64 with 16 threads):
    /// the parties are clamped to the groups, so no party index lacks units (found on the GPU host,
    /// bench/results/2026-12-01-h200-run9.txt). Dh 8 is one group: one party whatever is asked.</summary>
    [TestMethod]
    [DataRow(8, 2)]
    [DataRow(8, 16)]
    [DataRow(20, 16)]
    [DataRow(64, 1000)]
    public void PartiesNeverOutnumberUnitGroups(int headDim, int asked)
    {
        int planned = 0, ran = 0;
        RnnParties.Run(asked, headDim, count =>
        {
            planned = count;
            var units = RnnParties.Split(headDim, count);
            Assert.AreEqual(count, units.Length, $"Split({headDim}, {count}) makes {units.Length} parties");
            // the parties meet at a barrier, as the recurrences do, so every one of them runs
            var barrier = new StepBarrier(count);
            return new Head(barrier, party =>
            {
                Assert.IsTrue(party < units.Length, $"party {party} of {units.Length}");
                Interlocked.Increment(ref ran);
                barrier.Wait();
            });
        });
        Assert.IsTrue(planned >= 1 && planned <= (headDim + 7) / 8, $"{planned} parties for {headDim} units");
        Assert.AreEqual(planned, ran, $"planned {planned} parties for {headDim} units, {ran} ran");
    }

    private sealed class Head(StepBarrier barrier, Action<int> job) : IPartyHead
    {
        public StepBarrier Barrier => barrier;
        public void Run(int party) => job(party);
        public void Dispose() { }
    }
}
