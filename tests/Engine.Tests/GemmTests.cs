using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class GemmTests
{
    public static IEnumerable<object[]> Cases()
    {
        foreach (string backend in new[] { "cpu", "vulkan" })
            foreach (var (batch, m, n, k) in new[] { (1, 1, 1, 1), (1, 17, 33, 65), (1, 127, 255, 63), (3, 19, 45, 30), (2, 70, 5, 129),
                (1, 17, 33, 1030), (3, 19, 45, 1030),    // K = 1030: Vulkan splits A^T B over K in 2 parts
                (1, 1, 70, 1030), (3, 1, 200, 5000), (1, 1, 3000, 17) })   // one row (B untransposed: gemm_row, split over K or not)
                foreach (bool ta in new[] { false, true })
                    foreach (bool tb in new[] { false, true })
                        yield return [backend, batch, m, n, k, ta, tb];
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void MatchesFloat64Reference(string backendName, int batch, int m, int n, int k, bool transposeA, bool transposeB)
    {
        var backend = TestBackends.Get(backendName);
        ulong seed = (ulong)(batch * 1000003 + m * 1009 + n * 31 + k) * 4 + (transposeA ? 2UL : 0) + (transposeB ? 1UL : 0);
        float[] a = TestData.Uniform(batch * m * k, seed);
        float[] b = TestData.Uniform(batch * k * n, seed + 1);
        float[] c0 = TestData.Uniform(batch * m * n, seed + 2);
        const float alpha = 0.75f, beta = -0.5f;
        using var ta = Tensor.FromArray(backend, a, batch == 1 ? new Shape(transposeA ? k : m, transposeA ? m : k) : new Shape(batch, transposeA ? k : m, transposeA ? m : k));
        using var tb = Tensor.FromArray(backend, b, batch == 1 ? new Shape(transposeB ? n : k, transposeB ? k : n) : new Shape(batch, transposeB ? n : k, transposeB ? k : n));
        using var tc = Tensor.FromArray(backend, c0, batch == 1 ? new Shape(m, n) : new Shape(batch, m, n));
        Gemm.Forward(ta, tb, tc, transposeA, transposeB, alpha, beta);
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), TestData.ToDouble(c0), batch, m, n, k, transposeA, transposeB, alpha, beta, false, false);
        TestData.AssertClose(expected, tc.ToArray(), TestData.F32Tolerance(k), SumTolerance(expected, k), $"Gemm {backendName} {batch}x{m}x{n}x{k} tA={transposeA} tB={transposeB}");
    }

    // Absolute part of the f32 tolerance: an element near zero is a sum of K terms whose partial
    // sums are as large as the typical element, so its rounding error grows like sqrt(K) times the
    // elements' RMS (a random walk of f32 roundings), whatever order the kernel sums in. Calibrated
    // so that K <= 129 at these magnitudes keeps the former 1e-5.
    private static double SumTolerance(double[] expected, int k)
    {
        double rms = Math.Sqrt(expected.Sum(e => e * e) / expected.Length);
        return 1e-5 * Math.Max(1.0, Math.Sqrt(k) * rms / 32);
    }

    [TestMethod]
    [DataRow("cpu", DType.F32)]
    [DataRow("cpu", DType.BF16)]
    [DataRow("vulkan", DType.F32)]
    [DataRow("vulkan", DType.BF16)]
    public void WritesIntoAViewOfCThatStartsOffABoundary(string backendName, DType dtype) =>
        CheckIntoUnalignedView(TestBackends.Get(backendName), dtype);

    /// <summary>C = 0.5 A B^T + 2 C into rows 1..129 of a [130, 129] f32 tensor: the view starts
    /// 516 bytes in, 4 past a 16-byte boundary (kernels that store C as cooperative matrices must not
    /// take it); the row before it must not change.</summary>
    internal static void CheckIntoUnalignedView(IBackend backend, DType dtype)
    {
        const int m = 129, n = 129, k = 64;
        float[] a = TestData.RoundTrip(TestData.Uniform(m * k, 71), dtype);
        float[] b = TestData.RoundTrip(TestData.Uniform(n * k, 72), dtype);
        float[] whole = TestData.Uniform((m + 1) * n, 73);
        using var ta = Tensor.FromArray(backend, a, new Shape(m, k), dtype);
        using var tb = Tensor.FromArray(backend, b, new Shape(n, k), dtype);
        using var tc = Tensor.FromArray(backend, whole, new Shape(m + 1, n));
        using (var view = tc.SliceRows(1, m))
        {
            Assert.AreEqual(4, view.ByteOffset % 16);
            Gemm.Forward(ta, tb, view, false, true, alpha: 0.5f, beta: 2f);
        }
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), TestData.ToDouble(whole[n..]), 1, m, n, k, false, true, 0.5, 2, false, false);
        float[] result = tc.ToArray();
        CollectionAssert.AreEqual(whole[..n], result[..n], "the row before the view changed");
        TestData.AssertClose(expected, result[n..], TestData.F32Tolerance(k), 1e-4, $"{dtype} GEMM into an unaligned view of C");
    }

    [TestMethod]
    [DataRow("cpu", DType.F16)]
    [DataRow("cpu", DType.BF16)]
    [DataRow("vulkan", DType.F16)]
    [DataRow("vulkan", DType.BF16)]
    public void HalfInputsAccumulateInF32(string backendName, DType dtype)
    {
        var backend = TestBackends.Get(backendName);
        const int m = 37, n = 70, k = 133;
        float[] a = TestData.RoundTrip(TestData.Uniform(m * k, 11), dtype), b = TestData.RoundTrip(TestData.Uniform(k * n, 12), dtype);
        using var ta = Tensor.FromArray(backend, a, new Shape(m, k), dtype);
        using var tb = Tensor.FromArray(backend, b, new Shape(k, n), dtype);
        using var tc = Tensor.Full(backend, new Shape(m, n), float.NaN);
        Gemm.Forward(ta, tb, tc);
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), new double[m * n], 1, m, n, k, false, false, 1, 0, false, false);
        TestData.AssertClose(expected, tc.ToArray(), TestData.F32Tolerance(k), 1e-5, $"Gemm {dtype}");
    }

    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void BetaZeroOverwritesPoisonedOutput(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        float[] a = TestData.Uniform(5 * 9, 1), b = TestData.Uniform(9 * 7, 2);
        using var ta = Tensor.FromArray(backend, a, new Shape(5, 9));
        using var tb = Tensor.FromArray(backend, b, new Shape(9, 7));
        using var tc = Tensor.Full(backend, new Shape(5, 7), float.NaN);
        Gemm.Forward(ta, tb, tc);
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), new double[35], 1, 5, 7, 9, false, false, 1, 0, false, false);
        TestData.AssertClose(expected, tc.ToArray(), 1e-5, 1e-6, "Gemm beta=0 over NaN");
    }

    [TestMethod]
    [DataRow("cpu")]
    [DataRow("vulkan")]
    public void SharedOperandBroadcastsOverBatch(string backendName)
    {
        var backend = TestBackends.Get(backendName);
        const int batch = 4, m = 6, n = 11, k = 13;
        float[] a = TestData.Uniform(batch * m * k, 3), w = TestData.Uniform(n * k, 4);
        using var ta = Tensor.FromArray(backend, a, new Shape(batch, m, k));
        using var tw = Tensor.FromArray(backend, w, new Shape(n, k));
        using var tc = Tensor.Full(backend, new Shape(batch, m, n), float.NaN);
        Gemm.Forward(ta, tw, tc, transposeB: true);
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(w), new double[batch * m * n], batch, m, n, k, false, true, 1, 0, false, true);
        TestData.AssertClose(expected, tc.ToArray(), 1e-5, 1e-6, "Gemm shared B");
    }

    [TestMethod]
    [DataRow("cpu", false, false)]
    [DataRow("cpu", true, false)]
    [DataRow("cpu", false, true)]
    [DataRow("cpu", true, true)]
    [DataRow("vulkan", true, false)]
    [DataRow("vulkan", false, true)]
    public void BackwardMatchesFiniteDifferencesOfReference(string backendName, bool transposeA, bool transposeB)
    {
        // L = sum(G ⊙ C) with C = alpha op(A) op(B): dL/dA, dL/dB from Gemm.Backward vs central differences
        // of the float64 reference.
        var backend = TestBackends.Get(backendName);
        const int batch = 2, m = 5, n = 4, k = 7;
        const double alpha = 1.5, h = 1e-6;
        float[] a = TestData.Uniform(batch * m * k, 21), b = TestData.Uniform(batch * k * n, 22), g = TestData.Uniform(batch * m * n, 23);
        Shape sa = new(batch, transposeA ? k : m, transposeA ? m : k), sb = new(batch, transposeB ? n : k, transposeB ? k : n);
        using var ta = Tensor.FromArray(backend, a, sa);
        using var tb = Tensor.FromArray(backend, b, sb);
        using var tg = Tensor.FromArray(backend, g, new Shape(batch, m, n));
        using var da = Tensor.Full(backend, sa, float.NaN);
        using var db = Tensor.Full(backend, sb, float.NaN);
        Gemm.Backward(ta, tb, tg, da, db, transposeA, transposeB, (float)alpha);

        double Loss(double[] av, double[] bv)
        {
            var c = GemmReference.Forward(av, bv, new double[batch * m * n], batch, m, n, k, transposeA, transposeB, alpha, 0, false, false);
            double sum = 0;
            for (int i = 0; i < c.Length; i++) sum += c[i] * g[i];
            return sum;
        }
        double[] ad = TestData.ToDouble(a), bd = TestData.ToDouble(b);
        double[] Numeric(double[] x, bool isA)
        {
            var grad = new double[x.Length];
            for (int i = 0; i < x.Length; i++)
            {
                double keep = x[i];
                x[i] = keep + h; double up = isA ? Loss(x, bd) : Loss(ad, x);
                x[i] = keep - h; double down = isA ? Loss(x, bd) : Loss(ad, x);
                x[i] = keep;
                grad[i] = (up - down) / (2 * h);
            }
            return grad;
        }
        TestData.AssertClose(Numeric(ad, true), da.ToArray(), 1e-4, 1e-5, "dA");
        TestData.AssertClose(Numeric(bd, false), db.ToArray(), 1e-4, 1e-5, "dB");
    }

    [TestMethod]
    public void RejectsMismatchedInnerDimension()
    {
        var cpu = TestBackends.Get("cpu");
        using var a = Tensor.Zeros(cpu, new Shape(3, 4, 16));
        using var b = Tensor.Zeros(cpu, new Shape(3, 17, 5));
        using var c = Tensor.Zeros(cpu, new Shape(3, 4, 5));
        var e = Assert.ThrowsExactly<OpArgumentException>(() => Gemm.Forward(a, b, c));
        StringAssert.Contains(e.Message, "Gemm");
        StringAssert.Contains(e.Message, "'b'");
        StringAssert.Contains(e.Message, "[3, 17, 5]");
        StringAssert.Contains(e.Message, "[3, 4, 16]");
    }

    [TestMethod]
    public void RejectsWrongRankAndOutputShape()
    {
        var cpu = TestBackends.Get("cpu");
        using var a = Tensor.Zeros(cpu, new Shape(4));
        using var a2 = Tensor.Zeros(cpu, new Shape(4, 6));
        using var b = Tensor.Zeros(cpu, new Shape(6, 5));
        using var c = Tensor.Zeros(cpu, new Shape(4, 4));
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Gemm.Forward(a, b, c)).Message, "Gemm: argument 'a' must have rank 2 to 4 but has shape [4]");
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Gemm.Forward(a2, b, c)).Message, "Gemm: argument 'c' has shape [4, 4] but op(a) op(b) is 4 x 5");
    }

    [TestMethod]
    public void RejectsWrongDType()
    {
        var cpu = TestBackends.Get("cpu");
        using var a = Tensor.Zeros(cpu, new Shape(4, 6), DType.F16);
        using var b = Tensor.Zeros(cpu, new Shape(6, 5));
        using var c = Tensor.Zeros(cpu, new Shape(4, 5));
        using var c16 = Tensor.Zeros(cpu, new Shape(4, 5), DType.BF16);
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Gemm.Forward(a, b, c)).Message, "dtype f32 but 'a' [4, 6] has f16");
        using var b16 = Tensor.Zeros(cpu, new Shape(6, 5), DType.F16);
        StringAssert.Contains(Assert.ThrowsExactly<OpArgumentException>(() => Gemm.Forward(a, b16, c16)).Message, "'c' [4, 5] has dtype bf16 but must be f32");
    }

    [TestMethod]
    public void RejectsTensorsFromTwoBackends()
    {
        var cpu = TestBackends.Get("cpu");
        var vulkan = TestBackends.Get("vulkan");
        using var a = Tensor.Zeros(cpu, new Shape(4, 6));
        using var b = Tensor.Zeros(vulkan, new Shape(6, 5));
        using var c = Tensor.Zeros(cpu, new Shape(4, 5));
        var e = Assert.ThrowsExactly<OpArgumentException>(() => Gemm.Forward(a, b, c));
        StringAssert.Contains(e.Message, "Gemm: argument 'b' [6, 5] lives on backend 'vulkan' but 'a' lives on 'cpu'");
    }

    [TestMethod]
    public void RejectsDisposedTensor()
    {
        var cpu = TestBackends.Get("cpu");
        var a = Tensor.Zeros(cpu, new Shape(4, 6));
        using var b = Tensor.Zeros(cpu, new Shape(6, 5));
        using var c = Tensor.Zeros(cpu, new Shape(4, 5));
        a.Dispose();
        var e = Assert.ThrowsExactly<ObjectDisposedException>(() => Gemm.Forward(a, b, c));
        StringAssert.Contains(e.Message, "Gemm: argument 'a' [4, 6] was disposed");
    }
}
