using FastWeights.Bench;
using FastWeights.Engine;
using FastWeights.Engine.Ops;
using FastWeights.Engine.Cpu;
using FastWeights.Engine.Vulkan;
using Spectre.Console;

namespace FastWeights.Cli;

/// <summary>`fastweights bench &lt;case&gt;`: prints a table of figures and the same lines as plain text
/// (for bench/results/).</summary>
public static class BenchCommand
{
    public static int Run(string name, Options options)
    {
        switch (name)
        {
            case "gemm":
            {
                int[] sizes = options.GetInts("sizes", [1024, 2048]);
                string[] layouts = options.Get("layout", "nn").Split(',');   // Vulkan: nn, nt, tn, tt (GemmBench.Layouts)
                string which = options.Get("backend", "all");
                var dtypes = options.Get("dtype", "all") switch
                {
                    "f32" => new[] { DType.F32 },
                    "f16" => [DType.F16],
                    "bf16" => [DType.BF16],
                    _ => [DType.F32, DType.F16, DType.BF16],
                };
                var results = new List<BenchResult>();
                if (which is "all" or "cpu")
                    foreach (int n in sizes) results.Add(GemmBench.Run(CpuBackend.Shared, n, DType.F32));
                if (which is "all" or "vulkan")
                {
                    using var vulkan = VulkanBackend.TryCreate(new VulkanOptions { AllowCpuDevices = true }, out string? why);
                    if (vulkan is null) AnsiConsole.MarkupLine($"[yellow]vulkan skipped:[/] {Markup.Escape(why ?? "")}");
                    else
                    {
                        AnsiConsole.MarkupLine($"vulkan device: {Markup.Escape(vulkan.DeviceName)}");
                        int[] subgroups = options.GetInts("subgroups", [vulkan.CoopMatSubgroups]);
                        string[] tiles = options.Get("cm2-tiles", vulkan.CoopMat2Tile).Split(',');
                        foreach (var dtype in dtypes)
                            foreach (int warps in dtype == DType.F32 ? [subgroups[0]] : subgroups)
                                foreach (string tile in dtype == DType.F32 ? [tiles[0]] : tiles)
                                {
                                    vulkan.CoopMatSubgroups = warps;
                                    vulkan.CoopMat2Tile = tile;
                                    foreach (string layout in layouts)
                                        foreach (int n in sizes) results.Add(GemmBench.Run(vulkan, n, dtype, layout: layout));
                                }
                    }
                }
                Print(results);
                return 0;
            }
            case "gemm-kernel":
            {
                // the CPU micro-kernels alone, one thread, operands in L2 (CpuMicroKernelBench)
                Print(CpuMicroKernelBench.Run(options.GetInts("kc", [512])[0]).ToList());
                return 0;
            }
            case "delta":
            {
                // --shape B,H,T,D[,B,H,T,D...] --dtype f32|f16|bf16 (q, k, v) --outputs f32|f16|bf16 (o, dO, dq, dk, dv)
                // --algorithm auto|recurrent|chunked --gated false|true
                int[] shape = options.GetInts("shape", [8, 16, 2048, 64]);
                static DType Parse(string option, string name) => name switch
                {
                    "f32" => DType.F32,
                    "f16" => DType.F16,
                    "bf16" => DType.BF16,
                    _ => throw new ArgumentException($"bench delta: --{option} {name}: expected f32, f16 or bf16"),
                };
                var dtype = Parse("dtype", options.Get("dtype", "f32"));
                var outputs = Parse("outputs", options.Get("outputs", "f32"));
                string algorithmName = options.Get("algorithm", "auto");
                if (!Enum.TryParse<DeltaRuleAlgorithm>(algorithmName, ignoreCase: true, out var algorithm) || !Enum.IsDefined(algorithm))
                    throw new ArgumentException($"bench delta: --algorithm {algorithmName}: expected auto, recurrent or chunked");
                string gatedName = options.Get("gated", "false");
                bool gated = gatedName switch
                {
                    "false" => false,
                    "true" => true,
                    _ => throw new ArgumentException($"bench delta: --gated {gatedName}: expected false or true"),
                };
                var results = new List<BenchResult>();
                foreach (var backend in Backends(options))
                    for (int i = 0; i + 3 < shape.Length; i += 4)
                    {
                        results.AddRange(DeltaRuleBench.Run(backend, shape[i], shape[i + 1], shape[i + 2], shape[i + 3], dtype, algorithm, gated, outputs));
                        PrintProfile(backend, $"delta B{shape[i]} H{shape[i + 1]} T{shape[i + 2]} D{shape[i + 3]}");
                    }
                Print(results);
                return 0;
            }
            case "step":
            {
                int[] shape = options.GetInts("shape", [1, 16, 128]);
                Print(Backends(options).Select(b => DeltaRuleBench.Step(b, shape[0], shape[1], shape[2])).ToList());
                return 0;
            }
            case "scan":
            {
                int[] shape = options.GetInts("shape", [8, 4096, 2048]);
                var results = new List<BenchResult>();
                foreach (var backend in Backends(options))
                {
                    results.Add(ScanBench.Copy(backend, shape[0], shape[1], shape[2]));
                    results.AddRange(ScanBench.Run(backend, shape[0], shape[1], shape[2]));
                }
                Print(results);
                return 0;
            }
            case "probe":
            {
                // --items N --blocks n: VulkanBackend.BlockStreamProbe against a copy (docs/benchmarks.md, "Block streaming probe")
                using var vulkan = VulkanBackend.TryCreate(new VulkanOptions { AllowCpuDevices = true }, out string? why);
                if (vulkan is null) { AnsiConsole.MarkupLine($"[yellow]vulkan skipped:[/] {Markup.Escape(why ?? "")}"); return 0; }
                AnsiConsole.MarkupLine($"vulkan device: {Markup.Escape(vulkan.DeviceName)}");
                if (!vulkan.BlockStreamProbeRuns) { AnsiConsole.MarkupLine("[yellow]probe skipped:[/] no bf16 cooperative matrices with subgroups of 32 here"); return 0; }
                Opened.Add(vulkan);   // for FASTWEIGHTS_PIPELINE_STATS=1
                Print(BlockStreamBench.Run(vulkan, options.GetInt("items", 8192), options.GetInt("blocks", 8)).ToList());
                return 0;
            }
            case "linattn":
            {
                int[] shape = options.GetInts("shape", [2, 4, 1024, 64]);
                Print(CpuLinearAttentionBench.Run(shape[0], shape[1], shape[2], shape[3]).ToList());
                return 0;
            }
            case "rnn":
            {
                // --cells lstm,gru --hidden 768 --heads 1,6 --batch 16 --steps 1024 --projection f32|f16|bf16
                string projectionName = options.Get("projection", "f32");
                var projection = projectionName switch
                {
                    "f32" => DType.F32, "f16" => DType.F16, "bf16" => DType.BF16,
                    _ => throw new ArgumentException($"bench rnn: --projection {projectionName}: expected f32, f16 or bf16"),
                };
                var cells = options.Get("cells", "lstm,gru").Split(',').Select(c => Enum.Parse<FastWeights.Engine.Ops.RnnCell>(c, ignoreCase: true)).ToList();
                var results = new List<BenchResult>();
                foreach (var backend in Backends(options))
                    foreach (var cell in cells)
                        foreach (int heads in options.GetInts("heads", [1]))
                            foreach (int hidden in options.GetInts("hidden", [256]))
                                if (hidden % heads == 0)
                                {
                                    try
                                    {
                                        results.AddRange(RnnBench.Run(backend, cell, hidden, heads, options.GetInt("batch", 16), options.GetInt("steps", 128), projection));
                                        PrintProfile(backend, $"{cell} hidden {hidden} heads {heads}");
                                    }
                                    catch (OpArgumentException e) { Console.WriteLine($"skipped {cell} hidden {hidden} heads {heads} on {backend.Name}: {e.Message}"); }
                                }
                Print(results);
                return 0;
            }
            case "submits":
            {
                using var vulkan = VulkanBackend.Create(new VulkanOptions { AllowCpuDevices = true });
                var (gemms, submits, dispatches) = GemmBench.CountSubmits(vulkan);
                Console.WriteLine($"{gemms} GEMMs of 32^3 on {vulkan.DeviceName}: {dispatches} dispatches, {submits} submits");
                return 0;
            }
            default:
                return CommandLine.Fail($"unknown benchmark '{name}'");
        }
    }

