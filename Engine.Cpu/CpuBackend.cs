using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu;

/// <summary>The CPU backend: fp32 compute with Vector512 (AVX-512) where the machine has it, else
/// Vector256 (AVX2), else scalar; multithreaded over independent work. Ops run synchronously, so
/// <see cref="Synchronize"/> has nothing to wait for. Op families live in partial files
/// (CpuBackend.Gemm.cs, CpuBackend.Pointwise.cs, ...).</summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    public static CpuBackend Shared { get; } = new();

    public string Name => "cpu";
    public BackendKind Kind => BackendKind.Cpu;
    public string DeviceName => $"{Environment.ProcessorCount} threads, {SimdDescription}";

    /// <summary>Degree of parallelism for multithreaded kernels.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    public static string SimdDescription =>
        Vector512.IsHardwareAccelerated ? "AVX-512 (Vector512)" :
        Vector256.IsHardwareAccelerated ? "AVX2 (Vector256)" : "scalar";

    public DeviceStorage Allocate(long bytes) => new CpuStorage(this, bytes);

    /// <summary>2^31 - 1: the kernels see a tensor through a span (<see cref="Span"/>) and index it with
    /// 32-bit ints, so a larger tensor is refused when it is made, not halfway through an op.</summary>
    public long MaxTensorElements => int.MaxValue;

    public void Upload(DeviceStorage destination, long destinationOffset, ReadOnlySpan<byte> source)
    {
        var s = Own(destination);
        source.CopyTo(new Span<byte>(s.Pointer + destinationOffset, source.Length));
    }

    public void Download(DeviceStorage source, long sourceOffset, Span<byte> destination)
    {
        var s = Own(source);
        new ReadOnlySpan<byte>(s.Pointer + sourceOffset, destination.Length).CopyTo(destination);
    }

    public void Copy(DeviceStorage source, long sourceOffset, DeviceStorage destination, long destinationOffset, long bytes)
    {
        Buffer.MemoryCopy(Own(source).Pointer + sourceOffset, Own(destination).Pointer + destinationOffset, bytes, bytes);
    }

    public void Synchronize() { }

    public void Dispose() { }

    private CpuStorage Own(DeviceStorage storage) => storage as CpuStorage
        ?? throw new ArgumentException($"CpuBackend: storage belongs to backend '{storage.Backend.Name}'");

    /// <summary>Pointer to element 0 of an f32 tensor.</summary>
    internal static float* F32(Tensor t) => (float*)(((CpuStorage)t.Storage).Pointer + t.ByteOffset);

    /// <summary>Pointer to byte 0 of a tensor of any dtype.</summary>
    internal static byte* Bytes(Tensor t) => ((CpuStorage)t.Storage).Pointer + t.ByteOffset;

    /// <summary>f32 span over a whole tensor (valid while the tensor lives).</summary>
    internal static Span<float> Span(Tensor t) => new(F32(t), checked((int)t.ElementCount));
}
