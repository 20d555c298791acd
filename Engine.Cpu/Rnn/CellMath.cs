namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>Scalar activations shared by the cells (float math; the recurrences are latency-bound
/// per step, and each step's heavy part is the R h product).</summary>
internal static class CellMath
{
    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    /// <summary>log(sigmoid(x)) without overflow: -softplus(-x).</summary>
    public static float LogSigmoid(float x) => x >= 0 ? -MathF.Log(1f + MathF.Exp(-x)) : x - MathF.Log(1f + MathF.Exp(x));
}
