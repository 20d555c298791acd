using FastWeights.Engine.Cpu.LinearAttention;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// Linear attention: LinearAttention/RecurrentLinearAttention.cs (token by token, also Step) and
// LinearAttention/ChunkedLinearAttention.cs (chunks of 64 tokens as small matrix products).
public sealed partial class CpuBackend : ILinearAttentionOps
{
    /// <summary>Auto runs the chunked form from this many tokens on (below it one or two chunks
    /// do not repay the packing; see bench/LinearAttention).</summary>
    public const int LinearAttentionChunkedFromSteps = 2 * ChunkedLinearAttention.ChunkSize;

    public void LinearAttentionForward(LinearAttentionProblem problem, Tensor output, Tensor? finalState, Tensor? finalNormaliser)
    {
        if (Chunked(problem)) ChunkedLinearAttention.Forward(problem, output, finalState, finalNormaliser, Threads);
        else RecurrentLinearAttention.Forward(problem, output, finalState, finalNormaliser, Threads);
    }

    public void LinearAttentionBackward(LinearAttentionProblem problem, LinearAttentionGradients gradients)
    {
        if (Chunked(problem)) ChunkedLinearAttention.Backward(problem, gradients, Threads);
        else RecurrentLinearAttention.Backward(problem, gradients, Threads);
    }

    private static bool Chunked(LinearAttentionProblem p) => p.Algorithm switch
    {
        LinearAttentionAlgorithm.Recurrent => false,
        LinearAttentionAlgorithm.Chunked => true,
        _ => p.Shape.Steps >= LinearAttentionChunkedFromSteps,
    };
}
