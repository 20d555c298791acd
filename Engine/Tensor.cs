using System.Buffers;
using FastWeights.Engine.Numerics;

namespace FastWeights.Engine;

/// <summary>A dense, row-major, contiguous tensor on one backend. A tensor either owns its storage
/// (made by <see cref="Empty"/>, <see cref="FromArray"/>, ...) and frees it on <see cref="Dispose"/>,
/// or is a view (<see cref="Reshape"/>, <see cref="SliceRows"/>) that shares its owner's storage and
/// becomes unusable once the owner is disposed. Moving data between backends is always explicit.</summary>
public sealed class Tensor : IDisposable
{
    private readonly bool _ownsStorage;
    private bool _disposed;

    private Tensor(IBackend backend, DeviceStorage storage, long byteOffset, Shape shape, DType dtype, bool ownsStorage)
    {
        Backend = backend;
        Storage = storage;
        ByteOffset = byteOffset;
        Shape = shape;
        DType = dtype;
        _ownsStorage = ownsStorage;
    }

    public IBackend Backend { get; }
    public DeviceStorage Storage { get; }
    /// <summary>Offset of element 0 inside <see cref="Storage"/>, in bytes.</summary>
    public long ByteOffset { get; }
    public Shape Shape { get; }
    public DType DType { get; }
    public int Rank => Shape.Rank;
    public long ElementCount => Shape.ElementCount;
    public long ByteCount => ElementCount * DType.SizeInBytes();
    /// <summary>True once this tensor, or the owner of the storage it views, has been disposed.</summary>
    public bool IsDisposed => _disposed || Storage.IsDisposed;

    /// <summary>Allocates an uninitialised tensor.</summary>
    public static Tensor Empty(IBackend backend, Shape shape, DType dtype = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (shape.ElementCount > backend.MaxTensorElements)
            throw new ArgumentException($"Tensor.Empty: shape {shape} ({dtype.Name()}) holds {shape.ElementCount} elements; a {backend.Name} tensor holds at most {backend.MaxTensorElements}", nameof(shape));
        long bytes = Math.Max(1, shape.ElementCount) * dtype.SizeInBytes();
        return new Tensor(backend, backend.Allocate(bytes), 0, shape, dtype, ownsStorage: true);
    }

    /// <summary>Allocates a tensor and fills it with <paramref name="data"/> (f32 values, converted to
    /// <paramref name="dtype"/>).</summary>
    public static Tensor FromArray(IBackend backend, ReadOnlySpan<float> data, Shape shape, DType dtype = DType.F32)
    {
        if (data.Length != shape.ElementCount)
            throw new ArgumentException($"Tensor.FromArray: {data.Length} values do not fill shape {shape} ({shape.ElementCount} elements)", nameof(data));
        var tensor = Empty(backend, shape, dtype);
        tensor.CopyFrom(data);
        return tensor;
    }

    /// <summary>Tensor of <paramref name="value"/> everywhere.</summary>
    public static Tensor Full(IBackend backend, Shape shape, float value, DType dtype = DType.F32)
    {
        var data = new float[shape.ElementCount];
        Array.Fill(data, value);
        return FromArray(backend, data, shape, dtype);
    }

    public static Tensor Zeros(IBackend backend, Shape shape, DType dtype = DType.F32) => Full(backend, shape, 0f, dtype);

    /// <summary>Uniform random values in [low, high), the same for a seed on every backend.</summary>
    public static Tensor Uniform(IBackend backend, Shape shape, ulong seed, float low = -1f, float high = 1f, DType dtype = DType.F32)
    {
        var data = new float[shape.ElementCount];
        new SeededRandom(seed).FillUniform(data, low, high);
        return FromArray(backend, data, shape, dtype);
    }

    /// <summary>Normal random values, the same for a seed on every backend.</summary>
    public static Tensor Normal(IBackend backend, Shape shape, ulong seed, float mean = 0f, float std = 1f, DType dtype = DType.F32)
    {
        var data = new float[shape.ElementCount];
        new SeededRandom(seed).FillNormal(data, mean, std);
        return FromArray(backend, data, shape, dtype);
    }

