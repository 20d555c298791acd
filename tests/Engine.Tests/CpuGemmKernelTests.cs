using FastWeights.Engine.Cpu;
using FastWeights.Engine.Cpu.Gemm;
using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

/// <summary>The CPU blocked GEMM at sizes that straddle its block edges (MR, NR, KC, MC, NC of each
/// micro-kernel, the AVX2 and scalar fallbacks included), against the float64 reference.</summary>
[TestClass]
public sealed class CpuGemmKernelTests
{
    private static readonly CpuBackend Cpu = CpuBackend.Shared;

    public static IEnumerable<object[]> EdgeCases()
    {
        foreach (string kernel in new[] { "512", "256", "scalar" })
        {
            var (mr, nr, kc, mc) = Blocking(kernel);
            foreach (var (m, n, k) in new[] { (mr - 1, nr + 1, kc + 1), (mr + 1, nr - 1, kc - 1), (mr, nr, kc), (2 * mr + 3, 3 * nr, 2 * kc + 1), (mc + 3, nr + 5, 40) })
                foreach (bool ta in new[] { false, true })
                    foreach (bool tb in new[] { false, true })
                        yield return [kernel, m, n, k, ta, tb];
        }
    }

    [TestMethod]
    [DynamicData(nameof(EdgeCases))]
    public void KernelMatchesReferenceAtBlockEdges(string kernel, int m, int n, int k, bool transposeA, bool transposeB)
    {
        // One thread, so one tile covers the whole of C and the MC edge is inside it.
        Check(kernel, 1, m, n, k, transposeA, transposeB, 0.75f, -0.5f, threads: 1);
    }

    [TestMethod]
    [DataRow("512")]
    [DataRow("256")]
    [DataRow("scalar")]
    public void PanelWiderThanNc(string kernel)
    {
        int nc = kernel switch { "512" => BlockedGemm<MicroKernel512x14x32>.Nc, "256" => BlockedGemm<MicroKernel256x6x16>.Nc, _ => BlockedGemm<MicroKernelScalar4x4>.Nc };
        Check(kernel, 1, 9, nc + 3, 17, false, false, 1f, 0f, threads: 1);
        Check(kernel, 1, 9, nc + 3, 17, true, true, 1f, 0.25f, threads: 2);
    }

    [TestMethod]
    [DataRow(false, false)]
    [DataRow(true, true)]
    public void CooperativePathSplitsWidePanels(bool transposeA, bool transposeB) =>
        // N beyond NC and K x N beyond the shared B buffer: several column panels, threads cooperating on each.
        Check("auto", 1, 40, 4100, 1100, transposeA, transposeB, 1f, 0.5f, threads: Cpu.Threads);

    [TestMethod]
    [DataRow(false, false)]
    [DataRow(true, true)]
    public void ManyBatchEntriesRunWholePerThread(bool transposeA, bool transposeB) =>
        Check("auto", 9, 64, 80, 200, transposeA, transposeB, 1f, -1f, Cpu.Threads, sharedB: true);

    [TestMethod]
    [DataRow(false, false)]
    [DataRow(false, true)]
    [DataRow(true, false)]
    [DataRow(true, true)]
    public void LargeAwkwardProblem(bool transposeA, bool transposeB) =>
        Check("auto", 1, 300, 1000, 257, transposeA, transposeB, 1.25f, 0.5f, threads: Cpu.Threads);

    [TestMethod]
    [DataRow(false, false)]
    [DataRow(false, true)]
    [DataRow(true, false)]
    [DataRow(true, true)]
    public void LargeProblemOverSeveralKBlocksAndRowBlocks(bool transposeA, bool transposeB)
    {
        // K over two KC blocks plus a remainder and M over MC, whatever the chosen kernel's blocking,
        // on the threads: row blocks of the cooperative path run every k block (beta on the first only).
        var (_, _, kc, mc) = Blocking(AutoKernel);
        Check("auto", 1, mc + 7, 300, 2 * kc + 3, transposeA, transposeB, 0.75f, -1.5f, threads: Cpu.Threads);
    }

    [TestMethod]
    [DataRow(true, false, false, false)]
    [DataRow(false, true, false, true)]
    [DataRow(true, false, true, true)]
    [DataRow(false, true, true, false)]
    public void BatchedWithSharedOperand(bool sharedA, bool sharedB, bool transposeA, bool transposeB)
    {
        const int batch = 3, m = 45, n = 70, k = 300;
        Check("auto", batch, m, n, k, transposeA, transposeB, 0.5f, 2f, Cpu.Threads, sharedA, sharedB);
    }

