using System.Runtime.InteropServices;
using System.Text;
using Silk.NET.Vulkan;

namespace FastWeights.Engine.Vulkan;

/// <summary>What the driver reports about a compiled compute pipeline through
/// VK_KHR_pipeline_executable_properties (register counts, shared memory, spills and the like, as
/// the driver names them), for tuning kernels' occupancy. Collected only when asked
/// (<see cref="VulkanOptions.CapturePipelineStatistics"/>, FASTWEIGHTS_PIPELINE_STATS=1; read them from <see cref="KernelCache.Statistics"/>) and the
/// device lists the extension; pipelines are then created with the capture flag.</summary>
public sealed record PipelineStatistic(string Executable, string Name, string Value);

internal static unsafe class PipelineStatisticsReader
{
    public const string Extension = "VK_KHR_pipeline_executable_properties";

    /// <summary>VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR.</summary>
    public const PipelineCreateFlags CaptureStatistics = (PipelineCreateFlags)0x40;

    private static string Text(byte* chars, int max)
    {
        int n = 0;
        while (n < max && chars[n] != 0) n++;
        return Encoding.UTF8.GetString(chars, n);
    }

    private delegate Result Enumeration<T>(uint* count, T* items) where T : unmanaged;

    // The two-call Vulkan enumeration (count, then items with SType set), a failure as a VulkanException.
    private static T[] Enumerate<T>(Enumeration<T> call, string function) where T : unmanaged, IStructuredType
    {
        uint count = 0;
        VulkanException.Check(call(&count, null), function);
        var items = new T[count];
        for (int i = 0; i < items.Length; i++) items[i].StructureType();
        fixed (T* p = items) VulkanException.Check(call(&count, p), function);
        return items;
    }

    private static string Value(in PipelineExecutableStatisticKHR st) => st.Format switch
    {
        PipelineExecutableStatisticFormatKHR.Bool32Khr => (st.Value.B32.Value != 0).ToString(),
        PipelineExecutableStatisticFormatKHR.Int64Khr => st.Value.I64.ToString(),
        PipelineExecutableStatisticFormatKHR.Uint64Khr => st.Value.U64.ToString(),
        PipelineExecutableStatisticFormatKHR.Float64Khr => st.Value.F64.ToString("g6"),
        _ => "?",
    };

    /// <summary>Every statistic of every executable of <paramref name="pipeline"/> (one executable for a
    /// compute pipeline). A failed query is a VulkanException with its VkResult.</summary>
    public static List<PipelineStatistic> Read(VulkanDevice device, Pipeline pipeline)
    {
        var vk = device.Vk;
        var handle = device.Handle;
        var getProperties = (delegate* unmanaged<Device, PipelineInfoKHR*, uint*, PipelineExecutablePropertiesKHR*, Result>)
            (void*)vk.GetDeviceProcAddr(handle, "vkGetPipelineExecutablePropertiesKHR").Handle;
        var getStatistics = (delegate* unmanaged<Device, PipelineExecutableInfoKHR*, uint*, PipelineExecutableStatisticKHR*, Result>)
            (void*)vk.GetDeviceProcAddr(handle, "vkGetPipelineExecutableStatisticsKHR").Handle;
        if (getProperties == null || getStatistics == null)
            throw new VulkanException("vkGetDeviceProcAddr", Result.ErrorExtensionNotPresent, $"{Extension} entry points are missing");
        var info = new PipelineInfoKHR { SType = StructureType.PipelineInfoKhr, Pipeline = pipeline };
        PipelineInfoKHR* infoAt = &info;   // a stack local: the lambdas below run before Read returns
        var properties = Enumerate<PipelineExecutablePropertiesKHR>((count, items) => getProperties(handle, infoAt, count, items), "vkGetPipelineExecutablePropertiesKHR");
        var result = new List<PipelineStatistic>();
        for (uint e = 0; e < properties.Length; e++)
        {
            string executable;
            fixed (PipelineExecutablePropertiesKHR* p = &properties[e]) executable = Text(p->Name, 256);
            var which = new PipelineExecutableInfoKHR { SType = StructureType.PipelineExecutableInfoKhr, Pipeline = pipeline, ExecutableIndex = e };
            PipelineExecutableInfoKHR* whichAt = &which;
            var stats = Enumerate<PipelineExecutableStatisticKHR>((count, items) => getStatistics(handle, whichAt, count, items), "vkGetPipelineExecutableStatisticsKHR");
            for (int i = 0; i < stats.Length; i++)
                fixed (PipelineExecutableStatisticKHR* st = &stats[i]) result.Add(new PipelineStatistic(executable, Text(st->Name, 256), Value(*st)));
        }
        return result;
    }
}
