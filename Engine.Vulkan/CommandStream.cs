using Silk.NET.Vulkan;
using Buffer = Silk.NET.Vulkan.Buffer;
using Semaphore = Silk.NET.Vulkan.Semaphore;

namespace FastWeights.Engine.Vulkan;

/// <summary>Records every op into a command buffer and submits at sync points only: a download, an
/// explicit <see cref="Synchronize"/>, a full staging ring, or <see cref="DispatchesPerSubmit"/>
/// dispatches (so long op sequences keep the GPU fed without waiting). Submissions signal one
/// timeline semaphore with increasing values; a frame's command buffer is reused only after its
/// value has been reached. Between commands a memory barrier orders every read after every earlier
/// write (and every write after earlier reads), so ops may depend on each other freely and freed
/// memory may be reused at once. The barrier is recorded lazily, in front of the next command, and
/// names only what that command does (compute or transfer) as its second scope; the host is added
/// once per submission, at its end (host reads after a wait). FASTWEIGHTS_BARRIER=full records the
/// former barrier after every command instead (compute, transfer and host as the second scope), for
/// side-by-side timing.</summary>
public sealed unsafe partial class CommandStream : IDisposable
{
    private const int FrameCount = 3;
    private const ulong WaitTimeoutNs = 300UL * 1_000_000_000UL;
    public const int DispatchesPerSubmit = 512;

    private readonly VulkanDevice _device;
    private readonly Vk _vk;
    private readonly CommandPool _pool;
    private readonly CommandBuffer[] _buffers = new CommandBuffer[FrameCount];
    private readonly ulong[] _frameValues = new ulong[FrameCount];
    private readonly Semaphore _timeline;
    private readonly MemoryBlock _staging;
    private readonly QueryPool _timestamps;
    private ulong _submitted;
    private int _frame;
    private bool _recording;
    private int _commandsInFrame;
    private long _stagingUsed;
    private Pipeline _boundPipeline;
    private bool _disposed;
    private bool _barrierPending;
    private readonly bool _fullBarriers = Environment.GetEnvironmentVariable("FASTWEIGHTS_BARRIER") == "full";

    public CommandStream(VulkanDevice device, long stagingBytes = 64L << 20)
    {
        _device = device;
        _vk = device.Vk;
        var poolInfo = new CommandPoolCreateInfo { SType = StructureType.CommandPoolCreateInfo, Flags = CommandPoolCreateFlags.ResetCommandBufferBit, QueueFamilyIndex = device.QueueFamily };
        CommandPool pool;
        VulkanException.Check(_vk.CreateCommandPool(device.Handle, &poolInfo, null, &pool), "vkCreateCommandPool");
        _pool = pool;
        var allocInfo = new CommandBufferAllocateInfo { SType = StructureType.CommandBufferAllocateInfo, CommandPool = pool, Level = CommandBufferLevel.Primary, CommandBufferCount = FrameCount };
        fixed (CommandBuffer* p = _buffers) VulkanException.Check(_vk.AllocateCommandBuffers(device.Handle, &allocInfo, p), "vkAllocateCommandBuffers");
        var typeInfo = new SemaphoreTypeCreateInfo { SType = StructureType.SemaphoreTypeCreateInfo, SemaphoreType = SemaphoreType.Timeline, InitialValue = 0 };
        var semInfo = new SemaphoreCreateInfo { SType = StructureType.SemaphoreCreateInfo, PNext = &typeInfo };
        Semaphore sem;
        VulkanException.Check(_vk.CreateSemaphore(device.Handle, &semInfo, null, &sem), "vkCreateSemaphore");
        _timeline = sem;
        _staging = new MemoryBlock(device, stagingBytes, hostVisible: true);
        var queryInfo = new QueryPoolCreateInfo { SType = StructureType.QueryPoolCreateInfo, QueryType = QueryType.Timestamp, QueryCount = 2 };
        QueryPool qp;
        VulkanException.Check(_vk.CreateQueryPool(device.Handle, &queryInfo, null, &qp), "vkCreateQueryPool");
        _timestamps = qp;
    }

    /// <summary>Number of vkQueueSubmit calls so far.</summary>
    public long SubmitCount { get; private set; }
    /// <summary>Number of dispatches recorded so far.</summary>
    public long DispatchCount { get; private set; }

    private CommandBuffer Current
    {
        get
        {
            if (!_recording) Begin();
            return _buffers[_frame];
        }
    }

    private void Begin()
    {
        WaitFor(_frameValues[_frame]);
        CollectProfile(_frame);
        var cb = _buffers[_frame];
        VulkanException.Check(_vk.ResetCommandBuffer(cb, 0), "vkResetCommandBuffer");
        var info = new CommandBufferBeginInfo { SType = StructureType.CommandBufferBeginInfo, Flags = CommandBufferUsageFlags.OneTimeSubmitBit };
        VulkanException.Check(_vk.BeginCommandBuffer(cb, &info), "vkBeginCommandBuffer");
        _recording = true;
        BeginProfile(cb, _frame);
        _commandsInFrame = 0;
        _boundPipeline = default;
    }

