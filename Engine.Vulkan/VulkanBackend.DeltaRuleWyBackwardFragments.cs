using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/delta_rule/chunk_wy_backward_fragments.comp: the backward through each chunk's WY form with
// every product a chain of tensor-core fragment multiplies whose results stay in accumulator fragments,
// W and U not read (dX from dW K^T + dU V^T). chunk_wy_backward.comp (portable f32 products, or the
// shared-memory tile products on tensor cores) takes every other problem.
public sealed partial class VulkanBackend
{
    /// <summary>Whether the WY backward runs chunk_wy_backward_fragments.comp where it applies
    /// (<see cref="DeltaRuleUsesWyBackwardFragments"/>): true by default;
    /// FASTWEIGHTS_DELTA_WY_BACKWARD_FRAGMENTS=0, or false here, keeps chunk_wy_backward.comp.</summary>
    public bool DeltaRuleWyBackwardFragments { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_WY_BACKWARD_FRAGMENTS") != "0";

    /// <summary>Whether the WY backward of this problem runs on fragments: <see cref="DeltaRuleWyBackwardFragments"/>,
    /// the tensor-core products in use (<see cref="DeltaRuleUsesCoopMat"/>: bf16 keys), T a multiple of the
    /// chunk (whole 16 x 16 fragments are read and written straight from the tensors), Dk and Dv 64 or 128
    /// (whole 64-column blocks), and subgroups of 32.</summary>
    public bool DeltaRuleUsesWyBackwardFragments(DType keys, FastWeightShape s) =>
        DeltaRuleWyBackwardFragments && DeltaRuleUsesCoopMat(keys)
        && s.Steps % DeltaRuleChunkSize == 0 && s.KeyDim is 64 or 128 && s.ValueDim is 64 or 128
        && (Capabilities.SubgroupSize == 32 || (Capabilities.SubgroupSizeControl && Capabilities.MinSubgroupSize <= 32 && Capabilities.MaxSubgroupSize >= 32));

    // The WY backward's kernel for this problem (same push constants either way).
    private ComputeKernel WyBackwardKernel(Tensor q, FastWeightShape s) =>
        DeltaRuleUsesWyBackwardFragments(q.DType, s)
            ? Kernels.Get("delta_rule/chunk_wy_backward_fragments", [], requiredSubgroupSize: 32, fullSubgroups: true)
            : ChunkKernel("chunk_wy_backward", q);
}
