using FastWeights.Engine.Ops;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Engine.Tests;

[TestClass]
public sealed class VulkanBackendTests
{
    private static VulkanBackend Vulkan => (VulkanBackend)TestBackends.Get("vulkan");

    [TestMethod]
    public void ThousandSmallGemmsTakeFewSubmits()
    {
        var backend = Vulkan;
        using var a = Tensor.Uniform(backend, new Shape(16, 16), 1);
        using var b = Tensor.Uniform(backend, new Shape(16, 16), 2);
        using var c = Tensor.Zeros(backend, new Shape(16, 16));
        backend.Synchronize();
        long submits = backend.Stream.SubmitCount;
        for (int i = 0; i < 1000; i++) Gemm.Forward(a, b, c, alpha: 1e-3f, beta: 1f);
        var result = c.ToArray();
        long used = backend.Stream.SubmitCount - submits;
        Assert.IsTrue(used <= 1000 / CommandStream.DispatchesPerSubmit + 1, $"1000 GEMMs took {used} submits");
        // c = 1e-3 * 1000 * (a b) = a b
        var expected = Reference.GemmReference.Forward(TestData.ToDouble(a.ToArray()), TestData.ToDouble(b.ToArray()), new double[256], 1, 16, 16, 16, false, false, 1, 0, false, false);
        TestData.AssertClose(expected, result, 1e-4, 1e-5, "accumulated GEMMs");
    }

