using FastWeights.Engine.Cpu.FastWeights;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// The delta rule: FastWeights/RecurrentDeltaRule.cs (token by token) and FastWeights/ChunkedDeltaRule.cs
// (chunks of 64 in the WY form), gated or not.
public sealed partial class CpuBackend : IDeltaRuleOps
{
    /// <summary>Auto runs the chunked form from this many tokens on. Measured on the 2-core AVX2
    /// machine (docs/benchmarks.md): chunked is faster, forward and forward+backward, from T = 8 at
    /// D = 16, 64 and 128 (about even at T = 4, D = 16); below that, and for Step, recurrent.</summary>
    public const int ChunkedDeltaRuleMinSteps = 8;

    private static bool Chunked(DeltaRuleProblem p) => p.Algorithm switch
    {
        DeltaRuleAlgorithm.Chunked => true,
        DeltaRuleAlgorithm.Recurrent => false,
        _ => p.Shape.Steps >= ChunkedDeltaRuleMinSteps,
    };

    public void DeltaRuleForward(DeltaRuleProblem problem, Tensor output, Tensor? finalState)
    {
        if (Chunked(problem)) ChunkedDeltaRule.Forward(problem, output, finalState, Threads);
        else RecurrentDeltaRule.Forward(problem, output, finalState, Threads);
    }

    public void DeltaRuleBackward(DeltaRuleProblem problem, DeltaRuleGradients gradients)
    {
        if (Chunked(problem)) ChunkedDeltaRule.Backward(problem, gradients, Threads);
        else RecurrentDeltaRule.Backward(problem, gradients, Threads);
    }
}
