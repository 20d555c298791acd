using Silk.NET.Vulkan;

namespace FastWeights.Engine.Vulkan;

// Per-kernel GPU time (FASTWEIGHTS_PROFILE=1 or Profiling = true): every frame's command buffer
// starts with a timestamp and gets one more after each dispatch, so dispatch i of a frame took
// stamp[i + 1] - stamp[i] (the barrier before it and any copy recorded between the two dispatches
// included). Stamps are read when the frame's submission is known to be complete (a wait in
// Synchronize or before the command buffer is reused) and summed per kernel key. Dispatches past a
// frame's ProfileSlots - 1 stamps are counted under "(unprofiled)" with no time.
public sealed unsafe partial class CommandStream
{
    private const int ProfileSlots = DispatchesPerSubmit + 1;
    private QueryPool _profilePool;
    private readonly List<string>[] _profileKeys = Enumerable.Range(0, FrameCount).Select(_ => new List<string>()).ToArray();
    private readonly bool[] _profilePending = new bool[FrameCount];
    private readonly Dictionary<string, (long Count, double Nanoseconds)> _kernelTimes = [];

    /// <summary>Whether dispatches are timed one by one (costs a timestamp per dispatch). Set it
    /// between submissions, e.g. right after a Synchronize.</summary>
    public bool Profiling { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_PROFILE") == "1";

    /// <summary>GPU time and dispatch count per kernel key since the last <see cref="ResetProfile"/>;
    /// complete after a Synchronize.</summary>
    public IReadOnlyDictionary<string, (long Count, double Nanoseconds)> KernelTimes => _kernelTimes;

    public void ResetProfile() => _kernelTimes.Clear();

    /// <summary>Puts the per-kernel times back to an earlier <see cref="KernelTimes"/> copy, dropping
    /// what was added since (a benchmark's spin-up calls, for one). Call it after a Synchronize.</summary>
    public void RestoreProfile(IReadOnlyDictionary<string, (long Count, double Nanoseconds)> earlier)
    {
        _kernelTimes.Clear();
        foreach (var (key, value) in earlier) _kernelTimes[key] = value;
    }

    private void BeginProfile(CommandBuffer cb, int frame)
    {
        _profileKeys[frame].Clear();
        _profilePending[frame] = false;
        if (!Profiling) return;
        if (_profilePool.Handle == 0)
        {
            var info = new QueryPoolCreateInfo { SType = StructureType.QueryPoolCreateInfo, QueryType = QueryType.Timestamp, QueryCount = (uint)(FrameCount * ProfileSlots) };
            QueryPool pool;
            VulkanException.Check(_vk.CreateQueryPool(_device.Handle, &info, null, &pool), "vkCreateQueryPool");
            _profilePool = pool;
        }
        _vk.CmdResetQueryPool(cb, _profilePool, (uint)(frame * ProfileSlots), ProfileSlots);
        _vk.CmdWriteTimestamp(cb, PipelineStageFlags.BottomOfPipeBit, _profilePool, (uint)(frame * ProfileSlots));
        _profilePending[frame] = true;
    }

    private void StampProfile(CommandBuffer cb, int frame, string key)
    {
        if (!_profilePending[frame]) return;
        var keys = _profileKeys[frame];
        if (keys.Count + 1 >= ProfileSlots) { Add("(unprofiled)", 0); return; }
        keys.Add(key);
        _vk.CmdWriteTimestamp(cb, PipelineStageFlags.BottomOfPipeBit, _profilePool, (uint)(frame * ProfileSlots + keys.Count));
    }

    // Called only once the frame's submission has completed (or the frame was never submitted).
    private void CollectProfile(int frame)
    {
        if (!_profilePending[frame] || (_recording && frame == _frame)) return;
        _profilePending[frame] = false;
        var keys = _profileKeys[frame];
        if (keys.Count == 0) return;
        var stamps = new ulong[keys.Count + 1];
        fixed (ulong* p = stamps)
            VulkanException.Check(_vk.GetQueryPoolResults(_device.Handle, _profilePool, (uint)(frame * ProfileSlots), (uint)stamps.Length,
                (nuint)(stamps.Length * sizeof(ulong)), p, sizeof(ulong), QueryResultFlags.Result64Bit | QueryResultFlags.ResultWaitBit), "vkGetQueryPoolResults");
        for (int i = 0; i < keys.Count; i++) Add(keys[i], (stamps[i + 1] - stamps[i]) * _device.Capabilities.TimestampPeriodNs);
        keys.Clear();
    }

    private void Add(string key, double ns)
    {
        var (count, total) = _kernelTimes.GetValueOrDefault(key);
        _kernelTimes[key] = (count + 1, total + ns);
    }
}
