using System.Runtime.InteropServices;
using Silk.NET.Vulkan;

namespace FastWeights.Engine.Vulkan;

/// <summary>A logical device with one compute queue and the features the kernels use enabled:
/// buffer device addresses (every kernel reads its tensors through pointers passed as push
/// constants, so no descriptor sets exist), timeline semaphores, 16-bit storage and arithmetic,
/// the Vulkan memory model, subgroup size control, and cooperative matrices / bf16 where listed.</summary>
public sealed unsafe class VulkanDevice : IDisposable
{
    private bool _disposed;

    public VulkanDevice(VulkanInstance instance, int index, VulkanOptions options)
    {
        Instance = instance;
        Vk = instance.Vk;
        Physical = instance.PhysicalDevices[index];
        Capabilities = instance.Devices[index];
        var caps = Capabilities;

        uint familyCount = 0;
        Vk.GetPhysicalDeviceQueueFamilyProperties(Physical, &familyCount, null);
        var families = new QueueFamilyProperties[familyCount];
        fixed (QueueFamilyProperties* p = families) Vk.GetPhysicalDeviceQueueFamilyProperties(Physical, &familyCount, p);
        // Prefer a compute-only family (async compute on discrete GPUs), else any with compute.
        int family = Array.FindIndex(families, f => (f.QueueFlags & QueueFlags.ComputeBit) != 0 && (f.QueueFlags & QueueFlags.GraphicsBit) == 0);
        if (family < 0) family = Array.FindIndex(families, f => (f.QueueFlags & QueueFlags.ComputeBit) != 0);
        if (family < 0) throw new VulkanException("vkGetPhysicalDeviceQueueFamilyProperties", Result.ErrorFeatureNotPresent, $"{caps.Name} has no compute queue");
        QueueFamily = (uint)family;

        UseCooperativeMatrix = caps.CooperativeMatrix && !options.DisableCooperativeMatrix;
        UseBFloat16 = caps.ShaderBFloat16;
        UseCooperativeMatrix2 = UseCooperativeMatrix && caps.CooperativeMatrix2 is not null && !options.DisableCooperativeMatrix2;
        var extensions = new List<string>();
        if (UseCooperativeMatrix) extensions.Add("VK_KHR_cooperative_matrix");
        if (UseBFloat16) extensions.Add("VK_KHR_shader_bfloat16");
        if (caps.SharedFloatAtomicAdd) extensions.Add("VK_EXT_shader_atomic_float");
        if (UseCooperativeMatrix2) extensions.Add("VK_NV_cooperative_matrix2");
        CapturesPipelineStatistics = options.CapturePipelineStatistics && caps.HasExtension(PipelineStatisticsReader.Extension);
        if (CapturesPipelineStatistics) extensions.Add(PipelineStatisticsReader.Extension);

        float priority = 1f;
        var queueInfo = new DeviceQueueCreateInfo { SType = StructureType.DeviceQueueCreateInfo, QueueFamilyIndex = QueueFamily, QueueCount = 1, PQueuePriorities = &priority };
        var f11 = new PhysicalDeviceVulkan11Features { SType = StructureType.PhysicalDeviceVulkan11Features, StorageBuffer16BitAccess = true };
        var f12 = new PhysicalDeviceVulkan12Features
        {
            SType = StructureType.PhysicalDeviceVulkan12Features,
            PNext = &f11,
            BufferDeviceAddress = true,
            TimelineSemaphore = true,
            ShaderFloat16 = caps.ShaderFloat16,
            VulkanMemoryModel = caps.VulkanMemoryModel,
            VulkanMemoryModelDeviceScope = caps.VulkanMemoryModel,
        };
        var f13 = new PhysicalDeviceVulkan13Features
        {
            SType = StructureType.PhysicalDeviceVulkan13Features,
            PNext = &f12,
            SubgroupSizeControl = caps.SubgroupSizeControl,
            ComputeFullSubgroups = caps.ComputeFullSubgroups,
        };
        var coop = new PhysicalDeviceCooperativeMatrixFeaturesKHR { SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr, PNext = &f13, CooperativeMatrix = true };
        var bf16 = new PhysicalDeviceShaderBfloat16FeaturesKHR
        {
            SType = StructureType.PhysicalDeviceShaderBfloat16FeaturesKhr,
            PNext = UseCooperativeMatrix ? &coop : &f13,
            ShaderBFloat16Type = true,
            ShaderBFloat16CooperativeMatrix = UseCooperativeMatrix && caps.BFloat16CooperativeMatrix,
        };
        var core = new PhysicalDeviceFeatures { ShaderInt64 = caps.ShaderInt64 };
        void* chain = UseBFloat16 ? &bf16 : UseCooperativeMatrix ? &coop : &f13;
        var atomicFloat = new PhysicalDeviceShaderAtomicFloatFeaturesEXT
        {
            SType = StructureType.PhysicalDeviceShaderAtomicFloatFeaturesExt,
            PNext = chain,
            ShaderSharedFloat32AtomicAdd = true,
        };
        if (caps.SharedFloatAtomicAdd) chain = &atomicFloat;
        var coop2 = new PhysicalDeviceCooperativeMatrix2FeaturesNV
        {
            SType = StructureType.PhysicalDeviceCooperativeMatrix2FeaturesNV,
            PNext = chain,
            CooperativeMatrixWorkgroupScope = true,
            CooperativeMatrixFlexibleDimensions = true,
            CooperativeMatrixTensorAddressing = true,
        };
        if (UseCooperativeMatrix2) chain = &coop2;
        var executableInfo = new PhysicalDevicePipelineExecutablePropertiesFeaturesKHR
        {
            SType = StructureType.PhysicalDevicePipelineExecutablePropertiesFeaturesKhr,
            PNext = chain,
            PipelineExecutableInfo = true,
        };
        if (CapturesPipelineStatistics) chain = &executableInfo;
        var features = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = chain, Features = core };

