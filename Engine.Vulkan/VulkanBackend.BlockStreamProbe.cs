namespace FastWeights.Engine.Vulkan;

// shaders/delta_rule/block_stream_probe.comp: a diagnostic of how fast the parallel chunk stages' way
// of reading memory (16-byte reads of 64 x 64 bf16 blocks into registers, staged into shared memory
// between workgroup barriers, multiplied on fragments from there) can move bytes. Not an op: the
// bench (`fastweights bench probe`) and its test use it.
public sealed partial class VulkanBackend
{
    /// <summary>Whether <see cref="BlockStreamProbe"/> runs on this device: bf16 16 x 16 x 16 cooperative
    /// matrices with f32 accumulation and subgroups of 32, as the delta rule's kernels on fragments need.</summary>
    public bool BlockStreamProbeRuns => HasBf16Fragments && RunsSubgroupsOf32;

    /// <summary>result[i] = sum_p blocks[i, p] blocks[i, p] (64 x 64 products, f32 accumulation), one
    /// workgroup per item i, staging <paramref name="blocksPerPhase"/> blocks (1, 2 or 4) per workgroup
    /// barrier pair and, with <paramref name="readAhead"/>, reading the next phase's blocks before this
    /// phase's products. blocks: bf16 [items, n, 64, 64] with n a multiple of blocksPerPhase; result: f32
    /// [items, 64, 64].</summary>
    public void BlockStreamProbe(Tensor blocks, Tensor result, int blocksPerPhase, bool readAhead)
    {
        const string op = "BlockStreamProbe";
        if (blocks.DType != DType.BF16 || blocks.Rank != 4 || blocks.Shape[2] != 64 || blocks.Shape[3] != 64)
            throw new OpArgumentException(op, "blocks", $"expected bf16 [items, n, 64, 64], got {blocks.DType.Name()} {blocks.Shape}");
        int items = blocks.Shape[0], n = blocks.Shape[1];
        if (result.DType != DType.F32 || result.Rank != 3 || result.Shape[0] != items || result.Shape[1] != 64 || result.Shape[2] != 64)
            throw new OpArgumentException(op, "result", $"expected f32 [{items}, 64, 64] for blocks {blocks.Shape}, got {result.DType.Name()} {result.Shape}");
        if (blocksPerPhase is not (1 or 2 or 4) || n == 0 || n % blocksPerPhase != 0)
            throw new OpArgumentException(op, "blocksPerPhase", $"{blocksPerPhase}: expected 1, 2 or 4, dividing the {n} blocks per item of {blocks.Shape}");
        if ((long)items * n * 4096 > uint.MaxValue)
            throw new OpArgumentException(op, "blocks", $"{blocks.Shape} has more than 2^32 elements, which the probe's 32-bit offsets do not reach");
        Own(blocks.Storage);
        Own(result.Storage);
        if (!BlockStreamProbeRuns)
            throw new OpArgumentException(op, "backend", $"{Capabilities.Name} has no bf16 16x16x16 cooperative matrices with subgroups of 32");
        if (items == 0) return;
        var push = new PushConstants(stackalloc byte[16]);
        push.Address(blocks);
        push.Address(result);
        // constants 0-5 are chunk_fragments.glsl's (rounded operands, none of the others read here)
        int[] constants = [0, 0, 0, 0, 0, 0, blocksPerPhase, readAhead ? 1 : 0, n];
        Dispatch(Kernels.Get("delta_rule/block_stream_probe", constants, requiredSubgroupSize: 32, fullSubgroups: true), push, (uint)items);
    }
}
