using System.Reflection;
using System.Runtime.InteropServices;
using Silk.NET.Vulkan;

namespace FastWeights.Engine.Vulkan;

/// <summary>A compute pipeline and the layout its push constants go through.</summary>
public sealed record ComputeKernel(string Key, Pipeline Pipeline, PipelineLayout Layout);

/// <summary>Creates compute pipelines lazily from the SPIR-V embedded at build time
/// (resources named <c>spirv/&lt;family&gt;/&lt;variant&gt;.spv</c>) and caches them by variant and
/// specialization constants. Every kernel shares one pipeline layout: no descriptor sets (tensors
/// are reached through buffer device addresses) and one push-constant range. A VkPipelineCache is
/// loaded from and saved to disk (written to a temporary file, then renamed).</summary>
public sealed unsafe class KernelCache : IDisposable
{
    private readonly VulkanDevice _device;
    private readonly Vk _vk;
    private readonly List<ComputeKernel> _kernels = [];   // every pipeline created (also the lock)
    // The kernels by variant with what else tells them apart, so that a lookup (one per dispatch)
    // compares the constants in place instead of building the key string.
    private readonly Dictionary<string, List<(int[] Specialization, int SubgroupSize, bool FullSubgroups, ComputeKernel Kernel)>> _byVariant = [];
    private readonly Dictionary<string, ShaderModule> _modules = [];
    private readonly PipelineCache _cache;
    private readonly string? _cacheFile;
    private bool _disposed;

