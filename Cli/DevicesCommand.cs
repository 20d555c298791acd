using FastWeights.Engine.Cpu;
using FastWeights.Engine.Vulkan;
using Spectre.Console;

namespace FastWeights.Cli;

/// <summary>`fastweights devices`: the CPU backend and every Vulkan physical device with what the
/// kernels care about, including each cooperative-matrix shape.</summary>
public static class DevicesCommand
{
    public static int Run()
    {
        var cpu = new Table().Title("[bold]cpu backend[/]").AddColumn("property").AddColumn("value");
        cpu.AddRow("threads", Environment.ProcessorCount.ToString());
        cpu.AddRow("simd", CpuBackend.SimdDescription);
        cpu.AddRow("processor vendor", CpuBackend.ProcessorVendor.Length > 0 ? CpuBackend.ProcessorVendor : "unknown");
        cpu.AddRow("gemm kernel", CpuBackend.GemmDescription);
        AnsiConsole.Write(cpu);

        VulkanInstance instance;
        try { instance = VulkanInstance.Create(); }
        catch (Exception e) when (e is VulkanException or DllNotFoundException or TypeInitializationException)
        {
            AnsiConsole.MarkupLine($"[yellow]vulkan:[/] unavailable: {Markup.Escape(e.Message)}");
            return 0;
        }
        using (instance)
        {
            int chosen = instance.Select(new VulkanOptions(), out string? why);
            int chosenWithCpu = instance.Select(new VulkanOptions { AllowCpuDevices = true }, out _);
            if (instance.Devices.Count == 0) AnsiConsole.MarkupLine("[yellow]vulkan:[/] the loader lists no devices");
            foreach (var d in instance.Devices)
            {
                string mark = d.Index == chosen ? " [green](auto choice)[/]" : d.Index == chosenWithCpu ? " [green](choice when CPU devices are allowed)[/]" : "";
                var t = new Table().Title($"[bold]vulkan device {d.Index}: {Markup.Escape(d.Name)}[/]{mark}").AddColumn("property").AddColumn("value");
                t.AddRow("type", d.Type);
                t.AddRow("api", d.ApiVersion);
                t.AddRow("driver", Markup.Escape($"{d.DriverName} {d.DriverInfo}"));
                t.AddRow("vendor / device id", $"0x{d.VendorId:x4} / 0x{d.DeviceId:x4}");
                t.AddRow("device-local memory", $"{d.DeviceLocalBytes / (1024.0 * 1024 * 1024):F1} GiB");
                t.AddRow("workgroups surely resident", d.ComputeUnits > 0 ? d.ComputeUnits.ToString() : "unknown");
                t.AddRow("subgroup size", $"{d.SubgroupSize} (range {d.MinSubgroupSize}..{d.MaxSubgroupSize}, control {Yes(d.SubgroupSizeControl)}, full subgroups {Yes(d.ComputeFullSubgroups)})");
                t.AddRow("shared memory / workgroup", $"{d.MaxSharedMemoryBytes / 1024.0:F0} KiB");
                t.AddRow("invocations / workgroup", d.MaxWorkgroupInvocations.ToString());
                t.AddRow("workgroups / dispatch", $"{d.MaxWorkgroupCount.X} x {d.MaxWorkgroupCount.Y} x {d.MaxWorkgroupCount.Z}");
                t.AddRow("push constants", $"{d.MaxPushConstantsBytes} bytes");
                t.AddRow("timestamp period", $"{d.TimestampPeriodNs} ns");
                t.AddRow("shaderFloat16 / shaderInt64", $"{Yes(d.ShaderFloat16)} / {Yes(d.ShaderInt64)}");
                t.AddRow("16-bit storage", Yes(d.StorageBuffer16BitAccess));
                t.AddRow("buffer device address", Yes(d.BufferDeviceAddress));
                t.AddRow("timeline semaphore", Yes(d.TimelineSemaphore));
                t.AddRow("vulkan memory model", Yes(d.VulkanMemoryModel));
                t.AddRow("bf16 (VK_KHR_shader_bfloat16)", $"{Yes(d.ShaderBFloat16)}, cooperative matrix {Yes(d.BFloat16CooperativeMatrix)}");
                t.AddRow("VK_KHR_cooperative_matrix", d.CooperativeMatrix ? $"{d.CooperativeMatrixShapes.Count} shapes" : "no");
                foreach (var s in d.CooperativeMatrixShapes) t.AddRow("", s.ToString());
                t.AddRow("VK_NV_cooperative_matrix2", d.CooperativeMatrix2 is { } c2
                    ? $"workgroup scope up to {c2.MaxWorkgroupSize} invocations, dimensions up to {c2.MaxDimension}, {c2.ReservedSharedMemory} B shared memory reserved, {c2.Shapes.Count} flexible shapes"
                    : Yes(d.HasExtension("VK_NV_cooperative_matrix2")) + (d.HasExtension("VK_NV_cooperative_matrix2") ? " (listed, but without workgroup scope, flexible dimensions or tensor addressing)" : ""));
                if (d.CooperativeMatrix2 is { } c2s) foreach (var s in c2s.Shapes) t.AddRow("", Markup.Escape(s.ToString()));
                t.AddRow("usable by FastWeights", d.WhyUnusable is null ? "yes" : $"no: {d.WhyUnusable}");
                AnsiConsole.Write(t);
            }
            if (chosen < 0) AnsiConsole.MarkupLine($"[yellow]automatic choice:[/] {Markup.Escape(why ?? "")}");
        }
        return 0;
    }

    private static string Yes(bool value) => value ? "yes" : "no";
}
