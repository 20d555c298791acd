namespace FastWeights.Engine;

public enum BackendKind
{
    Cpu,
    Vulkan,
}

/// <summary>A place where tensors live and ops run. A backend implements the memory contract below
/// and, for every op family it supports, that family's interface (<see cref="Ops.IGemmOps"/>,
/// <see cref="Ops.IPointwiseOps"/>, ...). Argument checks happen once, in <see cref="Ops.Op"/>,
/// before a backend sees the call, so backends may assume valid, same-backend, live tensors.</summary>
public interface IBackend : IDisposable
{
    /// <summary>Short name, e.g. "cpu" or "vulkan".</summary>
    string Name { get; }
    BackendKind Kind { get; }
    /// <summary>Human-readable device description, e.g. "NVIDIA H100 80GB HBM3 (discrete)".</summary>
    string DeviceName { get; }

    /// <summary>Allocates uninitialised storage of at least <paramref name="bytes"/> bytes.</summary>
    DeviceStorage Allocate(long bytes);
    /// <summary>The most elements a tensor of this backend may hold (its kernels' index range);
    /// <see cref="Tensor.Empty"/> refuses larger shapes.</summary>
    long MaxTensorElements => long.MaxValue;
    /// <summary>Copies host bytes into storage; may be deferred until the next sync point, but the
    /// source span is consumed before returning.</summary>
    void Upload(DeviceStorage destination, long destinationOffset, ReadOnlySpan<byte> source);
    /// <summary>Copies storage into host memory; waits for every op recorded before it.</summary>
    void Download(DeviceStorage source, long sourceOffset, Span<byte> destination);
    /// <summary>Copies between two storages of this backend, ordered after earlier ops.</summary>
    void Copy(DeviceStorage source, long sourceOffset, DeviceStorage destination, long destinationOffset, long bytes);
    /// <summary>Waits until every op recorded so far has finished.</summary>
    void Synchronize();
}

/// <summary>A block of backend memory owned by one tensor (views share it without owning).</summary>
public abstract class DeviceStorage : IDisposable
{
    protected DeviceStorage(IBackend backend, long bytes)
    {
        Backend = backend;
        Bytes = bytes;
    }

    public IBackend Backend { get; }
    public long Bytes { get; }
    public bool IsDisposed { get; private set; }

    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        GC.SuppressFinalize(this);
    }

    protected abstract void Release();
}
