using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Tests;

/// <summary>The persistent per-step recurrent kernels (all steps in one dispatch, the workgroups of a
/// head waiting for each other's values of the previous step) with many workgroups per head. That needs a
/// device that runs those workgroups side by side, which Vulkan does not promise and lavapipe does not
/// do, so these run on the GPU machine (tools/gpu-host.sh tensorcores takes this category too);
/// RnnTests covers the same kernels with one workgroup per group everywhere.</summary>
[TestClass]
[TestCategory("ConcurrentWorkgroups")]
public sealed class RnnPersistentTests
{
    public static IEnumerable<object[]> Cases() =>
        // 4 units per workgroup, R in registers; the same with R read from L2 every step; the automatic
        // choice; and (not persistent, but at these sizes) one dispatch per step with the backward's
        // product over gate rows
        from backend in new[] { "vulkan-persistent-u4", "vulkan-persistent-l2", "vulkan-steps-auto", "vulkan-steps-rows" }
        from cell in Enum.GetValues<RnnCell>()
        from size in new[] { (16, 20, 4, 192), (3, 7, 1, 130), (17, 5, 2, 67), (2, 4, 1, 800) }   // 800: the automatic backward, 3200+ inputs, runs per step
        select new object[] { backend, cell, size.Item1, size.Item2, size.Item3, size.Item4 };

    /// <summary>Forward outputs and every gradient against the CPU backend (itself checked against the
    /// float64 reference and finite differences in RnnTests).</summary>
    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void PersistentMatchesCpu(string backendName, RnnCell cell, int b, int t, int h, int dh)
    {
        using var path = RnnTests.Path(backendName);
        var vulkan = (Vulkan.VulkanBackend)path.Backend;
        Assert.IsTrue(backendName != "vulkan-steps-auto" || vulkan.RnnKernelFor(cell, b, h, dh).StartsWith("persistent"),
            $"{vulkan.Capabilities.Name} lists {vulkan.Capabilities.ComputeUnits} workgroups surely resident: the automatic choice should be persistent, is {vulkan.RnnKernelFor(cell, b, h, dh)}");
        string kernels = vulkan.RnnKernelFor(cell, b, h, dh);
        // R in registers where it takes at most 16 vec4s per invocation: not for Dh 800 (8 units per
        // workgroup there, so that 100 blocks fit on the device: 26 vec4s forward).
        if (backendName == "vulkan-persistent-l2" || (backendName == "vulkan-persistent-u4" && dh <= 192))
            Assert.AreEqual(backendName == "vulkan-persistent-u4", kernels.Contains("R in registers"), $"{backendName}: {kernels}");
        var c = new RnnTests.Case(cell, b, t, h, dh, (ulong)(b * 5 + t * 3 + h * 7 + dh * 11 + (int)cell * 100)) { RScale = MathF.Min(0.6f, 2f / MathF.Sqrt(dh)) };
        float[] w = TestData.Uniform(b * t * c.Hd, 93), wh = TestData.Uniform(b * c.Hd, 94);
        float[]? wc = cell == RnnCell.Lstm ? TestData.Uniform(b * c.Hd, 95) : null;
        var expected = RnnTests.RunBackward(TestBackends.Get("cpu"), c, w, wh, wc);
        var actual = RnnTests.RunBackward(path.Backend, c, w, wh, wc);
        RnnTests.AssertSameGradients(expected, actual, b * t, 2e-5 * Math.Sqrt(t), $"{cell} {backendName} B{b} T{t} H{h} Dh{dh}");
    }

    /// <summary>One head spread over far more workgroups than the device holds at once (4096): the
    /// resident ones wait for values that non-resident ones never publish, time out instead of hanging,
    /// and the next download says so, naming the op.</summary>
    [TestMethod]
    public void WorkgroupsThatCannotAllRunAreReported()
    {
        using var path = RnnTests.Path("vulkan-persistent");
        var vulkan = (Vulkan.VulkanBackend)path.Backend;
        vulkan.RnnStepUnits = 1;
        const int b = 1, t = 2, dh = 4096;
        using var x = Tensor.FromArray(vulkan, TestData.Uniform(b * t * 4 * dh, 1), new Shape(b, t, 4 * dh));
        using var r = Tensor.FromArray(vulkan, TestData.Uniform(4 * dh * dh, 2, -0.01f, 0.01f), new Shape(1, 4 * dh, dh));
        using var y = Tensor.Full(vulkan, new Shape(b, t, dh), float.NaN);
        Rnn.Forward(RnnCell.Lstm, x, r, null, y, [], []);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => y.ToArray());
        StringAssert.Contains(e.Message, "LstmForward");
        StringAssert.Contains(e.Message, "did not all run at once");
        Assert.IsTrue(y.ToArray().Length == b * t * dh, "the fault is reported once; the backend stays usable");
    }
}
