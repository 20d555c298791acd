using FastWeights.Engine.Cpu.FastWeights;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// The delta rule: FastWeights/RecurrentDeltaRule.cs.
public sealed partial class CpuBackend : IDeltaRuleOps
{
    public void DeltaRuleForward(DeltaRuleProblem problem, Tensor output, Tensor? finalState) =>
        RecurrentDeltaRule.Forward(problem, output, finalState, Threads);

    public void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients gradients) =>
        RecurrentDeltaRule.Backward(problem, gradients, Threads);
}