    [TestMethod]
    [DataRow(DType.F16, false, false)]
    [DataRow(DType.F16, true, true)]
    [DataRow(DType.BF16, false, true)]
    [DataRow(DType.BF16, true, false)]
    public void HalfInputsAtBlockEdges(DType dtype, bool transposeA, bool transposeB) =>
        Check("auto", 2, 15, 33, 257, transposeA, transposeB, 1f, 0f, Cpu.Threads, dtype: dtype);

    [TestMethod]
    [DataRow(DType.F16, false, false)]
    [DataRow(DType.BF16, true, true)]
    public void HalfInputsOverSeveralKBlocks(DType dtype, bool transposeA, bool transposeB) =>
        // One k block more than KC of the chosen kernel: the converted runs are packed per k block.
        Check("auto", 2, 15, 33, Blocking(AutoKernel).Kc + 1, transposeA, transposeB, 1f, 0.5f, Cpu.Threads, dtype: dtype);

    [TestMethod]
    public void BetaZeroNeverReadsPoisonedOutputOnBlockedPath()
    {
        // C starts as NaN: with beta == 0 every element, edge tiles included, must be overwritten.
        Check("auto", 2, 29, 47, 300, false, false, 1f, 0f, Cpu.Threads, poisonC: true);
    }

    [TestMethod]
    public void ThreadCountDoesNotChangeTheResult()
    {
        // Every element sums over k in the same blocks whatever the split, so results are bitwise
        // equal; checked for every micro-kernel this machine accelerates (the scalar one always).
        // (15 MFLOP: the two-thread run does split, see BlockedGemm.MinFlopsPerThread.)
        if (MicroKernel512x14x32.IsSupported) SameForOneAndTwoThreads<MicroKernel512x14x32>();
        if (MicroKernel256x6x16.IsSupported) SameForOneAndTwoThreads<MicroKernel256x6x16>();
        SameForOneAndTwoThreads<MicroKernelScalar4x4>();
    }

    [TestMethod]
    [DataRow("512")]
    [DataRow("256")]
    [DataRow("scalar")]
    public void FewRowsOverManyKBlocksOnTwoThreads(string kernel)
    {
        // Three slivers of rows and four k blocks and a remainder: the two threads claim items of the
        // same slivers in consecutive k blocks, and each must wait for the other's previous k block.
        // Enough flops that the GEMM splits (BlockedGemm.MinFlopsPerThread); same bits as one thread.
        var (mr, nr, kc, _) = Blocking(kernel);
        int m = 2 * mr + 3, k = 4 * kc + 7, n = Math.Max(3 * nr + 5, 9_000_000 / (2 * m * k) + 1);
        Check(kernel, 1, m, n, k, false, false, 0.75f, 0.5f, threads: 2);
        Check(kernel, 1, m, n, k, true, true, 1f, 0f, threads: 2);
        if (kernel == "512" && MicroKernel512x14x32.IsSupported) SameForOneAndTwoThreads<MicroKernel512x14x32>(m, n, k);
        if (kernel == "256" && MicroKernel256x6x16.IsSupported) SameForOneAndTwoThreads<MicroKernel256x6x16>(m, n, k);
        if (kernel == "scalar") SameForOneAndTwoThreads<MicroKernelScalar4x4>(m, n, k);
    }

