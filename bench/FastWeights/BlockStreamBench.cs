using FastWeights.Engine;
using FastWeights.Engine.Vulkan;

namespace FastWeights.Bench;

/// <summary>How fast the delta rule's parallel stages' way of reading memory can move bytes
/// (VulkanBackend.BlockStreamProbe, shaders/delta_rule/block_stream_probe.comp): `items` workgroups, each
/// reading `blocks` 64 x 64 bf16 blocks (8 KiB each) and writing one 64 x 64 f32 block, staged 1, 2 or 4
/// blocks per barrier pair, with and without reading the next phase ahead; beside a device copy of the
/// same bytes. Reported as bytes read + written per second (GB/s), GPU time.</summary>
public static class BlockStreamBench
{
    public static IEnumerable<BenchResult> Run(VulkanBackend vulkan, int items, int blocks)
    {
        using var x = Tensor.Uniform(vulkan, new Shape(items, blocks, 64, 64), 7, dtype: DType.BF16);
        using var y = Tensor.Empty(vulkan, new Shape(items, 64, 64));
        double bytes = items * (blocks * 64.0 * 64 * 2 + 64.0 * 64 * 4);
        using (var copy = Tensor.Empty(vulkan, x.Shape, DType.BF16))
        {
            double ms = DeltaRuleBench.Time(vulkan, () => vulkan.Copy(x.Storage, 0, copy.Storage, 0, x.ByteCount));
            yield return new BenchResult($"copy of the blocks ({2.0 * x.ByteCount / 1e9:F2} GB read + written)", vulkan.Name, ms, 2.0 * x.ByteCount / (ms * 1e-3) / 1e9, "GB/s");
        }
        foreach (int perPhase in new[] { 1, 2, 4 })
        {
            if (blocks % perPhase != 0) continue;
            foreach (bool ahead in new[] { false, true })
            {
                double ms = DeltaRuleBench.Time(vulkan, () => vulkan.BlockStreamProbe(x, y, perPhase, ahead));
                yield return new BenchResult($"block stream {items} x {blocks} blocks, {perPhase} per phase{(ahead ? ", read ahead" : "")}",
                    vulkan.Name, ms, bytes / (ms * 1e-3) / 1e9, "GB/s");
            }
        }
    }
}