    private static readonly List<IBackend> Opened = [];

    // --backend cpu|vulkan|all (default all); a missing Vulkan device is reported and skipped.
    private static IEnumerable<IBackend> Backends(Options options)
    {
        string which = options.Get("backend", "all");
        if (which is "all" or "cpu") yield return CpuBackend.Shared;
        if (which is "all" or "vulkan")
        {
            var vulkan = VulkanBackend.TryCreate(new VulkanOptions { AllowCpuDevices = true }, out string? why);
            if (vulkan is null) AnsiConsole.MarkupLine($"[yellow]vulkan skipped:[/] {Markup.Escape(why ?? "")}");
            else
            {
                Opened.Add(vulkan);
                AnsiConsole.MarkupLine($"vulkan device: {Markup.Escape(vulkan.DeviceName)}");
                yield return vulkan;
            }
        }
    }

    /// <summary>With FASTWEIGHTS_PROFILE=1: the GPU time per kernel of everything a case ran (warm-up
    /// and every timed repetition), largest first, then the counters start again.</summary>
    private static void PrintProfile(FastWeights.Engine.IBackend backend, string what)
    {
        if (backend is not VulkanBackend vulkan || !vulkan.Stream.Profiling) return;
        vulkan.Synchronize();
        var times = vulkan.Stream.KernelTimes.OrderByDescending(k => k.Value.Nanoseconds).ToList();
        double total = times.Sum(k => k.Value.Nanoseconds);
        Console.WriteLine($"profile {what}: {total / 1e6:F3} ms in {times.Sum(k => k.Value.Count)} dispatches");
        foreach (var (key, (count, ns)) in times)
            Console.WriteLine($"profile   {ns / 1e6,10:F3} ms {100 * ns / Math.Max(total, 1),5:F1} % {count,8} x {ns / Math.Max(count, 1) / 1e3,9:F2} us  {key}");
        vulkan.Stream.ResetProfile();
    }

