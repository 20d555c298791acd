using FastWeights.Engine.Vulkan;

namespace FastWeights.Engine.Tests;

/// <summary>VulkanBackend.BlockStreamProbe, the diagnostic behind `fastweights bench probe`: its result
/// is sum_p X_p X_p over each item's 64 x 64 bf16 blocks, against a float64 reference, for every
/// staging it offers (so a block read into the wrong plane, or a phase read twice, fails).</summary>
[TestClass]
public sealed class BlockStreamProbeTests
{
    [TestMethod]
    [TestCategory("TensorCores")]
    [DataRow(1, false)]
    [DataRow(1, true)]
    [DataRow(2, false)]
    [DataRow(2, true)]
    [DataRow(4, false)]
    [DataRow(4, true)]
    public void SumsEachItemsBlockSquares(int perPhase, bool readAhead)
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        Assert.IsTrue(backend.BlockStreamProbeRuns, $"{backend.Capabilities.Name} cannot run the probe");
        const int items = 5, blocks = 8;
        float[] values = TestData.RoundTrip(TestData.Uniform(items * blocks * 4096, (ulong)(31 * perPhase + (readAhead ? 1 : 0))), DType.BF16);
        using var x = Tensor.FromArray(backend, values, new Shape(items, blocks, 64, 64), DType.BF16);
        using var y = Tensor.Full(backend, new Shape(items, 64, 64), float.NaN);   // poisoned: unwritten elements fail
        backend.BlockStreamProbe(x, y, perPhase, readAhead);
        var expected = new double[items * 4096];
        for (int i = 0; i < items; i++)
            for (int p = 0; p < blocks; p++)
            {
                int block = (i * blocks + p) * 4096;
                for (int r = 0; r < 64; r++)
                    for (int c = 0; c < 64; c++)
                    {
                        double sum = 0;
                        for (int m = 0; m < 64; m++) sum += (double)values[block + r * 64 + m] * values[block + m * 64 + c];
                        expected[i * 4096 + r * 64 + c] += sum;
                    }
            }
        // products of bf16 values are exact in f32; only the f32 sums of 512 of them round
        TestData.AssertClose(expected, y.ToArray(), 1e-5, 1e-4, $"probe {perPhase} per phase{(readAhead ? ", read ahead" : "")}");
    }

    [TestMethod]
    public void RefusesBadArguments()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        using var x = Tensor.Zeros(backend, new Shape(2, 6, 64, 64), DType.BF16);
        using var y = Tensor.Empty(backend, new Shape(2, 64, 64));
        using var wrongDtype = Tensor.Zeros(backend, new Shape(2, 6, 64, 64));
        using var wrongBlock = Tensor.Zeros(backend, new Shape(2, 6, 64, 32), DType.BF16);
        using var wrongItems = Tensor.Empty(backend, new Shape(3, 64, 64));
        void Refuses(string argument, string shown, Action call)
        {
            var e = Assert.ThrowsExactly<OpArgumentException>(call);
            StringAssert.Contains(e.Message, "BlockStreamProbe");
            StringAssert.Contains(e.Message, argument);
            StringAssert.Contains(e.Message, shown);
        }
        Refuses("blocks", "[2, 6, 64, 64]", () => backend.BlockStreamProbe(wrongDtype, y, 1, false));
        Refuses("blocks", "[2, 6, 64, 32]", () => backend.BlockStreamProbe(wrongBlock, y, 1, false));
        Refuses("result", "[3, 64, 64]", () => backend.BlockStreamProbe(x, wrongItems, 1, false));
        Refuses("blocksPerPhase", "4", () => backend.BlockStreamProbe(x, y, 4, false));   // 6 blocks
        Refuses("blocksPerPhase", "3", () => backend.BlockStreamProbe(x, y, 3, false));
        if (!backend.BlockStreamProbeRuns)
            Refuses("backend", backend.Capabilities.Name, () => backend.BlockStreamProbe(x, y, 2, false));
    }
}