        var names = extensions.Select(e => Marshal.StringToHGlobalAnsi(e)).ToArray();
        try
        {
            fixed (nint* pNames = names)
            {
                var info = new DeviceCreateInfo
                {
                    SType = StructureType.DeviceCreateInfo,
                    PNext = &features,
                    QueueCreateInfoCount = 1,
                    PQueueCreateInfos = &queueInfo,
                    EnabledExtensionCount = (uint)names.Length,
                    PpEnabledExtensionNames = (byte**)pNames,
                };
                Device handle;
                VulkanException.Check(Vk.CreateDevice(Physical, &info, null, &handle), "vkCreateDevice");
                Handle = handle;
            }
        }
        finally { foreach (var n in names) Marshal.FreeHGlobal(n); }
        Queue queue;
        Vk.GetDeviceQueue(Handle, QueueFamily, 0, &queue);
        Queue = queue;
        PhysicalDeviceMemoryProperties memory;
        Vk.GetPhysicalDeviceMemoryProperties(Physical, &memory);
        MemoryProperties = memory;
    }

    public VulkanInstance Instance { get; }
    public Vk Vk { get; }
    public PhysicalDevice Physical { get; }
    public Device Handle { get; }
    public Queue Queue { get; }
    public uint QueueFamily { get; }
    public DeviceCapabilities Capabilities { get; }
    public PhysicalDeviceMemoryProperties MemoryProperties { get; }
    /// <summary>Cooperative-matrix kernels are enabled (listed by the device and not turned off).</summary>
    public bool UseCooperativeMatrix { get; }
    public bool UseBFloat16 { get; }
    /// <summary>VK_NV_cooperative_matrix2 is enabled: workgroup-scope GEMM kernels may run.</summary>
    public bool UseCooperativeMatrix2 { get; }
    /// <summary>Pipelines are created with their statistics captured (VulkanOptions.CapturePipelineStatistics
    /// was asked for and the device lists VK_KHR_pipeline_executable_properties).</summary>
    public bool CapturesPipelineStatistics { get; }

    /// <summary>Index of a memory type allowed by <paramref name="typeBits"/> with all of
    /// <paramref name="required"/> flags, preferring one that also has <paramref name="preferred"/>.</summary>
    public int FindMemoryType(uint typeBits, MemoryPropertyFlags required, MemoryPropertyFlags preferred)
    {
        int fallback = -1;
        var memory = MemoryProperties;
        for (int i = 0; i < memory.MemoryTypeCount; i++)
        {
            if ((typeBits & (1u << i)) == 0) continue;
            var flags = memory.MemoryTypes[i].PropertyFlags;
            if ((flags & required) != required) continue;
            if ((flags & preferred) == preferred) return i;
            if (fallback < 0) fallback = i;
        }
        return fallback;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Vk.DeviceWaitIdle(Handle);
        Vk.DestroyDevice(Handle, null);
    }
}
