namespace FastWeights.Engine.Vulkan;

public sealed partial class VulkanBackend : IBackend
{
    public static VulkanBackend? TryCreate(VulkanOptions options, out string? why) { why = "not built yet"; return null; }
    public string Name => "vulkan";
    public BackendKind Kind => BackendKind.Vulkan;
    public string DeviceName => "";
    public DeviceStorage Allocate(long bytes) => throw new NotSupportedException();
    public void Upload(DeviceStorage destination, long destinationOffset, ReadOnlySpan<byte> source) => throw new NotSupportedException();
    public void Download(DeviceStorage source, long sourceOffset, Span<byte> destination) => throw new NotSupportedException();
    public void Copy(DeviceStorage source, long sourceOffset, DeviceStorage destination, long destinationOffset, long bytes) => throw new NotSupportedException();
    public void Synchronize() { }
    public void Dispose() { }
}