    [TestMethod]
    [DataRow("512", true, false, false)]
    [DataRow("512", true, true, true)]
    [DataRow("512", false, false, true)]
    [DataRow("512", false, true, false)]
    [DataRow("256", true, false, true)]
    [DataRow("256", false, true, false)]
    [DataRow("scalar", true, false, false)]
    [DataRow("scalar", false, true, true)]
    public void OneMatrixInPartsMatchesReferenceAndOneThread(string kernel, bool byColumns, bool transposeA, bool transposeB)
    {
        // One part of C a thread (BlockedGemm.InParts): columns when N >= M, else rows, the last part
        // short and neither extent a multiple of the kernel's tile; over two k blocks and a remainder,
        // with alpha != 1 and beta != 0, so a part boundary off the one-thread tile grid would change bits.
        var (mr, nr, kc, _) = Blocking(kernel);
        int m = byColumns ? 3 * mr + 5 : 9 * mr + 5, n = byColumns ? 9 * nr + 7 : 2 * nr + 3;
        // K deep enough that the GEMM takes both threads (BlockedGemm.MinFlopsPerThread: 4 MFLOP each).
        int k = Math.Max(2 * kc + 9, 9_000_000 / (2 * m * n) + 1);
        Check(kernel, 1, m, n, k, transposeA, transposeB, 0.75f, -0.5f, threads: 2);
        if (kernel == "512" && MicroKernel512x14x32.IsSupported)
        {
            Assert.AreEqual(byColumns, BlockedGemm<MicroKernel512x14x32>.PartsAxis(m, n, k, 2));
            SameForOneAndTwoThreads<MicroKernel512x14x32>(m, n, k, transposeA, transposeB);
        }
        if (kernel == "256" && MicroKernel256x6x16.IsSupported)
        {
            Assert.AreEqual(byColumns, BlockedGemm<MicroKernel256x6x16>.PartsAxis(m, n, k, 2));
            SameForOneAndTwoThreads<MicroKernel256x6x16>(m, n, k, transposeA, transposeB);
        }
        if (kernel == "scalar")
        {
            Assert.AreEqual(byColumns, BlockedGemm<MicroKernelScalar4x4>.PartsAxis(m, n, k, 2));
            SameForOneAndTwoThreads<MicroKernelScalar4x4>(m, n, k, transposeA, transposeB);
        }
    }

    [TestMethod]
    public void PartsSplitTheAxisThatPacksLess()
    {
        // Column parts each pack all of A once a panel, row parts each pack all of B (BlockedGemm.PartsAxis).
        // 2048^3: column parts pack nothing extra (as many panels as one thread has) -> columns.
        Assert.AreEqual(true, BlockedGemm<MicroKernel512x14x32>.PartsAxis(2048, 2048, 2048, 2));
        // A weight gradient dW = dY^T X (1536 x 512 x 2048): A is 3x larger than B -> rows.
        Assert.AreEqual(false, BlockedGemm<MicroKernel512x14x32>.PartsAxis(1536, 512, 2048, 2));
        // Too few slivers on both axes for two threads -> no parts (the cooperative path).
        Assert.IsNull(BlockedGemm<MicroKernel512x14x32>.PartsAxis(100, 200, 5000, 2));
        // One axis only.
        Assert.AreEqual(true, BlockedGemm<MicroKernel512x14x32>.PartsAxis(40, 4100, 1100, 2));
        Assert.AreEqual(false, BlockedGemm<MicroKernel512x14x32>.PartsAxis(4100, 40, 1100, 2));
    }

    private static void SameForOneAndTwoThreads<TKernel>(int m = 131, int n = 97, int k = 600, bool transposeA = false, bool transposeB = false)
        where TKernel : struct, IGemmMicroKernel
    {
        using var a = Tensor.Uniform(Cpu, transposeA ? new Shape(k, m) : new Shape(m, k), 5);
        using var b = Tensor.Uniform(Cpu, transposeB ? new Shape(n, k) : new Shape(k, n), 6);
        using var c1 = Tensor.Uniform(Cpu, new Shape(m, n), 7);
        using var c2 = Tensor.Uniform(Cpu, new Shape(m, n), 7);
        BlockedGemm<TKernel>.Run(Gemm.Resolve(a, b, c1, transposeA, transposeB, 0.75f, -0.5f), 1);
        BlockedGemm<TKernel>.Run(Gemm.Resolve(a, b, c2, transposeA, transposeB, 0.75f, -0.5f), 2);
        CollectionAssert.AreEqual(c1.ToArray(), c2.ToArray(), $"{typeof(TKernel).Name} {m}x{n}x{k} tA={transposeA} tB={transposeB}: one thread vs two");
    }

