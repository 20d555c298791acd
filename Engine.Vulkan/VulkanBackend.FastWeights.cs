using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/fast_weights/recurrent.comp: the recurrent delta rule and sum rule with the state in
// registers, one workgroup per (batch, head, block of state rows).
public sealed partial class VulkanBackend : IDeltaRuleOps
{
    private const int RecurrentColumnsPerLane = 32; // KMAX in recurrent.comp

    public void DeltaRuleForward(DeltaRuleProblem p, Tensor output, Tensor? finalState) =>
        RecurrentForward("delta", p.Q, p.K, p.V, p.Beta, p.Alpha, p.InitialState, finalState, output, null, null, p.Shape, p.Scale, 0f, false);

    public void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients gradients) =>
        throw new NotSupportedException("DeltaRuleBackward: the Vulkan backend has no delta-rule backward kernel yet; run the backward on the CPU backend");

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
