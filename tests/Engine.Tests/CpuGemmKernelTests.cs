using FastWeights.Engine.Cpu;
using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;

namespace FastWeights.Engine.Tests;

/// <summary>The blocked CPU GEMM at sizes that straddle its register block (12 x 32 with AVX-512,
/// 6 x 16 with AVX2), its K block (256) and its M block (up to 144), with every transpose.</summary>
[TestClass]
public sealed class CpuGemmKernelTests
{
    public static IEnumerable<object[]> Cases() =>
        from size in new[] { (11, 31, 255), (13, 33, 257), (12, 32, 256), (15, 31, 100), (239, 40, 20), (147, 65, 513), (300, 1000, 257), (5, 700, 3) }
        from ta in new[] { false, true }
        from tb in new[] { false, true }
        select new object[] { size.Item1, size.Item2, size.Item3, ta, tb };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void BlockEdgesMatchReference(int m, int n, int k, bool transposeA, bool transposeB)
    {
        var cpu = CpuBackend.Shared;
        float[] a = TestData.Uniform(m * k, (ulong)(m + n + k)), b = TestData.Uniform(k * n, (ulong)(m * n + k)), c0 = TestData.Uniform(m * n, 3);
        using var ta = Tensor.FromArray(cpu, a, transposeA ? new Shape(k, m) : new Shape(m, k));
        using var tb = Tensor.FromArray(cpu, b, transposeB ? new Shape(n, k) : new Shape(k, n));
        using var tc = Tensor.FromArray(cpu, c0, new Shape(m, n));
        Gemm.Forward(ta, tb, tc, transposeA, transposeB, 1.25f, 0.5f);
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), TestData.ToDouble(c0), 1, m, n, k, transposeA, transposeB, 1.25, 0.5, false, false);
        TestData.AssertClose(expected, tc.ToArray(), TestData.F32Tolerance(k), 1e-5, $"cpu gemm {m}x{n}x{k} tA={transposeA} tB={transposeB}");
    }

    [TestMethod]
    public void BatchedWithSharedOperandsAcrossThreads()
    {
        var cpu = new CpuBackend { Threads = 3 };
        const int batch = 3, m = 100, n = 70, k = 300;
        float[] a = TestData.Uniform(m * k, 1), b = TestData.Uniform(batch * k * n, 2);
        using var ta = Tensor.FromArray(cpu, a, new Shape(m, k));
        using var tb = Tensor.FromArray(cpu, b, new Shape(batch, k, n));
        using var tc = Tensor.Full(cpu, new Shape(batch, m, n), float.NaN);
        Gemm.Forward(ta, tb, tc);
        var expected = GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), new double[batch * m * n], batch, m, n, k, false, false, 1, 0, true, false);
        TestData.AssertClose(expected, tc.ToArray(), TestData.F32Tolerance(k), 1e-5, "batched shared A");
    }
}
