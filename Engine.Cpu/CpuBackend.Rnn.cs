using FastWeights.Engine.Cpu.Rnn;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// Recurrent cells: Rnn/RnnRecurrence.cs.
public sealed partial class CpuBackend : IRnnOps
{
    public void RnnForward(RnnProblem problem, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved) =>
        RnnRecurrence.Forward(problem, outputs, finalStates, saved, Threads);

    public void RnnBackward(RnnProblem problem, Tensor outputs, Tensor saved, RnnGradients gradients) =>
        RnnRecurrence.Backward(problem, outputs, saved, gradients, Threads);
}
