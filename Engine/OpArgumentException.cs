namespace FastWeights.Engine;

/// <summary>Thrown when an op receives arguments it cannot run on. The message always names the op,
/// the offending argument and the shapes involved, e.g.
/// <c>Gemm: argument 'b' has shape [3, 17, 5] but the inner dimension of 'a' is 16 (a: [3, 4, 16])</c>.</summary>
public sealed class OpArgumentException : ArgumentException
{
    public string Op { get; }
    public string Argument { get; }

    public OpArgumentException(string op, string argument, string message)
        : base($"{op}: argument '{argument}' {message}")
    {
        Op = op;
        Argument = argument;
    }

    public override string? ParamName => Argument;
}
