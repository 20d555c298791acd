using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// The delta rule's bf16 outputs and gradients (IDeltaRuleOps.DeltaRuleStoresHalf): where every stage of a
// problem runs on accumulator fragments, the kernels store o, dq, dk, dv as bf16 rounded to nearest and
// read dO as bf16 themselves (fragment_types.glsl's HALF_IO); elsewhere DeltaRule converts around f32.
public sealed partial class VulkanBackend
{
    /// <summary>Whether the delta rule's kernels on fragments store bf16 outputs and gradients themselves
    /// (<see cref="DeltaRuleStoresHalf"/>). True by default; FASTWEIGHTS_DELTA_HALF_IO=0, or false here,
    /// leaves them to DeltaRule's f32 tensors and conversions (same values: the kernels round to nearest
    /// as Pointwise.Convert does).</summary>
    public bool DeltaRuleHalfOutputs { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_DELTA_HALF_IO") != "0";

    /// <summary>Yes for bf16 where the ungated rule runs chunked with every stage on accumulator fragments
    /// and rounded operands: T a multiple of 64 (no aligned copies of other lengths), the state passes,
    /// output stage, values gradient, q, k gradients and WY backward on fragments. The gated rule, the
    /// recurrent kernels and the tile kernels read and write f32 only.</summary>
    public bool DeltaRuleStoresHalf(DeltaRuleProblem problem, DType dtype)
    {
        var s = problem.Shape;
        var keys = problem.K.DType;
        return dtype == DType.BF16 && DeltaRuleHalfOutputs && problem.Alpha is null && !DeltaRuleCoopMatSplit
            && s.KeyDim <= DeltaRuleChunkedMaxHeadDim && s.ValueDim <= DeltaRuleChunkedMaxHeadDim && s.Steps % DeltaRuleChunkSize == 0
            && UsesChunkedDeltaRule("DeltaRuleStoresHalf", problem)
            && DeltaRuleUsesStateFragments(keys, s) && DeltaRuleBackwardFragments && DeltaRuleUsesOutputFragments(keys, s)
            && DeltaRuleUsesGradQKFragments(keys, s) && DeltaRuleUsesWyBackwardFragments(keys, s);
    }

    // The kernels that DeltaRuleStoresHalf does not vouch for take f32 outputs and gradients only.
    private static void RequireF32(string stage, params ReadOnlySpan<Tensor?> tensors)
    {
        foreach (var t in tensors)
            if (t is not null && t.DType != DType.F32)
                throw new InvalidOperationException($"{stage}: a {t.DType.Name()} output or gradient {t.Shape} reached a kernel that takes f32 only (DeltaRuleStoresHalf said yes)");
    }
}