    /// <summary>Records one compute dispatch with its push constants, followed by a barrier.</summary>
    public void Dispatch(ComputeKernel kernel, ReadOnlySpan<byte> pushConstants, uint groupsX, uint groupsY = 1, uint groupsZ = 1)
    {
        if (groupsX == 0 || groupsY == 0 || groupsZ == 0) return;
        var max = _device.Capabilities.MaxWorkgroupCount;
        if (groupsX > max.X || groupsY > max.Y || groupsZ > max.Z)
            throw new NotSupportedException($"{kernel.Key}: the problem needs {groupsX} x {groupsY} x {groupsZ} workgroups in one dispatch, "
                + $"more than this device's {max.X} x {max.Y} x {max.Z} (maxComputeWorkGroupCount); split the batch (or batch x heads) into smaller calls");
        var cb = Current;
        BarrierBefore(cb, PipelineStageFlags.ComputeShaderBit, AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit);
        if (_boundPipeline.Handle != kernel.Pipeline.Handle)
        {
            _vk.CmdBindPipeline(cb, PipelineBindPoint.Compute, kernel.Pipeline);
            _boundPipeline = kernel.Pipeline;
        }
        if (pushConstants.Length > 0)
            fixed (byte* p = pushConstants)
                _vk.CmdPushConstants(cb, kernel.Layout, ShaderStageFlags.ComputeBit, 0, (uint)pushConstants.Length, p);
        _vk.CmdDispatch(cb, groupsX, groupsY, groupsZ);
        StampProfile(cb, _frame, kernel.Key);
        DispatchCount++;
        BarrierAfter(cb);
        if (++_commandsInFrame >= DispatchesPerSubmit) Submit();
    }

    /// <summary>Records a buffer-to-buffer copy followed by a barrier.</summary>
    public void CopyBuffer(Buffer source, long sourceOffset, Buffer destination, long destinationOffset, long bytes)
    {
        if (bytes == 0) return;
        var cb = Current;
        BarrierBefore(cb, PipelineStageFlags.TransferBit, AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit);
        var region = new BufferCopy((ulong)sourceOffset, (ulong)destinationOffset, (ulong)bytes);
        _vk.CmdCopyBuffer(cb, source, destination, 1, &region);
        BarrierAfter(cb);
        _commandsInFrame++;
    }

    /// <summary>Records a fill of a 4-byte pattern (offset and size multiples of 4).</summary>
    public void FillBuffer(Buffer buffer, long offset, long bytes, uint pattern)
    {
        var cb = Current;
        BarrierBefore(cb, PipelineStageFlags.TransferBit, AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit);
        _vk.CmdFillBuffer(cb, buffer, (ulong)offset, (ulong)bytes, pattern);
        BarrierAfter(cb);
        _commandsInFrame++;
    }

    // Every earlier compute or transfer access (submission order, across command buffers) before
    // every access of the next command, whose stage and access kinds are the second scope.
    private void BarrierBefore(CommandBuffer cb, PipelineStageFlags stage, AccessFlags access)
    {
        if (!_barrierPending) return;
        _barrierPending = false;
        RecordBarrier(cb, stage, access);
    }

    private void BarrierAfter(CommandBuffer cb)
    {
        if (_fullBarriers) RecordBarrier(cb, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit | PipelineStageFlags.HostBit,
            AccessFlags.ShaderReadBit | AccessFlags.ShaderWriteBit | AccessFlags.TransferReadBit | AccessFlags.TransferWriteBit | AccessFlags.HostReadBit);
        else _barrierPending = true;
    }

    private void RecordBarrier(CommandBuffer cb, PipelineStageFlags stage, AccessFlags access)
    {
        var barrier = new MemoryBarrier
        {
            SType = StructureType.MemoryBarrier,
            SrcAccessMask = AccessFlags.ShaderWriteBit | AccessFlags.TransferWriteBit | AccessFlags.ShaderReadBit | AccessFlags.TransferReadBit,
            DstAccessMask = access,
        };
        _vk.CmdPipelineBarrier(cb, PipelineStageFlags.ComputeShaderBit | PipelineStageFlags.TransferBit, stage, 0, 1, &barrier, 0, null, 0, null);
    }

    /// <summary>Copies host bytes to a device range through the staging ring (recorded, not waited).</summary>
    public void Upload(Buffer destination, long destinationOffset, ReadOnlySpan<byte> source)
    {
        while (source.Length > 0)
        {
            long chunk = Math.Min(source.Length, _staging.Bytes);
            long at = ReserveStaging(chunk);
            source[..(int)chunk].CopyTo(new Span<byte>(_staging.Mapped + at, (int)chunk));
            CopyBuffer(_staging.Buffer, at, destination, destinationOffset, chunk);
            source = source[(int)chunk..];
            destinationOffset += chunk;
        }
    }

