using System.Runtime.InteropServices;
using FastWeights.Engine.Cpu.Gemm;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>A head's recurrence split over a few threads ("parties"), each owning a slice of the
/// head's units for the whole call; the parties meet at a <see cref="StepBarrier"/> once per time
/// step. The threads are <see cref="GemmThreads"/>' persistent helpers (the caller is party 0).</summary>
internal static class RnnParties
{
    /// <summary>Units of a head that one party owns: [Start, Start + Count), Start a multiple of 8;
    /// Padded = Count rounded up to 8 (the party's vectors and packed columns).</summary>
    public readonly record struct Units(int Start, int Count)
    {
        public int Padded => (Count + 7) & ~7;
    }

    /// <summary>Splits Dh units into whole 8-unit groups over the parties (at most one per group).</summary>
    public static Units[] Split(int headDim, int parties)
    {
        int groups = (headDim + 7) / 8;
        parties = Math.Clamp(parties, 1, groups);
        var units = new Units[parties];
        for (int p = 0; p < parties; p++)
        {
            int start = 8 * (int)((long)groups * p / parties), end = Math.Min(headDim, 8 * (int)((long)groups * (p + 1) / parties));
            units[p] = new Units(start, end - start);
        }
        return units;
    }

    /// <summary>Runs plan(count)'s job for parties 0 .. count-1 at once (they may wait for each other).
    /// count is at most the helpers available and the head's 8-unit groups (what <see cref="Split"/>
    /// makes of it), so every party index the job sees has its units. When the helpers are taken (a
    /// GEMM on another thread) the work runs as one party here.</summary>
    public static void Run(int parties, int headDim, Func<int, (Action<int> Job, IDisposable State)> plan)
    {
        parties = Math.Min(Math.Min(parties, GemmThreads.Shared.Workers), Math.Max(1, (headDim + 7) / 8));
        if (parties > 1)
        {
            var (job, state) = plan(parties);
            using (state)
                if (GemmThreads.Shared.TryRun(parties, job)) { LastParties = parties; return; }
        }
        var (single, singleState) = plan(1);
        using (singleState) single(0);
        LastParties = 1;
    }

    /// <summary>How many parties the last <see cref="Run"/> on this thread used (for tests).</summary>
    [ThreadStatic] internal static int LastParties;
}

/// <summary>A reusable barrier for a fixed number of parties: the last to arrive resets the
/// count and advances the phase; the others spin (yielding the core after a few rounds, never
/// sleeping) until the phase moves.</summary>
internal sealed class StepBarrier(int parties)
{
    private int _arrived;
    private int _phase;

    public void Wait()
    {
        if (parties == 1) return;
        int phase = Volatile.Read(ref _phase);
        if (Interlocked.Increment(ref _arrived) == parties)
        {
            _arrived = 0;
            Volatile.Write(ref _phase, phase + 1);
            return;
        }
        var spin = new SpinWait();
        while (Volatile.Read(ref _phase) == phase) spin.SpinOnce(sleep1Threshold: -1);
    }
}

/// <summary>Zeroed, 64-byte aligned native floats owned by a recurrence call.</summary>
internal sealed unsafe class NativeFloats : IDisposable
{
    public readonly float* Pointer;

    public NativeFloats(long count)
    {
        nuint bytes = (nuint)Math.Max(1, count) * sizeof(float);
        Pointer = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(Pointer, bytes);
    }

    public void Dispose() => NativeMemory.AlignedFree(Pointer);
}
