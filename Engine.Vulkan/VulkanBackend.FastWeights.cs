using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/fast_weights/recurrent.comp: the recurrent delta rule and sum rule with the state in
// registers, one workgroup per (batch, head, block of state rows).
public sealed partial class VulkanBackend : IDeltaRuleOps, ILinearAttentionOps
{
    private const int RecurrentColumnsPerLane = 32; // KMAX in recurrent.comp

    public void DeltaRuleForward(DeltaRuleProblem p, Tensor output, Tensor? finalState) =>
        RecurrentForward("delta", p.Q, p.K, p.V, p.Beta, p.Alpha, p.InitialState, finalState, output, null, null, p.Shape, p.Scale, 0f, false);

    public void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients gradients) =>
        throw new NotSupportedException("DeltaRuleBackward: the Vulkan backend has no delta-rule backward kernel yet; run the backward on the CPU backend");

    public void LinearAttentionForward(LinearAttentionProblem p, Tensor output, Tensor? finalState, Tensor? finalNormaliser)
    {
        // With the normaliser updated in place by several row blocks, a block could read z after
        // another block wrote it: give the kernel a private copy of the initial z then.
        int lanes = RecurrentLanes("LinearAttentionForward", p.Shape.KeyDim, p.Shape.ValueDim);
        bool severalBlocks = p.Shape.ValueDim * lanes > Math.Min(Capabilities.MaxWorkgroupInvocations, 1024);
        Tensor? z0 = p.InitialNormaliser;
        using var copy = severalBlocks && z0 is not null && finalNormaliser is not null && ReferenceEquals(z0.Storage, finalNormaliser.Storage) ? z0.To(this) : null;
        RecurrentForward("sum", p.Q, p.K, p.V, null, null, p.InitialState, finalState, output, copy ?? z0, finalNormaliser, p.Shape, p.Scale, p.Epsilon, p.Normalise);
    }

    public void LinearAttentionBackward(LinearAttentionProblem problem, LinearAttentionGradients gradients) =>
        throw new NotSupportedException("LinearAttentionBackward: the Vulkan backend has no linear-attention backward kernel yet; run the backward on the CPU backend");

    /// <summary>Lanes per state row: the smallest power of two that keeps each lane at or under
    /// 32 columns and within one subgroup.</summary>
    internal int RecurrentLanes(string op, int keyDim, int valueDim)
    {
        int lanes = 1;
        while ((keyDim + lanes - 1) / lanes > RecurrentColumnsPerLane) lanes *= 2;
        if (lanes > Capabilities.SubgroupSize || lanes > 32)
            throw new OpArgumentException(op, "k", $"key dimension {keyDim} needs {lanes} lanes per state row, more than the subgroup size {Capabilities.SubgroupSize} of {Capabilities.Name}");
        return lanes;
    }

    internal void RecurrentForward(string rule, Tensor q, Tensor k, Tensor v, Tensor? beta, Tensor? alpha, Tensor? initialState, Tensor? finalState,
        Tensor output, Tensor? initialZ, Tensor? finalZ, FastWeightShape s, float scale, float eps, bool normalise)
    {
        if (s.Batch == 0 || s.Heads == 0) return;
        string op = rule == "delta" ? "DeltaRuleForward" : "LinearAttentionForward";
        int lanes = RecurrentLanes(op, s.KeyDim, s.ValueDim);
        int rowsPerGroup = Math.Max(1, Math.Min(s.ValueDim, Math.Min(Capabilities.MaxWorkgroupInvocations, 1024) / lanes));
        var kernel = Kernels.Get($"fast_weights/{rule}_f32", [rowsPerGroup * lanes, lanes]);
        var push = new PushConstants(stackalloc byte[128]);
        push.Address(q);
        push.Address(k);
        push.Address(v);
        push.AddressOrZero(beta);
        push.AddressOrZero(alpha);
        push.AddressOrZero(initialState);
        push.AddressOrZero(finalState);
        push.Address(output);
        push.AddressOrZero(initialZ);
        push.AddressOrZero(finalZ);
        push.Append(s.Steps);
        push.Append(s.Heads);
        push.Append(s.KeyDim);
        push.Append(s.ValueDim);
        push.Append(scale);
        push.Append(eps);
        push.Append(normalise ? 1 : 0);
        Dispatch(kernel, push, (uint)(s.Batch * s.Heads), Groups(s.ValueDim, rowsPerGroup));
    }
}
