namespace FastWeights.Engine.Vulkan;

/// <summary>Sub-allocates tensors from few large device-local blocks (drivers cap the number of
/// VkDeviceMemory objects near 4096). Each block keeps a sorted free list of [offset, size) ranges;
/// allocation is first fit, freeing merges neighbours. Offsets are multiples of
/// <see cref="Alignment"/> (256 bytes: covers every storage-buffer offset alignment and vec4 loads).
/// Requests larger than a block get a dedicated block. Freed memory can be reused at once by later
/// commands because the command stream places a full barrier between dependent dispatches and keeps
/// submission order.</summary>
public sealed class MemoryPool : IDisposable
{
    public const long Alignment = 256;
    private readonly VulkanDevice _device;
    private readonly long _blockBytes;
    private readonly List<(MemoryBlock Block, SortedList<long, long> Free)> _blocks = [];
    private readonly object _lock = new();

    public MemoryPool(VulkanDevice device, long blockBytes = 256L << 20)
    {
        _device = device;
        _blockBytes = blockBytes;
    }

    public long ReservedBytes { get { lock (_lock) return _blocks.Sum(b => b.Block.Bytes); } }
    public int BlockCount { get { lock (_lock) return _blocks.Count; } }

    public VulkanStorage Allocate(IBackend backend, long bytes)
    {
        long size = (Math.Max(bytes, 1) + Alignment - 1) / Alignment * Alignment;
        lock (_lock)
        {
            foreach (var (block, free) in _blocks)
                if (TryTake(free, size, out long offset)) return new VulkanStorage(backend, this, block, offset, size, bytes);
            var newBlock = new MemoryBlock(_device, Math.Max(_blockBytes, size), hostVisible: false);
            var newFree = new SortedList<long, long> { [0] = newBlock.Bytes };
            _blocks.Add((newBlock, newFree));
            TryTake(newFree, size, out long at);
            return new VulkanStorage(backend, this, newBlock, at, size, bytes);
        }
    }

    private static bool TryTake(SortedList<long, long> free, long size, out long offset)
    {
        for (int i = 0; i < free.Count; i++)
        {
            long start = free.Keys[i], length = free.Values[i];
            if (length < size) continue;
            free.RemoveAt(i);
            if (length > size) free.Add(start + size, length - size);
            offset = start;
            return true;
        }
        offset = -1;
        return false;
    }

    internal void Free(MemoryBlock block, long offset, long size)
    {
        lock (_lock)
        {
            var free = _blocks.First(b => b.Block == block).Free;
            // Merge with the following and preceding free ranges.
            int next = free.IndexOfKey(offset + size);
            if (next >= 0) { size += free.Values[next]; free.RemoveAt(next); }
            int i = 0;
            while (i < free.Count && free.Keys[i] < offset) i++;
            if (i > 0 && free.Keys[i - 1] + free.Values[i - 1] == offset)
            {
                long start = free.Keys[i - 1];
                free[start] = free.Values[i - 1] + size;
                return;
            }
            free.Add(offset, size);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var (block, _) in _blocks) block.Dispose();
            _blocks.Clear();
        }
    }
}

/// <summary>A tensor's range inside a <see cref="MemoryBlock"/>.</summary>
public sealed class VulkanStorage : DeviceStorage
{
    private readonly MemoryPool _pool;

    internal VulkanStorage(IBackend backend, MemoryPool pool, MemoryBlock block, long offset, long reserved, long bytes) : base(backend, bytes)
    {
        _pool = pool;
        Block = block;
        Offset = offset;
        Reserved = reserved;
    }

    public MemoryBlock Block { get; }
    public long Offset { get; }
    public long Reserved { get; }
    public ulong Address => Block.Address + (ulong)Offset;

    protected override void Release() => _pool.Free(Block, Offset, Reserved);
}