    [TestMethod]
    public void ConcurrentCallersShareTheGemmThreads()
    {
        // Callers race for the persistent helper threads; the losers fall back to the thread pool.
        const int m = 150, n = 170, k = 300;
        float[] a = TestData.Uniform(m * k, 31), b = TestData.Uniform(k * n, 32);
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), new double[m * n], 1, m, n, k, false, false, 1, 0, false, false);
        using var ta = Tensor.FromArray(Cpu, a, new Shape(m, k));
        using var tb = Tensor.FromArray(Cpu, b, new Shape(k, n));
        var results = new float[4][];
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, caller =>
        {
            using var tc = Tensor.Full(Cpu, new Shape(m, n), float.NaN);
            for (int repeat = 0; repeat < 10; repeat++) Gemm.Forward(ta, tb, tc);
            results[caller] = tc.ToArray();
        });
        foreach (var result in results) TestData.AssertClose(expected, result, TestData.F32Tolerance(k), TestData.F32Tolerance(k), "Gemm from concurrent callers");
    }

    // The kernel CpuBackend.Gemm picks on this machine (the widest accelerated one).
    private static string AutoKernel => MicroKernel512x14x32.IsSupported ? "512" : MicroKernel256x6x16.IsSupported ? "256" : "scalar";

    private static (int Mr, int Nr, int Kc, int Mc) Blocking(string kernel) => kernel switch
    {
        "512" => (MicroKernel512x14x32.Mr, MicroKernel512x14x32.Nr, BlockedGemm<MicroKernel512x14x32>.Kc, BlockedGemm<MicroKernel512x14x32>.Mc),
        "256" => (MicroKernel256x6x16.Mr, MicroKernel256x6x16.Nr, BlockedGemm<MicroKernel256x6x16>.Kc, BlockedGemm<MicroKernel256x6x16>.Mc),
        "scalar" => (MicroKernelScalar4x4.Mr, MicroKernelScalar4x4.Nr, BlockedGemm<MicroKernelScalar4x4>.Kc, BlockedGemm<MicroKernelScalar4x4>.Mc),
        _ => throw new ArgumentException(kernel),
    };

    // Runs one GEMM with `kernel` ("auto": through Gemm.Forward) and compares with the reference.
    private static void Check(string kernel, int batch, int m, int n, int k, bool transposeA, bool transposeB, float alpha, float beta,
        int threads, bool sharedA = false, bool sharedB = false, DType dtype = DType.F32, bool poisonC = false)
    {
        string what = $"Gemm cpu {kernel} {dtype.Name()} {batch}x{m}x{n}x{k} tA={transposeA} tB={transposeB} sharedA={sharedA} sharedB={sharedB} threads={threads}";
        if (kernel == "512" && !MicroKernel512x14x32.IsSupported) Assert.Inconclusive($"{what}: Vector512 is not accelerated here");
        if (kernel == "256" && !MicroKernel256x6x16.IsSupported) Assert.Inconclusive($"{what}: Vector256 is not accelerated here");
        ulong seed = (ulong)(batch * 7919 + m * 1009 + n * 31 + k) * 4 + (transposeA ? 2UL : 0) + (transposeB ? 1UL : 0);
        int batchA = sharedA ? 1 : batch, batchB = sharedB ? 1 : batch;
        float[] a = TestData.RoundTrip(TestData.Uniform(batchA * m * k, seed), dtype);
        float[] b = TestData.RoundTrip(TestData.Uniform(batchB * k * n, seed + 1), dtype);
        float[] c0 = poisonC ? Enumerable.Repeat(float.NaN, batch * m * n).ToArray() : TestData.Uniform(batch * m * n, seed + 2);
        Shape Stored(int count, int rows, int cols) => count == 1 && (batch == 1 || sharedA || sharedB) ? new Shape(rows, cols) : new Shape(count, rows, cols);
        using var ta = Tensor.FromArray(Cpu, a, Stored(batchA, transposeA ? k : m, transposeA ? m : k), dtype);
        using var tb = Tensor.FromArray(Cpu, b, Stored(batchB, transposeB ? n : k, transposeB ? k : n), dtype);
        using var tc = Tensor.FromArray(Cpu, c0, batch == 1 ? new Shape(m, n) : new Shape(batch, m, n));
        var problem = Gemm.Resolve(ta, tb, tc, transposeA, transposeB, alpha, beta);
        switch (kernel)
        {
            case "auto": Cpu.Gemm(problem); break;
            case "512": BlockedGemm<MicroKernel512x14x32>.Run(problem, threads); break;
            case "256": BlockedGemm<MicroKernel256x6x16>.Run(problem, threads); break;
            case "scalar": BlockedGemm<MicroKernelScalar4x4>.Run(problem, threads); break;
        }
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), poisonC ? new double[c0.Length] : TestData.ToDouble(c0),
            batch, m, n, k, transposeA, transposeB, alpha, beta, sharedA, sharedB);
        // The absolute error of a sum of k O(1) products grows like sqrt(k) too (elements near 0 after
        // cancellation), so atol scales like rtol.
        TestData.AssertClose(expected, tc.ToArray(), TestData.F32Tolerance(k), TestData.F32Tolerance(k), what);
    }
}
