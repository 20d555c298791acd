namespace FastWeights.Engine.Vulkan;

/// <summary>How to pick and set up a Vulkan device.</summary>
public sealed record VulkanOptions
{
    /// <summary>Index into the list of physical devices (as `fastweights devices` prints it), or a
    /// case-insensitive substring of the device name. Defaults to FASTWEIGHTS_VULKAN_DEVICE.</summary>
    public string? Device { get; init; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_VULKAN_DEVICE");
    /// <summary>Whether CPU implementations (lavapipe) may be chosen when nothing better exists.
    /// Automatic selection otherwise prefers discrete &gt; integrated &gt; virtual and never picks a CPU
    /// device unless this is set or the device is named explicitly.</summary>
    public bool AllowCpuDevices { get; init; }
    /// <summary>Directory for the on-disk VkPipelineCache (null: no disk cache). Defaults to
    /// FASTWEIGHTS_CACHE or ~/.cache/fastweights.</summary>
    public string? CacheDirectory { get; init; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_CACHE")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "fastweights");
    /// <summary>Turn off cooperative-matrix kernels even where the device lists them.</summary>
    public bool DisableCooperativeMatrix { get; init; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_NO_COOPMAT") == "1";
    /// <summary>Turn off the VK_NV_cooperative_matrix2 kernels (the KHR cooperative-matrix ones stay).</summary>
    public bool DisableCooperativeMatrix2 { get; init; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_NO_COOPMAT2") == "1";

    /// <summary>Create pipelines with the driver's statistics captured (VK_KHR_pipeline_executable_properties,
    /// where the device lists it): <see cref="KernelCache.Statistics"/>. For tuning; off by
    /// default (FASTWEIGHTS_PIPELINE_STATS=1 turns it on).</summary>
    public bool CapturePipelineStatistics { get; init; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_PIPELINE_STATS") == "1";
}
