using System.Diagnostics;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>Persistent helper threads for the blocked GEMM. The thread pool wakes a parked worker too
/// late for GEMMs of a few milliseconds on a busy machine, so the helpers here spin for a short while
/// after each job (as OpenMP runtimes do) and park on a semaphore only when idle longer.
/// <para>Contract with a job: all work is claimed from counters inside the job, so a helper that
/// starts late (or not at all) only means the others claim more. <see cref="TryRun"/> returns when the
/// calling thread's share is done and every helper that entered the job has left it, i.e. when every
/// claimed item is finished. A job must allocate before it claims and must not throw mid-item.</para></summary>
internal sealed class GemmThreads
{
    public static readonly GemmThreads Shared = new(Environment.ProcessorCount - 1);

    /// <summary>How long an idle helper keeps polling for the next job before it parks.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 500; // 2 ms

    private readonly Helper[] _helpers;
    private Action<int>? _job;
    private int _jobWorkers;
    private long _generation;
    private int _busy;
    private int _inside;
    private Exception? _error;

    /// <summary>Threads a job can use at once: the helpers and the caller.</summary>
    public int Workers => _helpers.Length + 1;

    private GemmThreads(int helpers)
    {
        _helpers = new Helper[Math.Max(0, helpers)];
        for (int i = 0; i < _helpers.Length; i++)
        {
            var helper = new Helper();
            _helpers[i] = helper;
            int index = i + 1;
            new Thread(() => Loop(helper, index)) { IsBackground = true, Name = $"gemm-{index}" }.Start();
        }
    }

    /// <summary>Runs job(0) here and job(1 .. workers-1) on helpers. False (nothing run) when the
    /// helpers are taken by another GEMM (another caller thread, or a GEMM inside a job).</summary>
    public bool TryRun(int workers, Action<int> job)
    {
        if (_helpers.Length == 0 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0) return false;
        try
        {
            _jobWorkers = workers;
            Volatile.Write(ref _job, job);
            Interlocked.Increment(ref _generation);
            for (int i = 0; i < Math.Min(workers - 1, _helpers.Length); i++)
                if (Interlocked.Exchange(ref _helpers[i].Parked, 0) == 1) _helpers[i].Wake.Release();
            job(0);
            var spin = new SpinWait();
            while (Volatile.Read(ref _inside) != 0) spin.SpinOnce(sleep1Threshold: -1);
            var error = Interlocked.Exchange(ref _error, null);
            if (error is not null) throw new AggregateException("Gemm: a helper thread failed", error);
            return true;
        }
        finally
        {
            Volatile.Write(ref _job, null);
            Volatile.Write(ref _busy, 0);
        }
    }

    private void Loop(Helper helper, int index)
    {
        long seen = 0, idleSince = Stopwatch.GetTimestamp();
        while (true)
        {
            long generation = Volatile.Read(ref _generation);
            if (generation != seen)
            {
                seen = generation;
                Interlocked.Increment(ref _inside);
                // Read after entering: a job published later than `generation` is fine to join too.
                var job = Volatile.Read(ref _job);
                try { if (job is not null && index < _jobWorkers) job(index); }
                catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
                finally { Interlocked.Decrement(ref _inside); }
                idleSince = Stopwatch.GetTimestamp();
                continue;
            }
            if (Stopwatch.GetTimestamp() - idleSince < SpinTicks)
            {
                Thread.SpinWait(50);
                continue;
            }
            // Park; TryRun releases the semaphore of a parked helper after publishing a job. Re-check
            // the generation after announcing, so a job published in between is not slept through.
            // (Exchange, not a plain write: the store must be visible before the load below.)
            Interlocked.Exchange(ref helper.Parked, 1);
            if (Volatile.Read(ref _generation) == seen) helper.Wake.Wait();
            Volatile.Write(ref helper.Parked, 0);
            idleSince = Stopwatch.GetTimestamp();
        }
    }

    private sealed class Helper
    {
        public readonly SemaphoreSlim Wake = new(0);
        public int Parked;
    }
}
