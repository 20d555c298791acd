using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FastWeights.Engine.Vulkan;

/// <summary>Builds a push-constant block in std430-compatible order: 8-byte device addresses first,
/// then 4-byte scalars, each appended in the order the shader's block declares them. Capacity is
/// 256 bytes, the most any device gives; the portable budget is 128.</summary>
public ref struct PushConstants
{
    private Span<byte> _bytes;
    private int _length;

    public PushConstants(Span<byte> buffer)
    {
        _bytes = buffer;
        _length = 0;
    }

    public readonly ReadOnlySpan<byte> Bytes => _bytes[.._length];

    /// <summary>Appends a tensor's device address (buffer address + storage offset + view offset).</summary>
    public void Address(Tensor tensor)
    {
        var storage = (VulkanStorage)tensor.Storage;
        Append(storage.Address + (ulong)tensor.ByteOffset);
    }

    /// <summary>Appends a tensor's address or 0 when absent (shaders test the flag they are given).</summary>
    public void AddressOrZero(Tensor? tensor)
    {
        if (tensor is null) Append(0UL); else Address(tensor);
    }

    public void Append(ulong value)
    {
        Align(8);
        MemoryMarshal.Write(_bytes[_length..], in value);
        _length += 8;
    }

    public void Append(int value)
    {
        MemoryMarshal.Write(_bytes[_length..], in value);
        _length += 4;
    }

    public void Append(uint value) => Append(unchecked((int)value));

    public void Append(float value)
    {
        MemoryMarshal.Write(_bytes[_length..], in value);
        _length += 4;
    }

    private void Align(int alignment)
    {
        while (_length % alignment != 0) _bytes[_length++] = 0;
    }
}
