using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;

namespace FastWeights.Engine.Vulkan;

/// <summary>One VkDeviceMemory bound to one VkBuffer that covers it whole, usable as a storage
/// buffer, a copy source and destination, and through its device address.</summary>
public sealed unsafe class MemoryBlock : IDisposable
{
    private readonly VulkanDevice _device;
    private bool _disposed;

    public MemoryBlock(VulkanDevice device, long bytes, bool hostVisible)
    {
        _device = device;
        Bytes = bytes;
        var vk = device.Vk;
        var info = new BufferCreateInfo
        {
            SType = StructureType.BufferCreateInfo,
            Size = (ulong)bytes,
            Usage = BufferUsageFlags.StorageBufferBit | BufferUsageFlags.TransferSrcBit | BufferUsageFlags.TransferDstBit | BufferUsageFlags.ShaderDeviceAddressBit,
            SharingMode = SharingMode.Exclusive,
        };
        Buffer buffer;
        VulkanException.Check(vk.CreateBuffer(device.Handle, &info, null, &buffer), "vkCreateBuffer");
        Buffer = buffer;
        MemoryRequirements req;
        vk.GetBufferMemoryRequirements(device.Handle, buffer, &req);
        var required = hostVisible ? MemoryPropertyFlags.HostVisibleBit | MemoryPropertyFlags.HostCoherentBit : MemoryPropertyFlags.DeviceLocalBit;
        var preferred = hostVisible ? required | MemoryPropertyFlags.HostCachedBit : required;
        int type = device.FindMemoryType(req.MemoryTypeBits, required, preferred);
        if (type < 0 && !hostVisible) type = device.FindMemoryType(req.MemoryTypeBits, 0, 0);
        if (type < 0)
        {
            vk.DestroyBuffer(device.Handle, buffer, null);
            throw new VulkanException("vkAllocateMemory", Result.ErrorOutOfDeviceMemory, $"no memory type for a {(hostVisible ? "host-visible" : "device-local")} block of {bytes} bytes");
        }
        var flagsInfo = new MemoryAllocateFlagsInfo { SType = StructureType.MemoryAllocateFlagsInfo, Flags = MemoryAllocateFlags.DeviceAddressBit };
        var alloc = new MemoryAllocateInfo { SType = StructureType.MemoryAllocateInfo, PNext = &flagsInfo, AllocationSize = req.Size, MemoryTypeIndex = (uint)type };
        DeviceMemory memory;
        var result = vk.AllocateMemory(device.Handle, &alloc, null, &memory);
        if (result != Result.Success)
        {
            vk.DestroyBuffer(device.Handle, buffer, null);
            throw new VulkanException("vkAllocateMemory", result, $"{bytes} bytes");
        }
        Memory = memory;
        VulkanException.Check(vk.BindBufferMemory(device.Handle, buffer, memory, 0), "vkBindBufferMemory");
        var addressInfo = new BufferDeviceAddressInfo { SType = StructureType.BufferDeviceAddressInfo, Buffer = buffer };
        Address = vk.GetBufferDeviceAddress(device.Handle, &addressInfo);
        if (hostVisible)
        {
            void* mapped;
            VulkanException.Check(vk.MapMemory(device.Handle, memory, 0, Vk.WholeSize, 0, &mapped), "vkMapMemory");
            Mapped = (byte*)mapped;
        }
    }

    public long Bytes { get; }
    public Buffer Buffer { get; }
    public DeviceMemory Memory { get; }
    /// <summary>Device address of byte 0 (what shaders see through buffer references).</summary>
    public ulong Address { get; }
    /// <summary>Persistent host mapping for host-visible blocks, else null.</summary>
    public byte* Mapped { get; }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _device.Vk.DestroyBuffer(_device.Handle, Buffer, null);
        _device.Vk.FreeMemory(_device.Handle, Memory, null);
    }
}
