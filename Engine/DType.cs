namespace FastWeights.Engine;

/// <summary>Element types. f32 is the compute type everywhere; f16 and bf16 are storage and
/// tensor-core input types (every kernel accumulates in f32).</summary>
public enum DType
{
    F32,
    F16,
    BF16,
}

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.F16 => 2,
        DType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    public static string Name(this DType dtype) => dtype switch
    {
        DType.F32 => "f32",
        DType.F16 => "f16",
        DType.BF16 => "bf16",
        _ => dtype.ToString(),
    };
}