    /// <summary>Copies a device range to host memory; waits for everything recorded before.</summary>
    public void Download(Buffer source, long sourceOffset, Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            long chunk = Math.Min(destination.Length, _staging.Bytes);
            long at = ReserveStaging(chunk);
            CopyBuffer(source, sourceOffset, _staging.Buffer, at, chunk);
            Synchronize();
            new ReadOnlySpan<byte>(_staging.Mapped + at, (int)chunk).CopyTo(destination);
            destination = destination[(int)chunk..];
            sourceOffset += chunk;
        }
    }

    // Staging space is handed out linearly and recycled only once the GPU has caught up.
    private long ReserveStaging(long bytes)
    {
        long aligned = (bytes + 255) & ~255L;
        if (_stagingUsed + aligned > _staging.Bytes) Synchronize();
        long at = _stagingUsed;
        _stagingUsed += aligned;
        return at;
    }

    /// <summary>Submits what is recorded without waiting.</summary>
    public void Submit()
    {
        if (!_recording) return;
        var cb = _buffers[_frame];
        // What the host reads after waiting for this submission (downloads, timestamps are queries)
        // must be visible to it; the next command buffer still starts with a device barrier.
        if (_barrierPending) RecordBarrier(cb, PipelineStageFlags.HostBit, AccessFlags.HostReadBit);
        VulkanException.Check(_vk.EndCommandBuffer(cb), "vkEndCommandBuffer");
        ulong signal = ++_submitted;
        var sem = _timeline;
        var timelineInfo = new TimelineSemaphoreSubmitInfo { SType = StructureType.TimelineSemaphoreSubmitInfo, SignalSemaphoreValueCount = 1, PSignalSemaphoreValues = &signal };
        var submit = new SubmitInfo { SType = StructureType.SubmitInfo, PNext = &timelineInfo, CommandBufferCount = 1, PCommandBuffers = &cb, SignalSemaphoreCount = 1, PSignalSemaphores = &sem };
        VulkanException.Check(_vk.QueueSubmit(_device.Queue, 1, &submit, default), "vkQueueSubmit");
        SubmitCount++;
        _frameValues[_frame] = signal;
        _frame = (_frame + 1) % FrameCount;
        _recording = false;
    }

    /// <summary>Submits what is recorded and waits until the GPU has finished all of it.</summary>
    public void Synchronize()
    {
        Submit();
        WaitFor(_submitted);
        _stagingUsed = 0;
        for (int frame = 0; frame < FrameCount; frame++) CollectProfile(frame);
    }

    private void WaitFor(ulong value)
    {
        if (value == 0) return;
        var sem = _timeline;
        var info = new SemaphoreWaitInfo { SType = StructureType.SemaphoreWaitInfo, SemaphoreCount = 1, PSemaphores = &sem, PValues = &value };
        var result = _vk.WaitSemaphores(_device.Handle, &info, WaitTimeoutNs);
        if (result != Result.Success) throw new VulkanException("vkWaitSemaphores", result, $"waiting for submission {value}");
    }

    /// <summary>GPU time in nanoseconds of the commands <paramref name="record"/> records, measured with
    /// timestamps around them (waits for completion).</summary>
    /// <summary>Whether a <see cref="MeasureGpuNanoseconds"/> is recording: measurements do not nest.</summary>
    public bool Measuring { get; private set; }

    public double MeasureGpuNanoseconds(Action record)
    {
        if (Measuring) throw new InvalidOperationException("MeasureGpuNanoseconds: a measurement is already recording");
        Synchronize();
        var cb = Current;
        _vk.CmdResetQueryPool(cb, _timestamps, 0, 2);
        _vk.CmdWriteTimestamp(cb, PipelineStageFlags.TopOfPipeBit, _timestamps, 0);
        Measuring = true;
        try { record(); }
        finally { Measuring = false; }
        _vk.CmdWriteTimestamp(Current, PipelineStageFlags.BottomOfPipeBit, _timestamps, 1);
        Synchronize();
        ulong* stamps = stackalloc ulong[2];
        VulkanException.Check(_vk.GetQueryPoolResults(_device.Handle, _timestamps, 0, 2, 16, stamps, 8, QueryResultFlags.Result64Bit | QueryResultFlags.ResultWaitBit), "vkGetQueryPoolResults");
        return (stamps[1] - stamps[0]) * _device.Capabilities.TimestampPeriodNs;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try { Synchronize(); } catch (VulkanException) { }
        _vk.DestroyQueryPool(_device.Handle, _timestamps, null);
        if (_profilePool.Handle != 0) _vk.DestroyQueryPool(_device.Handle, _profilePool, null);
        _staging.Dispose();
        _vk.DestroySemaphore(_device.Handle, _timeline, null);
        _vk.DestroyCommandPool(_device.Handle, _pool, null);
    }
}