    /// <summary>With FASTWEIGHTS_PIPELINE_STATS=1 on a device that reports them: the driver's
    /// statistics of every pipeline the benchmark created (registers, shared memory, ... as named
    /// by the driver), one line per pipeline executable.</summary>
    private static void PrintPipelineStatistics()
    {
        foreach (var vulkan in Opened.OfType<VulkanBackend>())
        {
            if (!vulkan.Device.CapturesPipelineStatistics) continue;
            foreach (var (key, statistics) in vulkan.Kernels.Statistics.OrderBy(e => e.Key, StringComparer.Ordinal))
                foreach (var executable in statistics.GroupBy(st => st.Executable))
                    Console.WriteLine($"pipeline {key} [{executable.Key}]: {string.Join(", ", executable.Select(st => $"{st.Name} = {st.Value}"))}");
        }
    }

    internal static void Print(IEnumerable<BenchResult> results)
    {
        PrintPipelineStatistics();
        var table = new Table().AddColumn("case").AddColumn("backend").AddColumn(new TableColumn("ms").RightAligned()).AddColumn(new TableColumn("rate").RightAligned());
        var list = results.ToList();
        foreach (var r in list) table.AddRow(Markup.Escape(r.Case), r.Backend, r.Milliseconds.ToString("F3"), $"{r.Rate:F1} {r.Unit}");
        AnsiConsole.Write(table);
        foreach (var r in list) Console.WriteLine(r);
    }
}
