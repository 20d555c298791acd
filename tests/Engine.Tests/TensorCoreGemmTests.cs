using FastWeights.Engine.Ops;
using FastWeights.Engine.Tests.Reference;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Engine.Tests;

/// <summary>The cooperative-matrix GEMM, on a device that lists its shapes (a GPU host; CI's
/// lavapipe has none, so CI excludes this category). Fails, rather than skips, on a device
/// without tensor cores, so running the category where it cannot work is visible.</summary>
[TestClass]
[TestCategory("TensorCores")]
public sealed class TensorCoreGemmTests
{
    /// <summary>"default": what the backend picks (VK_NV_cooperative_matrix2 where the device has it);
    /// "khr": a second backend with cooperative-matrix-2 turned off, so the KHR kernels are checked on
    /// such devices too.</summary>
    private static readonly Lazy<VulkanBackend?> KhrOnly = new(() => VulkanBackend.TryCreate(new VulkanOptions { AllowCpuDevices = true, DisableCooperativeMatrix2 = true }, out _));

    private static VulkanBackend Backend(string path)
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        return path == "khr" ? KhrOnly.Value ?? throw new AssertFailedException("no second Vulkan backend") : backend;
    }

    public static IEnumerable<object[]> Cases() =>
        from path in new[] { "default", "khr" }
        from dtype in new[] { DType.F16, DType.BF16 }
        from size in new[] { (1, 136, 264, 200), (3, 64, 40, 1000), (2, 257, 129, 72), (2, 256, 384, 144) }
        from ta in new[] { false, true }
        from tb in new[] { false, true }
        where (ta ? size.Item2 : size.Item4) % 8 == 0 && (tb ? size.Item4 : size.Item3) % 8 == 0
        select new object[] { path, dtype, size.Item1, size.Item2, size.Item3, size.Item4, ta, tb };

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void CooperativeMatrixGemmMatchesReference(string path, DType dtype, int batch, int m, int n, int k, bool transposeA, bool transposeB)
    {
        var backend = Backend(path);
        Check(backend, dtype, batch, m, n, k, transposeA, transposeB);
    }

    /// <summary>Every tile of the cooperative-matrix-2 kernel on shapes that tile exactly (the
    /// unclamped variants), where the device has VK_NV_cooperative_matrix2; with and without shapes
    /// as specialisation constants, and with grouped rasterisation off and on (4 tile rows of BM = 128
    /// in groups of 3, so the last group is partial).</summary>
    [TestMethod]
    public void EveryCoopMat2TileMatchesReference()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        if (!backend.Device.UseCooperativeMatrix2) return;   // the KHR cases above cover this device
        string saved = backend.CoopMat2Tile;
        bool savedSpecialise = backend.SpecialiseGemmShapes;
        int savedGroup = backend.CoopMat2GroupRows;
        try
        {
            foreach (string tile in VulkanBackend.CoopMat2Tiles)
            foreach (var (specialise, group) in new[] { (false, 0), (true, 0), (true, 3) })
            {
                backend.CoopMat2Tile = tile;
                backend.SpecialiseGemmShapes = specialise;
                backend.CoopMat2GroupRows = group;
                foreach (var dtype in new[] { DType.F16, DType.BF16 })
                    foreach (bool ta in new[] { false, true })
                        foreach (bool tb in new[] { false, true })
                        {
                            StringAssert.Contains(backend.GemmKernelFor(dtype, 512, 256, 384, ta, tb), tile, $"tile {tile} not chosen");
                            Check(backend, dtype, 2, 512, 256, 384, ta, tb);
                        }
            }
        }
        finally
        {
            backend.CoopMat2Tile = saved; backend.SpecialiseGemmShapes = savedSpecialise;
            backend.CoopMat2GroupRows = savedGroup;
        }
        // "auto" times the tiles on the first call of a shape and keeps one of them
        backend.CoopMat2Tile = "auto";
        try
        {
            Check(backend, DType.BF16, 1, 512, 256, 320, false, true);
            string chosen = backend.GemmKernelFor(DType.BF16, 512, 256, 320, false, true);
            Assert.IsTrue(VulkanBackend.CoopMat2Tiles.Any(t => chosen.Contains(t)), $"auto chose no tile: {chosen}");
        }
        finally { backend.CoopMat2Tile = saved; }
    }

    /// <summary>Each cooperative-matrix-2 tile at every workgroup size the device lists for it
    /// (CoopMat2Invocations), on a shape that tiles exactly.</summary>
    [TestMethod]
    public void CoopMat2TilesAtEveryListedWorkgroupSizeMatchReference()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        if (!backend.Device.UseCooperativeMatrix2) return;   // the KHR cases above cover this device
        string saved = backend.CoopMat2Tile;
        int? savedInvocations = backend.CoopMat2Invocations;
        int checkedCount = 0;
        try
        {
            foreach (string tile in VulkanBackend.CoopMat2Tiles)
            foreach (int invocations in new[] { 128, 256, 512 })
            {
                backend.CoopMat2Tile = tile;
                backend.CoopMat2Invocations = invocations;
                if (!backend.GemmKernelFor(DType.BF16, 512, 256, 384).Contains($" x{invocations}")) continue;   // not listed for this tile
                foreach (var dtype in new[] { DType.F16, DType.BF16 })
                    Check(backend, dtype, 2, 512, 256, 384, false, true);
                checkedCount++;
            }
        }
        finally { backend.CoopMat2Tile = saved; backend.CoopMat2Invocations = savedInvocations; }
        // The H100 and H200 list 32x16x16 granules at 128 invocations, which every tile is made of.
        if (backend.Capabilities.HasFlexibleMatrix(128, 128, 32, ComponentType.BFloat16, 128))
            Assert.IsTrue(checkedCount > VulkanBackend.CoopMat2Tiles.Length, "128 invocations are listed, but no tile ran with them");
    }

    /// <summary>The cooperative-matrix-2 kernel that stages its operands itself (CoopMat2Staged), with
    /// each way of reading the staged blocks, on a shape of whole 128 x 128 x 32 tiles with 12 K steps
    /// (so both shared buffers take turns), every transpose combination, with and without shapes as
    /// specialisation constants and grouped rasterisation, and at every workgroup size the device
    /// lists for the tile.</summary>
    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void StagedCoopMat2KernelMatchesReference(bool tensorLoads)
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        if (!backend.Device.UseCooperativeMatrix2) return;   // the KHR cases above cover this device
        bool saved = backend.CoopMat2Staged, savedTensorLoads = backend.CoopMat2StagedTensorLoads, savedSpecialise = backend.SpecialiseGemmShapes;
        int savedGroup = backend.CoopMat2GroupRows;
        int? savedInvocations = backend.CoopMat2Invocations;
        try
        {
            backend.CoopMat2Staged = true;
            backend.CoopMat2StagedTensorLoads = tensorLoads;
            foreach (var (specialise, group) in new[] { (false, 0), (true, 0), (true, 3) })
            {
                backend.SpecialiseGemmShapes = specialise;
                backend.CoopMat2GroupRows = group;
                foreach (var dtype in new[] { DType.F16, DType.BF16 })
                    foreach (bool ta in new[] { false, true })
                        foreach (bool tb in new[] { false, true })
                        {
                            StringAssert.Contains(backend.GemmKernelFor(dtype, 512, 256, 384, ta, tb), tensorLoads ? "staged_tensor" : "staged", "the staged kernel was not chosen");
                            Check(backend, dtype, 2, 512, 256, 384, ta, tb);
                        }
            }
            foreach (int invocations in new[] { 256, 512 })
            {
                backend.CoopMat2Invocations = invocations;
                if (!backend.GemmKernelFor(DType.BF16, 512, 256, 384).Contains($" x{invocations}")) continue;   // not listed for the tile
                foreach (var dtype in new[] { DType.F16, DType.BF16 })
                    Check(backend, dtype, 2, 512, 256, 384, false, true);
            }
            // Shapes that do not tile exactly keep the clamped driver-staged kernel.
            StringAssert.Contains(backend.GemmKernelFor(DType.BF16, 512, 256, 376), "clamp");
        }
        finally
        {
            backend.CoopMat2Staged = saved; backend.CoopMat2StagedTensorLoads = savedTensorLoads;
            backend.SpecialiseGemmShapes = savedSpecialise;
            backend.CoopMat2GroupRows = savedGroup; backend.CoopMat2Invocations = savedInvocations;
        }
    }

    /// <summary>Past the cap on specialised shapes (MaxSpecialisedGemmShapes), new shapes run the
    /// variant's unspecialised pipeline: on the cooperative-matrix-2 tile and on the KHR direct kernel.</summary>
    [TestMethod]
    public void ShapesPastTheSpecialisationCapRunTheGenericPipeline()
    {
        foreach (var backend in new[] { Backend("default"), Backend("khr") })
        {
            int savedCap = backend.MaxSpecialisedGemmShapes;
            string savedTile = backend.CoopMat2Tile;
            try
            {
                backend.MaxSpecialisedGemmShapes = 0;
                backend.CoopMat2Tile = "128x128x64";
                foreach (var dtype in new[] { DType.F16, DType.BF16 })
                    foreach (bool tb in new[] { false, true })
                    {
                        // 384 x 256 x 320: whole tiles of both kernels, a shape no other test uses.
                        string kernel = backend.GemmKernelFor(dtype, 384, 256, 320, false, tb);
                        Assert.IsFalse(kernel.Contains("specialised"), $"{kernel}: specialised past the cap");
                        Check(backend, dtype, 2, 384, 256, 320, false, tb);
                    }
            }
            finally { backend.MaxSpecialisedGemmShapes = savedCap; backend.CoopMat2Tile = savedTile; }
        }
    }

    /// <summary>C whose batch entries do not start 16-byte aligned (a view 4 bytes past a boundary; a
    /// batch of 129 x 129 floats an entry) is written element by element by the shared-memory KHR
    /// kernel, never as cooperative matrices, and nothing outside C changes.</summary>
    [TestMethod]
    public void UnalignedCIsWrittenElementByElement()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        const int m = 129, n = 129, k = 64;
        StringAssert.StartsWith(backend.GemmKernelFor(DType.BF16, m, n, k, false, true, batch: 2), "coopmat");
        Assert.IsFalse(backend.GemmKernelFor(DType.BF16, m, n, k, false, true, batch: 2).Contains("coopmat2"), "a batch of 129 x 129 floats an entry went to cooperative stores");
        Check(backend, DType.BF16, 2, m, n, k, false, true);
        GemmTests.CheckIntoUnalignedView(backend, DType.BF16);
    }

    /// <summary>The shared-memory-free KHR kernel with and without register double-buffering, on
    /// shapes it takes (M, N multiples of 128; K a multiple of 16 but not of 32, so the pipelined
    /// loop ends on its first half).</summary>
    [TestMethod]
    public void DirectKernelVariantsMatchReference()
    {
        var backend = Backend("khr");
        bool saved = backend.CoopMatDirectPipelined, savedSpecialise = backend.SpecialiseGemmShapes;
        try
        {
            foreach (var (pipelined, specialise) in new[] { (false, false), (true, false), (false, true), (true, true) })
            {
                backend.CoopMatDirectPipelined = pipelined;
                backend.SpecialiseGemmShapes = specialise;
                foreach (var dtype in new[] { DType.F16, DType.BF16 })
                    foreach (int k in new[] { 16, 48, 192 })
                        foreach (bool ta in new[] { false, true })
                            foreach (bool tb in new[] { false, true })
                            {
                                StringAssert.StartsWith(backend.GemmKernelFor(dtype, 128, 256, k, ta, tb), pipelined ? "coopmat-direct-pipelined" : "coopmat-direct");
                                Check(backend, dtype, 2, 128, 256, k, ta, tb);
                            }
            }
        }
        finally { backend.CoopMatDirectPipelined = saved; backend.SpecialiseGemmShapes = savedSpecialise; }
    }

    private readonly record struct CaseKey(DType DType, int Batch, int M, int N, int K, bool TransposeA, bool TransposeB);

    /// <summary>Operands and float64 reference of each case, computed once: the tile and kernel
    /// variants above check many kernels on the same few cases, and each reference is a float64 triple
    /// loop over up to 100 million products on the host.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<CaseKey, (float[] A, float[] B, float[] C0, double[] Expected)> ReferenceCases = new();

    private static void Check(VulkanBackend backend, DType dtype, int batch, int m, int n, int k, bool transposeA, bool transposeB)
    {
        StringAssert.StartsWith(backend.GemmKernelFor(dtype, m, n, k, transposeA, transposeB, batch), "coopmat", $"{backend.DeviceName} does not run the cooperative-matrix GEMM for {dtype}");
        var (a, b, c0, expected) = ReferenceCases.GetOrAdd(new CaseKey(dtype, batch, m, n, k, transposeA, transposeB), _ =>
        {
            ulong seed = (ulong)(m * 7 + n * 11 + k * 13 + batch) + (transposeA ? 100UL : 0) + (transposeB ? 1000UL : 0);
            float[] a = TestData.RoundTrip(TestData.Uniform(batch * m * k, seed), dtype);
            float[] b = TestData.RoundTrip(TestData.Uniform(batch * k * n, seed + 1), dtype);
            float[] c0 = TestData.Uniform(batch * m * n, seed + 2);
            return (a, b, c0, GemmReference.Forward(TestData.ToDouble(a), TestData.ToDouble(b), TestData.ToDouble(c0), batch, m, n, k, transposeA, transposeB, 0.5, 2, false, false));
        });
        using var ta = Tensor.FromArray(backend, a, new Shape(batch, transposeA ? k : m, transposeA ? m : k), dtype);
        using var tb = Tensor.FromArray(backend, b, new Shape(batch, transposeB ? n : k, transposeB ? k : n), dtype);
        using var tc = Tensor.FromArray(backend, c0, new Shape(batch, m, n));
        Gemm.Forward(ta, tb, tc, transposeA, transposeB, alpha: 0.5f, beta: 2f);
        // Inputs are exactly representable (rounded above); products are exact in f32 and the sum
        // accumulates in f32, so the fp32 tolerance applies.
        TestData.AssertClose(expected, tc.ToArray(), TestData.F32Tolerance(k), 1e-4, $"{backend.GemmKernelFor(dtype, m, n, k, transposeA, transposeB, batch)} {dtype} {batch}x{m}x{n}x{k} tA={transposeA} tB={transposeB}");
    }

    [TestMethod]
    public void CooperativeMatrixAgreesWithPortableKernelAtLargeSize()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        const int n = 1024;
        using var a = Tensor.Uniform(backend, new Shape(n, n), 5, dtype: DType.F16);
        using var b = Tensor.Uniform(backend, new Shape(n, n), 6, dtype: DType.F16);
        using var viaTensorCores = Tensor.Empty(backend, new Shape(n, n));
        Gemm.Forward(a, b, viaTensorCores);
        using var a32 = Pointwise.Convert(a, DType.F32);
        using var b32 = Pointwise.Convert(b, DType.F32);
        using var portable = Tensor.Empty(backend, new Shape(n, n));
        Gemm.Forward(a32, b32, portable);
        TestData.AssertClose(TestData.ToDouble(portable.ToArray()), viaTensorCores.ToArray(), 1e-4, 1e-3, "coopmat vs tiled at 1024^3");
    }
}