    public KernelCache(VulkanDevice device, string? cacheDirectory)
    {
        _device = device;
        _vk = device.Vk;
        PushConstantBytes = Math.Min(device.Capabilities.MaxPushConstantsBytes, 256);
        var range = new PushConstantRange(ShaderStageFlags.ComputeBit, 0, (uint)PushConstantBytes);
        var layoutInfo = new PipelineLayoutCreateInfo { SType = StructureType.PipelineLayoutCreateInfo, PushConstantRangeCount = 1, PPushConstantRanges = &range };
        PipelineLayout layout;
        VulkanException.Check(_vk.CreatePipelineLayout(device.Handle, &layoutInfo, null, &layout), "vkCreatePipelineLayout");
        Layout = layout;

        byte[] initial = [];
        if (cacheDirectory is not null)
        {
            var caps = device.Capabilities;
            string safeName = string.Concat(caps.Name.Select(ch => char.IsLetterOrDigit(ch) ? ch : '_'));
            _cacheFile = Path.Combine(cacheDirectory, $"vkpipelines-{caps.VendorId:x}-{caps.DeviceId:x}-{safeName}-{ShaderHash()}.bin");
            try { if (File.Exists(_cacheFile)) initial = File.ReadAllBytes(_cacheFile); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        fixed (byte* p = initial)
        {
            var cacheInfo = new PipelineCacheCreateInfo { SType = StructureType.PipelineCacheCreateInfo, InitialDataSize = (nuint)initial.Length, PInitialData = p };
            PipelineCache cache;
            var result = _vk.CreatePipelineCache(device.Handle, &cacheInfo, null, &cache);
            if (result != Result.Success && initial.Length > 0)
            {
                cacheInfo.InitialDataSize = 0; // a stale or foreign cache file: start empty
                result = _vk.CreatePipelineCache(device.Handle, &cacheInfo, null, &cache);
            }
            VulkanException.Check(result, "vkCreatePipelineCache");
            _cache = cache;
        }
    }

    public PipelineLayout Layout { get; }
    public int PushConstantBytes { get; }
    public int PipelineCount => _kernels.Count;

    private readonly Dictionary<string, List<PipelineStatistic>> _statistics = [];

    /// <summary>The driver's statistics of every pipeline created so far, by kernel key, when the device
    /// captures them (VulkanDevice.CapturesPipelineStatistics); else empty.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<PipelineStatistic>> Statistics
    {
        get { lock (_kernels) return _statistics.ToDictionary(e => e.Key, e => (IReadOnlyList<PipelineStatistic>)e.Value.ToList()); }
    }

    /// <summary>Names of every embedded SPIR-V variant ("family/variant").</summary>
    public static IEnumerable<string> Variants => typeof(KernelCache).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith("spirv/", StringComparison.Ordinal)).Select(n => n["spirv/".Length..^".spv".Length]);

    public static bool HasVariant(string variant) => typeof(KernelCache).Assembly.GetManifestResourceInfo($"spirv/{variant}.spv") is not null;

    /// <summary>The pipeline for <paramref name="variant"/> ("family/name") with the given integer
    /// specialization constants (constant_id 0, 1, ...). <paramref name="requiredSubgroupSize"/> pins
    /// the subgroup size where the device supports subgroup size control (0: driver's choice);
    /// <paramref name="fullSubgroups"/> asks for full subgroups.</summary>
    public ComputeKernel Get(string variant, ReadOnlySpan<int> specialization = default, int requiredSubgroupSize = 0, bool fullSubgroups = false)
    {
        lock (_kernels)
        {
            if (_byVariant.TryGetValue(variant, out var known))
                foreach (var entry in known)
                    if (entry.SubgroupSize == requiredSubgroupSize && entry.FullSubgroups == fullSubgroups && specialization.SequenceEqual(entry.Specialization))
                        return entry.Kernel;
            string key = variant + "|" + string.Join(",", specialization.ToArray()) + "|" + requiredSubgroupSize + (fullSubgroups ? "f" : "");
            ComputeKernel kernel;
            var module = Module(variant);
            var entries = stackalloc SpecializationMapEntry[Math.Max(1, specialization.Length)];
            for (int i = 0; i < specialization.Length; i++) entries[i] = new SpecializationMapEntry((uint)i, (uint)(4 * i), 4);
            var caps = _device.Capabilities;
            fixed (int* data = specialization)
            {
                var spec = new SpecializationInfo((uint)specialization.Length, entries, (nuint)(4 * specialization.Length), data);
                var subgroupInfo = new PipelineShaderStageRequiredSubgroupSizeCreateInfo
                {
                    SType = StructureType.PipelineShaderStageRequiredSubgroupSizeCreateInfo,
                    RequiredSubgroupSize = (uint)requiredSubgroupSize,
                };
                bool pinSubgroup = requiredSubgroupSize > 0 && caps.SubgroupSizeControl;
                var flags = fullSubgroups && caps.ComputeFullSubgroups ? PipelineShaderStageCreateFlags.RequireFullSubgroupsBit : 0;
                byte* entryName = (byte*)Marshal.StringToHGlobalAnsi("main");
                try
                {
                    var stage = new PipelineShaderStageCreateInfo
                    {
                        SType = StructureType.PipelineShaderStageCreateInfo,
                        PNext = pinSubgroup ? &subgroupInfo : null,
                        Flags = flags,
                        Stage = ShaderStageFlags.ComputeBit,
                        Module = module,
                        PName = entryName,
                        PSpecializationInfo = specialization.Length > 0 ? &spec : null,
                    };
                    var info = new ComputePipelineCreateInfo
                    {
                        SType = StructureType.ComputePipelineCreateInfo, Stage = stage, Layout = Layout,
                        Flags = _device.CapturesPipelineStatistics ? PipelineStatisticsReader.CaptureStatistics : 0,
                    };
                    Pipeline pipeline;
                    var result = _vk.CreateComputePipelines(_device.Handle, _cache, 1, &info, null, &pipeline);
                    if (result != Result.Success) throw new VulkanException("vkCreateComputePipelines", result, key);
                    kernel = new ComputeKernel(key, pipeline, Layout);
                    if (_device.CapturesPipelineStatistics) _statistics[key] = PipelineStatisticsReader.Read(_device, pipeline);
                }
                finally { Marshal.FreeHGlobal((nint)entryName); }
            }
            _kernels.Add(kernel);
            if (known is null) _byVariant[variant] = known = [];
            known.Add((specialization.ToArray(), requiredSubgroupSize, fullSubgroups, kernel));
            return kernel;
        }
    }

    private ShaderModule Module(string variant)
    {
        if (_modules.TryGetValue(variant, out var module)) return module;
        using var stream = typeof(KernelCache).Assembly.GetManifestResourceStream($"spirv/{variant}.spv")
            ?? throw new InvalidOperationException($"KernelCache: no embedded SPIR-V for shader variant '{variant}' (known: {string.Join(", ", Variants)})");
        var code = new byte[stream.Length];
        stream.ReadExactly(code);
        fixed (byte* p = code)
        {
            var info = new ShaderModuleCreateInfo { SType = StructureType.ShaderModuleCreateInfo, CodeSize = (nuint)code.Length, PCode = (uint*)p };
            VulkanException.Check(_vk.CreateShaderModule(_device.Handle, &info, null, &module), "vkCreateShaderModule");
        }
        _modules[variant] = module;
        return module;
    }

    // The cache file name changes whenever the embedded shaders change.
    private static string ShaderHash()
    {
        var asm = typeof(KernelCache).Assembly;
        return asm.ManifestModule.ModuleVersionId.ToString("N")[..12];
    }

    /// <summary>Writes the pipeline cache to disk atomically (temporary file, then rename).</summary>
    public void Save()
    {
        if (_cacheFile is null) return;
        nuint size = 0;
        if (_vk.GetPipelineCacheData(_device.Handle, _cache, &size, null) != Result.Success || size == 0) return;
        var data = new byte[(int)size];
        fixed (byte* p = data)
            if (_vk.GetPipelineCacheData(_device.Handle, _cache, &size, p) != Result.Success) return;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_cacheFile)!);
            string temp = _cacheFile + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(temp, data.AsSpan(0, (int)size).ToArray());
            File.Move(temp, _cacheFile, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Save();
        foreach (var k in _kernels) _vk.DestroyPipeline(_device.Handle, k.Pipeline, null);
        foreach (var m in _modules.Values) _vk.DestroyShaderModule(_device.Handle, m, null);
        _vk.DestroyPipelineCache(_device.Handle, _cache, null);
        _vk.DestroyPipelineLayout(_device.Handle, Layout, null);
    }
}
