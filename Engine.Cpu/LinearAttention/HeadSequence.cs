using System.Runtime.InteropServices;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu.LinearAttention;

/// <summary>Pointers into the [B, T, H, D] tensors for one (batch, head): token t's row of q, k, v,
/// o (or their gradients) and the offset of this head's state [Dv, Dk] and normaliser [Dk].</summary>
internal readonly unsafe struct HeadSequence(FastWeightShape s, int b, int h)
{
    public readonly FastWeightShape Shape = s;
    private readonly long _first = (long)b * s.Steps * s.Heads + h;
    private readonly long _head = (long)b * s.Heads + h;
    public long Token(int t) => _first + (long)t * Shape.Heads;
    public float* KeyRow(float* tensor, int t) => tensor + Token(t) * Shape.KeyDim;
    public float* ValueRow(float* tensor, int t) => tensor + Token(t) * Shape.ValueDim;
    public long StateOffset => _head * Shape.ValueDim * Shape.KeyDim;
    public long NormaliserOffset => _head * Shape.KeyDim;

    /// <summary>Row stride rounded up to 16 floats (one Vector512): internal buffers are padded with
    /// zero columns so every SIMD loop runs on whole vectors.</summary>
    public static int Padded(int n) => (n + 15) & ~15;

    /// <summary>Runs body(b, h, workspace) for every (batch, head), in parallel; each worker gets
    /// one workspace from <paramref name="create"/>, disposed at the end.</summary>
    public static void ParallelOverHeads<TWorkspace>(FastWeightShape s, int threads, Func<TWorkspace> create, Action<int, int, TWorkspace> body)
        where TWorkspace : IDisposable
    {
        int count = s.Batch * s.Heads;
        if (count == 0) return;
        if (threads <= 1 || count == 1)
        {
            using var workspace = create();
            for (int i = 0; i < count; i++) body(i / s.Heads, i % s.Heads, workspace);
            return;
        }
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, create,
            (i, _, workspace) => { body(i / s.Heads, i % s.Heads, workspace); return workspace; },
            workspace => workspace.Dispose());
    }
}

/// <summary>Zeroed, 64-byte aligned native floats, carved into named regions by the kernels.</summary>
internal sealed unsafe class AlignedFloats : IDisposable
{
    private float* _next;
    private readonly float* _end;

    public AlignedFloats(long count)
    {
        Count = count;
        Pointer = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, count) * sizeof(float)), 64);
        if (Pointer == null) throw new OutOfMemoryException($"linear attention workspace of {count} floats");
        new Span<float>(Pointer, (int)count).Clear();
        _next = Pointer;
        _end = Pointer + count;
    }

    public float* Pointer { get; private set; }
    public long Count { get; }

    /// <summary>Starts carving again from the first float (the contents stay).</summary>
    public void Reset() => _next = Pointer;

    /// <summary>The next <paramref name="count"/> floats (rounded up to 16 so regions stay aligned).</summary>
    public float* Take(long count)
    {
        float* region = _next;
        _next += (count + 15) & ~15L;
        if (_next > _end) throw new InvalidOperationException($"workspace of {Count} floats overrun");
        return region;
    }

    /// <summary>Floats needed for regions of these sizes.</summary>
    public static long Size(params ReadOnlySpan<long> regions)
    {
        long total = 0;
        foreach (long r in regions) total += (r + 15) & ~15L;
        return total;
    }

    public void Dispose()
    {
        if (Pointer == null) return;
        NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}
