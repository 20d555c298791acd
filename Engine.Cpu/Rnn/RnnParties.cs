using System.Runtime.ExceptionServices;
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

    /// <summary>Runs plan(count)'s head for parties 0 .. count-1 at once (they wait for each other at
    /// its barrier). count is at most the helpers available and the head's 8-unit groups (what
    /// <see cref="Split"/> makes of it), so every party index the head sees has its units. When the
    /// helpers are taken (a GEMM on another thread) the work runs as one party here.
    /// <para>A party that throws breaks the barrier, so the others leave it (and their jobs) instead of
    /// waiting for a step that never comes; once every party has left, the first failure is rethrown
    /// here. No exception reaches <see cref="GemmThreads"/>, whose jobs must not throw.</para></summary>
    public static void Run(int parties, int headDim, Func<int, IPartyHead> plan)
    {
        parties = Math.Min(Math.Min(parties, GemmThreads.Shared.Workers), Math.Max(1, (headDim + 7) / 8));
        if (parties > 1)
        {
            Exception? failure = null;
            bool ran;
            using (var head = plan(parties))
                ran = GemmThreads.Shared.TryRun(parties, party =>
                {
                    try { head.Run(party); }
                    catch (StepBarrier.BrokenException) { }      // another party failed first; its exception is reported
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref failure, e, null);
                        head.Barrier.Break();
                    }
                });
            if (failure is not null) ExceptionDispatchInfo.Throw(failure);
            if (ran) { LastParties = parties; return; }
        }
        using (var single = plan(1)) single.Run(0);
        LastParties = 1;
    }

    /// <summary>Test hook: when set, every party calls it at every step of a split or single recurrence
    /// with (the call's pre-activations, party, step); a throw from it stands for a party failing
    /// mid-recurrence.</summary>
    internal static Action<nint, int, int>? StepHook;

    /// <summary>How many parties the last <see cref="Run"/> on this thread used (for tests).</summary>
    [ThreadStatic] internal static int LastParties;
}

/// <summary>One head's recurrence as the parties see it: party p's job, and the barrier they meet at.</summary>
internal interface IPartyHead : IDisposable
{
    void Run(int party);
    StepBarrier Barrier { get; }
}

/// <summary>A reusable barrier for a fixed number of parties: the last to arrive resets the
/// count and advances the phase; the others spin (yielding the core after a few rounds, never
/// sleeping) until the phase moves. <see cref="Break"/> (a party failed) makes every waiting and
/// later <see cref="Wait"/> throw <see cref="BrokenException"/> instead of waiting for it.</summary>
internal sealed class StepBarrier(int parties)
{
    private int _arrived;
    private int _phase;
    private volatile bool _broken;

    public void Wait()
    {
        if (parties == 1) return;
        if (_broken) throw new BrokenException();
        int phase = Volatile.Read(ref _phase);
        if (Interlocked.Increment(ref _arrived) == parties)
        {
            _arrived = 0;
            Volatile.Write(ref _phase, phase + 1);
            return;
        }
        var spin = new SpinWait();
        while (Volatile.Read(ref _phase) == phase)
        {
            if (_broken) throw new BrokenException();
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    public void Break() => _broken = true;

    internal sealed class BrokenException() : Exception("StepBarrier: another party of the recurrence failed");
}

/// <summary>64-byte aligned native floats owned by a recurrence call, zeroed unless the owner writes
/// every one before reading (packed weights).</summary>
internal sealed unsafe class NativeFloats : IDisposable
{
    public readonly float* Pointer;

    public NativeFloats(long count, bool zeroed = true)
    {
        nuint bytes = (nuint)Math.Max(1, count) * sizeof(float);
        Pointer = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        if (zeroed) NativeMemory.Clear(Pointer, bytes);
    }

    public void Dispose() => NativeMemory.AlignedFree(Pointer);
}
