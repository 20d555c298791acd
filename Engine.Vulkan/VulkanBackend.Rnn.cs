using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/rnn/rnn_forward.comp: the fused head-wise recurrence, R in registers, one dispatch for
// all T steps. Heads up to 128 units; larger heads (a split over gate rows with one dispatch per
// step) are not written yet.
public sealed partial class VulkanBackend : IRnnOps
{
    public void RnnForward(RnnProblem p, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved)
    {
        if (p.Batch == 0 || p.Heads == 0) return;
        string op = p.Cell + "Forward";
        int dhMax = p.HeadDim <= 32 ? 32 : p.HeadDim <= 64 ? 64 : p.HeadDim <= 128 ? 128 : 0;
        if (dhMax == 0 || p.Gates * p.HeadDim > Capabilities.MaxWorkgroupInvocations)
            throw new OpArgumentException(op, "recurrentWeights", $"{p.RecurrentWeights.Shape}: the Vulkan recurrence takes heads of at most 128 units ({p.Gates} x {p.HeadDim} rows here)");
        string cell = p.Cell switch { RnnCell.Lstm => "lstm", RnnCell.Gru => "gru", RnnCell.SLstm => "slstm", _ => "elman" };
        int invocations = (p.Gates * p.HeadDim + 31) / 32 * 32;
        if (invocations > Capabilities.MaxWorkgroupInvocations) invocations = p.Gates * p.HeadDim;
        var kernel = Kernels.Get($"rnn/{cell}_{dhMax}", [invocations]);
        var push = new PushConstants(stackalloc byte[128]);
        push.Address(p.Preactivations);
        push.Address(p.RecurrentWeights);
        push.AddressOrZero(p.RecurrentBias);
        push.Address(outputs);
        push.AddressOrZero(saved);
        for (int i = 0; i < 4; i++) push.AddressOrZero(i < p.InitialStates.Count ? p.InitialStates[i] : null);
        for (int i = 0; i < 4; i++) push.AddressOrZero(i < finalStates.Count ? finalStates[i] : null);
        push.Append(p.Batch);
        push.Append(p.Steps);
        push.Append(p.Heads);
        push.Append(p.HeadDim);
        Dispatch(kernel, push, (uint)p.Heads, Groups(p.Batch, 8));
    }

    public void RnnBackward(RnnProblem problem, Tensor outputs, Tensor saved, RnnGradients gradients) =>
        throw new NotSupportedException($"{problem.Cell}Backward: the Vulkan backend has no recurrent-cell backward kernel yet; run the backward on the CPU backend");
}
