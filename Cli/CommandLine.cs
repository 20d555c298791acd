using Spectre.Console;

namespace FastWeights.Cli;

/// <summary>Dispatches the `fastweights` sub-commands.</summary>
public static class CommandLine
{
    public const string Usage = """
        fastweights — recurrent sequence models on any GPU (Vulkan) and any CPU

        usage:
          fastweights devices                      every backend and device with its capabilities
          fastweights bench gemm [--sizes 1024,2048] [--backend cpu|vulkan|all] [--dtype f32|f16|bf16|all] [--subgroups 4,8]
          fastweights bench gemm-kernel [--kc 512]  CPU: the GEMM micro-kernels alone, one thread, operands in L2
          fastweights bench submits                count submits for 1,000 small GEMMs on Vulkan
          fastweights bench delta [--shape B,H,T,D[,B,H,T,D...]] [--backend cpu|vulkan|all]
          fastweights bench step [--shape B,H,D] [--backend ...]     one decoding step of the delta rule
          fastweights bench scan [--shape B,T,C] [--backend ...]     scan vs its memory floor
          fastweights bench linattn [--shape B,H,T,D]               CPU linear attention, recurrent and chunked
          fastweights bench probe [--items 8192] [--blocks 8]       Vulkan: how fast the delta rule's block staging reads memory
          fastweights bench rnn [--cells lstm,gru,slstm,elman] [--hidden 256] [--heads 1] [--batch 16] [--steps 128] [--backend ...]

        environment:
          FASTWEIGHTS_VULKAN_DEVICE   index or name substring of the Vulkan device to use
          FASTWEIGHTS_CACHE           directory of the pipeline cache (default ~/.cache/fastweights)
          FASTWEIGHTS_NO_COOPMAT=1    never use cooperative-matrix kernels
        """;

    public static int Run(string[] args)
    {
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
            {
                Console.WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }
            var options = Options.Parse(args.Skip(1));
            return args[0] switch
            {
                "devices" => DevicesCommand.Run(),
                "bench" => BenchCommand.Run(args.Length > 1 ? args[1] : "", Options.Parse(args.Skip(2))),
                _ => Fail($"unknown command '{args[0]}'"),
            };
        }
        catch (ArgumentException e)
        {
            return Fail(e.Message);
        }
    }

    internal static int Fail(string message)
    {
        AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(message)}");
        Console.Error.WriteLine(Usage);
        return 2;
    }
}

/// <summary>--name value pairs.</summary>
public sealed class Options
{
    private readonly Dictionary<string, string> _values = [];

    public static Options Parse(IEnumerable<string> args)
    {
        var o = new Options();
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            if (!list[i].StartsWith("--", StringComparison.Ordinal)) continue;
            string name = list[i][2..];
            string value = i + 1 < list.Count && !list[i + 1].StartsWith("--", StringComparison.Ordinal) ? list[++i] : "true";
            o._values[name] = value;
        }
        return o;
    }

    public string Get(string name, string fallback) => _values.TryGetValue(name, out var v) ? v : fallback;
    public int GetInt(string name, int fallback) => _values.TryGetValue(name, out var v) ? int.Parse(v) : fallback;
    public int[] GetInts(string name, int[] fallback) => _values.TryGetValue(name, out var v) ? v.Split(',').Select(int.Parse).ToArray() : fallback;
}
