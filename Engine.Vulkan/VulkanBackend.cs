using Silk.NET.Vulkan;

namespace FastWeights.Engine.Vulkan;

/// <summary>The Vulkan compute backend. Tensors are sub-allocated from large device-local blocks;
/// ops record dispatches into one <see cref="CommandStream"/> that submits at sync points; kernels
/// read tensors through buffer device addresses passed as push constants. Op families live in
/// partial files (VulkanBackend.Gemm.cs, VulkanBackend.Pointwise.cs, ...). Not thread-safe: one
/// backend records from one thread at a time.</summary>
public sealed partial class VulkanBackend : IBackend
{
    private bool _disposed;

    private VulkanBackend(VulkanInstance instance, VulkanDevice device, VulkanOptions options)
    {
        Instance = instance;
        Device = device;
        Options = options;
        Memory = new MemoryPool(device);
        Stream = new CommandStream(device);
        Kernels = new KernelCache(device, options.CacheDirectory);
    }

    public VulkanInstance Instance { get; }
    public VulkanDevice Device { get; }
    public VulkanOptions Options { get; }
    public MemoryPool Memory { get; }
    public CommandStream Stream { get; }
    public KernelCache Kernels { get; }
    public DeviceCapabilities Capabilities => Device.Capabilities;

    public string Name => "vulkan";
    public BackendKind Kind => BackendKind.Vulkan;
    public string DeviceName => $"{Capabilities.Name} ({Capabilities.Type}, Vulkan {Capabilities.ApiVersion})";

    /// <summary>Creates the backend on the device the options choose. Throws with the reason if no
    /// device fits or a Vulkan call fails.</summary>
    public static VulkanBackend Create(VulkanOptions? options = null)
    {
        options ??= new VulkanOptions();
        var instance = VulkanInstance.Create();
        try
        {
            int index = instance.Select(options, out string? why);
            if (index < 0) throw new InvalidOperationException($"Vulkan: {why}");
            var device = new VulkanDevice(instance, index, options);
            try { return new VulkanBackend(instance, device, options); }
            catch { device.Dispose(); throw; }
        }
        catch { instance.Dispose(); throw; }
    }

    /// <summary>Like <see cref="Create"/> but returns null with the reason (no loader, no device, ...).</summary>
    public static VulkanBackend? TryCreate(VulkanOptions? options, out string? why)
    {
        try
        {
            why = null;
            return Create(options);
        }
        catch (Exception e) when (e is VulkanException or InvalidOperationException or DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            why = e.Message;
            return null;
        }
    }

    public DeviceStorage Allocate(long bytes) => Memory.Allocate(this, bytes);

    /// <summary>2^32 - 1: the shaders index a tensor's elements with 32-bit unsigned integers, so a larger
    /// tensor would wrap around instead of failing.</summary>
    public long MaxTensorElements => uint.MaxValue;

    public void Upload(DeviceStorage destination, long destinationOffset, ReadOnlySpan<byte> source)
    {
        var s = Own(destination);
        Stream.Upload(s.Block.Buffer, s.Offset + destinationOffset, source);
    }

    public void Download(DeviceStorage source, long sourceOffset, Span<byte> destination)
    {
        var s = Own(source);
        Stream.Download(s.Block.Buffer, s.Offset + sourceOffset, destination);
        CheckExchangeFault();
    }

    public void Copy(DeviceStorage source, long sourceOffset, DeviceStorage destination, long destinationOffset, long bytes)
    {
        var src = Own(source);
        var dst = Own(destination);
        Stream.CopyBuffer(src.Block.Buffer, src.Offset + sourceOffset, dst.Block.Buffer, dst.Offset + destinationOffset, bytes);
    }

    public void Synchronize()
    {
        Stream.Synchronize();
        CheckExchangeFault();
    }

    private VulkanStorage Own(DeviceStorage storage) => storage as VulkanStorage
        ?? throw new ArgumentException($"VulkanBackend: storage belongs to backend '{storage.Backend.Name}'");

    /// <summary>Records a dispatch of <paramref name="kernel"/>.</summary>
    internal void Dispatch(ComputeKernel kernel, in PushConstants push, uint groupsX, uint groupsY = 1, uint groupsZ = 1) =>
        Stream.Dispatch(kernel, push.Bytes, groupsX, groupsY, groupsZ);

    internal static uint Groups(long items, int perGroup) => (uint)((items + perGroup - 1) / perGroup);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _faultWord?.Dispose();
        Stream.Dispose();
        Kernels.Dispose();
        Memory.Dispose();
        Device.Dispose();
        Instance.Dispose();
    }
}