    // The shaders index elements with 32-bit unsigned integers: a tensor of 2^32 elements or more is
    // refused before anything is allocated, naming the shape (it would otherwise wrap around).
    [TestMethod]
    public void TensorsBeyondThe32BitIndexRangeAreRefused()
    {
        var backend = Vulkan;
        Assert.AreEqual(uint.MaxValue, backend.MaxTensorElements);
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            var e = Assert.ThrowsExactly<ArgumentException>(() => Tensor.Empty(backend, new Shape(65536, 65536), dtype));
            StringAssert.Contains(e.Message, "Tensor.Empty");
            StringAssert.Contains(e.Message, new Shape(65536, 65536).ToString());
            StringAssert.Contains(e.Message, "4294967295");
        }
        // the CPU kernels index with 32-bit ints: 2^31 elements are refused there
        var cpu = TestBackends.Get("cpu");
        Assert.AreEqual(int.MaxValue, cpu.MaxTensorElements);
        var onCpu = Assert.ThrowsExactly<ArgumentException>(() => Tensor.Empty(cpu, new Shape(32768, 65536)));
        StringAssert.Contains(onCpu.Message, "2147483647");
    }

    // A dispatch with more workgroups along an axis than the device allows is refused with the kernel
    // and the counts (recording it would be undefined behaviour): the chunked delta rule runs one
    // workgroup per (chunk, b H + h) along y, so B H = maxComputeWorkGroupCount.y + 1 is one too many.
    [TestMethod]
    public void DispatchesBeyondTheDeviceWorkgroupLimitAreRefused()
    {
        var backend = Vulkan;
        long limit = backend.Capabilities.MaxWorkgroupCount.Y;
        Assert.IsTrue(limit < 1 << 22, $"maxComputeWorkGroupCount.y = {limit}: too large for this test's tensors");
        int batch = (int)limit + 1;
        using var q = Tensor.Uniform(backend, new Shape(batch, 1, 1, 1), 1);
        using var k = Tensor.Uniform(backend, new Shape(batch, 1, 1, 1), 2);
        using var v = Tensor.Uniform(backend, new Shape(batch, 1, 1, 1), 3);
        using var beta = Tensor.Full(backend, new Shape(batch, 1, 1), 0.5f);
        using var output = Tensor.Empty(backend, new Shape(batch, 1, 1, 1));
        var e = Assert.ThrowsExactly<NotSupportedException>(() => DeltaRule.Forward(q, k, v, beta, output, algorithm: DeltaRuleAlgorithm.Chunked));
        StringAssert.Contains(e.Message, "delta_rule/chunk_wy");
        StringAssert.Contains(e.Message, $"1 x {batch} x 1 workgroups");
        // the stream still works after the refusal
        using var small = Tensor.Uniform(backend, new Shape(2, 1, 1, 1), 4);
        using var smallBeta = Tensor.Full(backend, new Shape(2, 1, 1), 0.5f);
        using var smallOut = Tensor.Full(backend, new Shape(2, 1, 1, 1), float.NaN);
        DeltaRule.Forward(small, small, small, smallBeta, smallOut, algorithm: DeltaRuleAlgorithm.Chunked);
        // one token from a zero state: o = beta (k . q) v with q = k = v = x
        var x = small.ToArray();
        var o = smallOut.ToArray();
        for (int i = 0; i < 2; i++) Assert.AreEqual(0.5 * x[i] * x[i] * x[i], o[i], 1e-6, $"batch {i}");
    }

    [TestMethod]
    public void UploadsAndDownloadsLargerThanTheStagingRing()
    {
        var backend = Vulkan;
        int n = (80 << 20) / 4; // 80 MiB of f32 > the 64 MiB staging ring
        var data = new float[n];
        for (int i = 0; i < n; i++) data[i] = i * 0.5f + 1f;
        using var t = Tensor.FromArray(backend, data, new Shape(n));
        var back = t.ToArray();
        for (int i = 0; i < n; i += 4099) Assert.AreEqual(data[i], back[i], $"element {i}");
        Assert.AreEqual(data[n - 1], back[n - 1]);
    }

    [TestMethod]
    public void FreedMemoryIsReusedAndViewsKeepTheirOffsets()
    {
        var backend = Vulkan;
        long before = backend.Memory.ReservedBytes;
        for (int i = 0; i < 200; i++) Tensor.Zeros(backend, new Shape(1 << 18)).Dispose();
        Assert.AreEqual(before == 0 ? backend.Memory.ReservedBytes : before, backend.Memory.ReservedBytes, "allocations of freed tensors should not grow the pool");
        using var whole = Tensor.FromArray(backend, TestData.Uniform(6 * 4, 3), new Shape(6, 4));
        using var rows = whole.SliceRows(2, 3);
        using var doubled = Tensor.Full(backend, new Shape(3, 4), float.NaN);
        Pointwise.Scale(rows, 2f, doubled);
        var all = whole.ToArray();
        TestData.AssertClose(all.Skip(8).Take(12).Select(v => 2.0 * v).ToArray(), doubled.ToArray(), 0, 0, "scaled view");
    }

    [TestMethod]
    public void MissingShaderVariantIsAClearError()
    {
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => Vulkan.Kernels.Get("gemm/no_such_kernel"));
        StringAssert.Contains(e.Message, "no embedded SPIR-V for shader variant 'gemm/no_such_kernel'");
    }

    // The cache finds a kernel by comparing the constants in place (no key string per dispatch):
    // equal arguments give the same pipeline, any difference (a constant, the subgroup pin, full
    // subgroups) another one, named by its key.
    [TestMethod]
    public void KernelCacheTellsSpecialisationsApart()
    {
        var kernels = Vulkan.Kernels;
        var f32ToBf16 = kernels.Get("pointwise/convert", [0, 2, 0]);
        Assert.AreSame(f32ToBf16, kernels.Get("pointwise/convert", [0, 2, 0]));
        Assert.AreEqual("pointwise/convert|0,2,0|0", f32ToBf16.Key);
        int count = kernels.PipelineCount;
        var f32ToF16 = kernels.Get("pointwise/convert", [0, 1, 0]);
        Assert.AreNotSame(f32ToBf16, f32ToF16);
        Assert.AreEqual("pointwise/convert|0,1,0|0", f32ToF16.Key);
        var full = kernels.Get("pointwise/convert", [0, 2, 0], fullSubgroups: true);
        Assert.AreNotSame(f32ToBf16, full);
        Assert.AreEqual("pointwise/convert|0,2,0|0f", full.Key);
        Assert.AreSame(f32ToF16, kernels.Get("pointwise/convert", [0, 1, 0]));
        Assert.IsTrue(kernels.PipelineCount <= count + 2, "a lookup created a pipeline again");
    }

    [TestMethod]
    public void VulkanErrorsCarryTheCallAndResult()
    {
        var e = new VulkanException("vkAllocateMemory", Silk.NET.Vulkan.Result.ErrorOutOfDeviceMemory, "1 TiB");
        StringAssert.Contains(e.Message, "vkAllocateMemory failed with ErrorOutOfDeviceMemory (-2): 1 TiB");
        Assert.ThrowsExactly<VulkanException>(() => VulkanException.Check(Silk.NET.Vulkan.Result.ErrorDeviceLost, "vkQueueSubmit"));
    }

    [TestMethod]
    public void UnknownDeviceNameIsRejectedWithTheListOfDevices()
    {
        _ = Vulkan; // a loader and a device exist
        var backend = VulkanBackend.TryCreate(new VulkanOptions { Device = "no-such-gpu-xyz" }, out string? why);
        Assert.IsNull(backend);
        StringAssert.Contains(why, "no Vulkan device matches 'no-such-gpu-xyz'");
    }

    [TestMethod]
    public void EveryShaderVariantIsEmbedded()
    {
        var variants = KernelCache.Variants.ToList();
        foreach (string v in new[] { "gemm/gemm_tiled_f32", "gemm/gemm_tiled_f16", "gemm/gemm_tiled_bf16", "gemm/gemm_coopmat_f16_w4", "gemm/gemm_coopmat_bf16_w8", "pointwise/elementwise", "pointwise/convert", "pointwise/sum_last_axis" })
            CollectionAssert.Contains(variants, v);
    }

    /// <summary>FASTWEIGHTS_PIPELINE_STATS / CapturePipelineStatistics: where the device lists
    /// VK_KHR_pipeline_executable_properties (NVIDIA, RADV, ANV) every pipeline created reports the
    /// driver's statistics; where it does not (lavapipe) the option is ignored and nothing is kept.</summary>
    [TestMethod]
    public void PipelineStatisticsAreCapturedWhereListed()
    {
        using var backend = VulkanBackend.TryCreate(new VulkanOptions { AllowCpuDevices = true, CapturePipelineStatistics = true }, out string? why)
            ?? throw new AssertFailedException($"no Vulkan device: {why}");
        using var a = Tensor.Full(backend, new Shape(5, 7), 0.5f);
        using var b = Tensor.Full(backend, new Shape(7, 3), 2f);
        using var c = Tensor.Empty(backend, new Shape(5, 3));
        Gemm.Forward(a, b, c);
        CollectionAssert.AreEqual(Enumerable.Repeat(7f, 15).ToArray(), c.ToArray());
        bool listed = backend.Capabilities.HasExtension("VK_KHR_pipeline_executable_properties");
        Assert.AreEqual(listed, backend.Device.CapturesPipelineStatistics);
        var statistics = backend.Kernels.Statistics;
        if (!listed) { Assert.AreEqual(0, statistics.Count); return; }
        Assert.AreEqual(backend.Kernels.PipelineCount, statistics.Count, "a pipeline without statistics");
        foreach (var (key, list) in statistics)
        {
            Assert.IsTrue(list.Count > 0, $"{key}: no statistics");
            Assert.IsTrue(list.All(st => st.Name.Length > 0 && st.Value.Length > 0), $"{key}: an unnamed statistic");
        }
    }
}
