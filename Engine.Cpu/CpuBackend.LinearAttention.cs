using FastWeights.Engine.Cpu.FastWeights;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// Linear attention: FastWeights/RecurrentLinearAttention.cs.
public sealed partial class CpuBackend : ILinearAttentionOps
{
    public void LinearAttentionForward(LinearAttentionProblem problem, Tensor output, Tensor? finalState, Tensor? finalNormaliser) =>
        RecurrentLinearAttention.Forward(problem, output, finalState, finalNormaliser, Threads);

    public void LinearAttentionBackward(LinearAttentionProblem problem, LinearAttentionGradients gradients) =>
        RecurrentLinearAttention.Backward(problem, gradients, Threads);
}
