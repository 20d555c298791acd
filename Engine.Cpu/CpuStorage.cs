using System.Runtime.InteropServices;

namespace FastWeights.Engine.Cpu;

/// <summary>64-byte aligned native memory (one cache line, one Vector512).</summary>
public sealed unsafe class CpuStorage : DeviceStorage
{
    internal CpuStorage(IBackend backend, long bytes) : base(backend, bytes)
    {
        Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        if (Pointer == null) throw new OutOfMemoryException($"CpuBackend: could not allocate {bytes} bytes");
        GC.AddMemoryPressure(bytes);
    }

    public byte* Pointer { get; private set; }

    protected override void Release()
    {
        NativeMemory.AlignedFree(Pointer);
        Pointer = null;
        GC.RemoveMemoryPressure(Bytes);
    }

    ~CpuStorage() => Dispose();
}
