using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace FastWeights.Engine.Numerics;

/// <summary>f32 &lt;-&gt; f16/bf16 conversions. bf16 is the upper half of an f32; rounding to bf16 is
/// round-to-nearest-even on the dropped 16 bits, NaN kept quiet.</summary>
public static class Float16Conversions
{
    public static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u) return (ushort)((bits >> 16) | 0x0040); // quiet NaN
        uint roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + roundingBias) >> 16);
    }

    public static float FromBFloat16(ushort value) => BitConverter.UInt32BitsToSingle((uint)value << 16);

    public static void ToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = ToBFloat16(source[i]);
    }

    public static void FromBFloat16(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = FromBFloat16(source[i]);
    }

    public static void ToHalf(ReadOnlySpan<float> source, Span<ushort> destination) =>
        TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<ushort, Half>(destination));

    public static void FromHalf(ReadOnlySpan<ushort> source, Span<float> destination) =>
        TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(source), destination);

    /// <summary>Encodes f32 values as <paramref name="dtype"/> bytes.</summary>
    public static void Encode(ReadOnlySpan<float> source, DType dtype, Span<byte> destination)
    {
        switch (dtype)
        {
            case DType.F32: MemoryMarshal.AsBytes(source).CopyTo(destination); break;
            case DType.F16: ToHalf(source, MemoryMarshal.Cast<byte, ushort>(destination)); break;
            case DType.BF16: ToBFloat16(source, MemoryMarshal.Cast<byte, ushort>(destination)); break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    /// <summary>Decodes <paramref name="dtype"/> bytes into f32 values.</summary>
    public static void Decode(ReadOnlySpan<byte> source, DType dtype, Span<float> destination)
    {
        switch (dtype)
        {
            case DType.F32: source.CopyTo(MemoryMarshal.AsBytes(destination)); break;
            case DType.F16: FromHalf(MemoryMarshal.Cast<byte, ushort>(source), destination); break;
            case DType.BF16: FromBFloat16(MemoryMarshal.Cast<byte, ushort>(source), destination); break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }
}
