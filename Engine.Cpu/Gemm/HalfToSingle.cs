using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>Vectorised widening of f16 / bf16 runs to f32, used while packing GEMM operands.</summary>
internal static unsafe class HalfToSingle
{
    /// <summary>dst[i] = (float)src[i] for i in [0, count); src holds <paramref name="type"/> elements.</summary>
    public static void Convert(byte* src, DType type, int count, float* dst)
    {
        if (type == DType.F16) TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, count), new Span<float>(dst, count));
        else if (type == DType.BF16) FromBFloat16((ushort*)src, count, dst);
        else Buffer.MemoryCopy(src, dst, (long)count * 4, (long)count * 4);
    }

    // bf16 is the upper half of an f32: widen each 16-bit lane to 32 bits and shift it up.
    private static void FromBFloat16(ushort* src, int count, float* dst)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= count - 16; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Vector256.Store(Vector256.ShiftLeft(lo, 16).AsSingle(), dst + i);
                Vector256.Store(Vector256.ShiftLeft(hi, 16).AsSingle(), dst + i + 8);
            }
        }
        for (; i < count; i++) dst[i] = BitConverter.UInt32BitsToSingle((uint)src[i] << 16);
    }
}