    /// <summary>Overwrites the tensor with f32 values, converting to its dtype.</summary>
    public void CopyFrom(ReadOnlySpan<float> data)
    {
        ThrowIfDisposed("CopyFrom");
        if (data.Length != ElementCount)
            throw new ArgumentException($"Tensor.CopyFrom: {data.Length} values for shape {Shape}", nameof(data));
        byte[] bytes = ArrayPool<byte>.Shared.Rent((int)Math.Max(ByteCount, 1));
        try
        {
            Float16Conversions.Encode(data, DType, bytes.AsSpan(0, (int)ByteCount));
            Backend.Upload(Storage, ByteOffset, bytes.AsSpan(0, (int)ByteCount));
        }
        finally { ArrayPool<byte>.Shared.Return(bytes); }
    }

    /// <summary>Downloads the values as f32 (waits for pending ops).</summary>
    public void CopyTo(Span<float> destination)
    {
        ThrowIfDisposed("CopyTo");
        if (destination.Length != ElementCount)
            throw new ArgumentException($"Tensor.CopyTo: destination of {destination.Length} values for shape {Shape}", nameof(destination));
        byte[] bytes = ArrayPool<byte>.Shared.Rent((int)Math.Max(ByteCount, 1));
        try
        {
            Backend.Download(Storage, ByteOffset, bytes.AsSpan(0, (int)ByteCount));
            Float16Conversions.Decode(bytes.AsSpan(0, (int)ByteCount), DType, destination);
        }
        finally { ArrayPool<byte>.Shared.Return(bytes); }
    }

    public float[] ToArray()
    {
        var result = new float[ElementCount];
        CopyTo(result);
        return result;
    }

    /// <summary>Copies this tensor to another backend (or a new tensor on the same one).</summary>
    public Tensor To(IBackend backend)
    {
        ThrowIfDisposed("To");
        if (ReferenceEquals(backend, Backend))
        {
            var copy = Empty(backend, Shape, DType);
            Backend.Copy(Storage, ByteOffset, copy.Storage, 0, ByteCount);
            return copy;
        }
        byte[] bytes = new byte[ByteCount];
        Backend.Download(Storage, ByteOffset, bytes);
        var result = Empty(backend, Shape, DType);
        backend.Upload(result.Storage, 0, bytes);
        return result;
    }

    /// <summary>A view with another shape of the same element count.</summary>
    public Tensor Reshape(Shape shape)
    {
        ThrowIfDisposed("Reshape");
        if (shape.ElementCount != ElementCount)
            throw new OpArgumentException("Reshape", "shape", $"{shape} has {shape.ElementCount} elements but the tensor {Shape} has {ElementCount}");
        return new Tensor(Backend, Storage, ByteOffset, shape, DType, ownsStorage: false);
    }

    /// <summary>A view of rows [start, start + count) along axis 0.</summary>
    public Tensor SliceRows(int start, int count)
    {
        ThrowIfDisposed("SliceRows");
        if (Rank == 0 || start < 0 || count < 0 || start + count > Shape[0])
            throw new OpArgumentException("SliceRows", "start", $"rows [{start}, {start + count}) are outside axis 0 of shape {Shape}");
        int[] dims = Shape.Dims.ToArray();
        long rowBytes = ByteCount / Math.Max(1, dims[0]);
        dims[0] = count;
        return new Tensor(Backend, Storage, ByteOffset + start * rowBytes, new Shape(dims), DType, ownsStorage: false);
    }

    internal void ThrowIfDisposed(string op)
    {
        if (IsDisposed) throw new ObjectDisposedException(nameof(Tensor), $"{op}: tensor {Shape} {DType.Name()} was disposed");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_ownsStorage) Storage.Dispose();
    }

    public override string ToString() => $"Tensor{Shape} {DType.Name()} on {Backend.Name}";
}
