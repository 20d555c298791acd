using System.Runtime.InteropServices;
using Silk.NET.Core;
using Silk.NET.Vulkan;

namespace FastWeights.Engine.Vulkan;

/// <summary>The Vulkan loader, one instance, and the capabilities of every physical device.</summary>
public sealed unsafe class VulkanInstance : IDisposable
{
    private bool _disposed;

    private VulkanInstance(Vk vk, Instance instance, PhysicalDevice[] devices, DeviceCapabilities[] capabilities)
    {
        Vk = vk;
        Handle = instance;
        PhysicalDevices = devices;
        Devices = capabilities;
    }

    public Vk Vk { get; }
    public Instance Handle { get; }
    public IReadOnlyList<PhysicalDevice> PhysicalDevices { get; }
    public IReadOnlyList<DeviceCapabilities> Devices { get; }

    /// <summary>Loads Vulkan and creates an instance (API 1.3). Throws <see cref="VulkanException"/> or
    /// <see cref="DllNotFoundException"/> (no loader) on failure.</summary>
    public static VulkanInstance Create()
    {
        var vk = Vk.GetApi();
        var appName = (byte*)Marshal.StringToHGlobalAnsi("FastWeights");
        try
        {
            var app = new ApplicationInfo
            {
                SType = StructureType.ApplicationInfo,
                PApplicationName = appName,
                ApplicationVersion = 1,
                PEngineName = appName,
                EngineVersion = 1,
                ApiVersion = Vk.Version13,
            };
            var info = new InstanceCreateInfo { SType = StructureType.InstanceCreateInfo, PApplicationInfo = &app };
            Instance instance;
            VulkanException.Check(vk.CreateInstance(&info, null, &instance), "vkCreateInstance");
            uint count = 0;
            VulkanException.Check(vk.EnumeratePhysicalDevices(instance, &count, null), "vkEnumeratePhysicalDevices");
            var devices = new PhysicalDevice[count];
            fixed (PhysicalDevice* p = devices)
                VulkanException.Check(vk.EnumeratePhysicalDevices(instance, &count, p), "vkEnumeratePhysicalDevices");
            var caps = new DeviceCapabilities[count];
            for (int i = 0; i < count; i++) caps[i] = ReadCapabilities(vk, instance, devices[i], i);
            return new VulkanInstance(vk, instance, devices, caps);
        }
        finally { Marshal.FreeHGlobal((nint)appName); }
    }

    private static DeviceCapabilities ReadCapabilities(Vk vk, Instance instance, PhysicalDevice device, int index)
    {
        // Extensions first: some property structs may only be chained when their extension exists.
        uint extCount = 0;
        vk.EnumerateDeviceExtensionProperties(device, (byte*)null, &extCount, null);
        var exts = new ExtensionProperties[extCount];
        fixed (ExtensionProperties* p = exts) vk.EnumerateDeviceExtensionProperties(device, (byte*)null, &extCount, p);
        var extensions = exts.Select(e => Marshal.PtrToStringAnsi((nint)e.ExtensionName)!).OrderBy(s => s, StringComparer.Ordinal).ToList();
        bool hasCoopMat = extensions.Contains("VK_KHR_cooperative_matrix");
        bool hasBf16 = extensions.Contains("VK_KHR_shader_bfloat16");
        bool hasAtomicFloat = extensions.Contains("VK_EXT_shader_atomic_float");
        bool hasCoopMat2 = hasCoopMat && extensions.Contains("VK_NV_cooperative_matrix2");
        bool hasSmBuiltins = extensions.Contains("VK_NV_shader_sm_builtins");
        bool hasAmdCores = extensions.Contains("VK_AMD_shader_core_properties");

        var subgroup = new PhysicalDeviceSubgroupProperties { SType = StructureType.PhysicalDeviceSubgroupProperties };
        var vk13 = new PhysicalDeviceVulkan13Properties { SType = StructureType.PhysicalDeviceVulkan13Properties, PNext = &subgroup };
        var driver = new PhysicalDeviceDriverProperties { SType = StructureType.PhysicalDeviceDriverProperties, PNext = &vk13 };
        var coop2Props = new PhysicalDeviceCooperativeMatrix2PropertiesNV { SType = StructureType.PhysicalDeviceCooperativeMatrix2PropertiesNV, PNext = &driver };
        void* propertyChain = hasCoopMat2 ? &coop2Props : &driver;
        // How many workgroups surely run at once (one per SM or compute unit): the raw structure
        // type values of VK_NV_shader_sm_builtins and VK_AMD_shader_core_properties.
        var smBuiltins = new PhysicalDeviceShaderSMBuiltinsPropertiesNV { SType = (StructureType)1000154001, PNext = propertyChain };
        if (hasSmBuiltins) propertyChain = &smBuiltins;
        var amdCores = new PhysicalDeviceShaderCorePropertiesAMD { SType = (StructureType)1000185000, PNext = propertyChain };
        if (hasAmdCores) propertyChain = &amdCores;
        var props = new PhysicalDeviceProperties2 { SType = StructureType.PhysicalDeviceProperties2, PNext = propertyChain };
        vk.GetPhysicalDeviceProperties2(device, &props);
        int computeUnits = hasSmBuiltins ? (int)smBuiltins.ShaderSmcount
            // RDNA may run a workgroup on a pair of compute units (WGP mode): count pairs.
            : hasAmdCores ? (int)(amdCores.ShaderEngineCount * amdCores.ShaderArraysPerEngineCount * amdCores.ComputeUnitsPerShaderArray / 2) : 0;

        var f11 = new PhysicalDeviceVulkan11Features { SType = StructureType.PhysicalDeviceVulkan11Features };
        var f12 = new PhysicalDeviceVulkan12Features { SType = StructureType.PhysicalDeviceVulkan12Features, PNext = &f11 };
        var f13 = new PhysicalDeviceVulkan13Features { SType = StructureType.PhysicalDeviceVulkan13Features, PNext = &f12 };
        var coopFeatures = new PhysicalDeviceCooperativeMatrixFeaturesKHR { SType = StructureType.PhysicalDeviceCooperativeMatrixFeaturesKhr, PNext = &f13 };
        var bf16Features = new PhysicalDeviceShaderBfloat16FeaturesKHR { SType = StructureType.PhysicalDeviceShaderBfloat16FeaturesKhr, PNext = hasCoopMat ? &coopFeatures : &f13 };
        void* chain = hasBf16 ? &bf16Features : hasCoopMat ? &coopFeatures : &f13;
        var atomicFloat = new PhysicalDeviceShaderAtomicFloatFeaturesEXT { SType = StructureType.PhysicalDeviceShaderAtomicFloatFeaturesExt, PNext = chain };
        if (hasAtomicFloat) chain = &atomicFloat;
        var coop2Features = new PhysicalDeviceCooperativeMatrix2FeaturesNV { SType = StructureType.PhysicalDeviceCooperativeMatrix2FeaturesNV, PNext = chain };
        if (hasCoopMat2) chain = &coop2Features;
        var features = new PhysicalDeviceFeatures2 { SType = StructureType.PhysicalDeviceFeatures2, PNext = chain };
        vk.GetPhysicalDeviceFeatures2(device, &features);

        var shapes = new List<CooperativeMatrixShape>();
        if (hasCoopMat && coopFeatures.CooperativeMatrix)
        {
            var fn = (delegate* unmanaged<PhysicalDevice, uint*, CooperativeMatrixPropertiesKHR*, Result>)
                vk.GetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR").Handle;
            if (fn != null)
            {
                uint n = 0;
                fn(device, &n, null);
                var list = new CooperativeMatrixPropertiesKHR[n];
                for (int i = 0; i < n; i++) list[i].SType = StructureType.CooperativeMatrixPropertiesKhr;
                fixed (CooperativeMatrixPropertiesKHR* p = list) fn(device, &n, p);
                foreach (var s in list)
                    shapes.Add(new CooperativeMatrixShape((int)s.MSize, (int)s.NSize, (int)s.KSize,
                        (ComponentType)(int)s.AType, (ComponentType)(int)s.BType, (ComponentType)(int)s.CType, (ComponentType)(int)s.ResultType,
                        s.SaturatingAccumulation, (int)s.Scope));
            }
        }

        CooperativeMatrix2Support? coop2 = null;
        if (hasCoopMat2 && coopFeatures.CooperativeMatrix && coop2Features.CooperativeMatrixWorkgroupScope
            && coop2Features.CooperativeMatrixFlexibleDimensions && coop2Features.CooperativeMatrixTensorAddressing)
        {
            var fn = (delegate* unmanaged<PhysicalDevice, uint*, CooperativeMatrixFlexibleDimensionsPropertiesNV*, Result>)
                vk.GetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV").Handle;
            var flexible = new List<FlexibleMatrixShape>();
            if (fn != null)
            {
                uint n = 0;
                fn(device, &n, null);
                var list = new CooperativeMatrixFlexibleDimensionsPropertiesNV[n];
                for (int i = 0; i < n; i++) list[i].SType = StructureType.CooperativeMatrixFlexibleDimensionsPropertiesNV;
                fixed (CooperativeMatrixFlexibleDimensionsPropertiesNV* p = list) fn(device, &n, p);
                foreach (var s in list)
                    flexible.Add(new FlexibleMatrixShape((int)s.MGranularity, (int)s.NGranularity, (int)s.KGranularity,
                        (ComponentType)(int)s.AType, (ComponentType)(int)s.BType, (ComponentType)(int)s.CType, (ComponentType)(int)s.ResultType,
                        (int)s.Scope, (int)s.WorkgroupInvocations));
            }
            coop2 = new CooperativeMatrix2Support(true, true, true, (int)coop2Props.CooperativeMatrixWorkgroupScopeMaxWorkgroupSize,
                (int)coop2Props.CooperativeMatrixFlexibleDimensionsMaxDimension, (int)coop2Props.CooperativeMatrixWorkgroupScopeReservedSharedMemory, flexible);
        }

        PhysicalDeviceMemoryProperties memory;
        vk.GetPhysicalDeviceMemoryProperties(device, &memory);
        long deviceLocal = 0;
        for (int i = 0; i < memory.MemoryHeapCount; i++)
            if ((memory.MemoryHeaps[i].Flags & MemoryHeapFlags.DeviceLocalBit) != 0) deviceLocal += (long)memory.MemoryHeaps[i].Size;

        var p0 = props.Properties;
        uint api = p0.ApiVersion;
        return new DeviceCapabilities
        {
            Index = index,
            Name = Marshal.PtrToStringAnsi((nint)p0.DeviceName)!,
            Type = p0.DeviceType switch
            {
                PhysicalDeviceType.DiscreteGpu => "discrete",
                PhysicalDeviceType.IntegratedGpu => "integrated",
                PhysicalDeviceType.VirtualGpu => "virtual",
                PhysicalDeviceType.Cpu => "cpu",
                _ => "other",
            },
            ApiVersion = $"{api >> 22}.{(api >> 12) & 0x3FF}.{api & 0xFFF}",
            DriverName = Marshal.PtrToStringAnsi((nint)driver.DriverName) ?? "",
            DriverInfo = Marshal.PtrToStringAnsi((nint)driver.DriverInfo) ?? "",
            VendorId = p0.VendorID,
            DeviceId = p0.DeviceID,
            SubgroupSize = (int)subgroup.SubgroupSize,
            MinSubgroupSize = (int)Math.Max(1, vk13.MinSubgroupSize),
            MaxSubgroupSize = (int)Math.Max(subgroup.SubgroupSize, vk13.MaxSubgroupSize),
            SubgroupSizeControl = f13.SubgroupSizeControl,
            ComputeFullSubgroups = f13.ComputeFullSubgroups,
            MaxSharedMemoryBytes = p0.Limits.MaxComputeSharedMemorySize,
            MaxWorkgroupInvocations = (int)p0.Limits.MaxComputeWorkGroupInvocations,
            MaxWorkgroupCount = (p0.Limits.MaxComputeWorkGroupCount[0], p0.Limits.MaxComputeWorkGroupCount[1], p0.Limits.MaxComputeWorkGroupCount[2]),
            MaxPushConstantsBytes = (int)p0.Limits.MaxPushConstantsSize,
            MinStorageBufferOffsetAlignment = (long)p0.Limits.MinStorageBufferOffsetAlignment,
            TimestampPeriodNs = p0.Limits.TimestampPeriod,
            ShaderFloat16 = f12.ShaderFloat16,
            ShaderInt64 = features.Features.ShaderInt64,
            StorageBuffer16BitAccess = f11.StorageBuffer16BitAccess,
            BufferDeviceAddress = f12.BufferDeviceAddress,
            TimelineSemaphore = f12.TimelineSemaphore,
            VulkanMemoryModel = f12.VulkanMemoryModel,
            ShaderBFloat16 = hasBf16 && bf16Features.ShaderBFloat16Type,
            BFloat16CooperativeMatrix = hasBf16 && bf16Features.ShaderBFloat16CooperativeMatrix,
            CooperativeMatrix = hasCoopMat && coopFeatures.CooperativeMatrix,
            SharedFloatAtomicAdd = hasAtomicFloat && atomicFloat.ShaderSharedFloat32AtomicAdd,
            CooperativeMatrixShapes = shapes,
            CooperativeMatrix2 = coop2,
            Extensions = extensions,
            DeviceLocalBytes = deviceLocal,
            ComputeUnits = computeUnits,
        };
    }

    /// <summary>Picks a device: an explicit choice (index or name substring) if given, else the best of
    /// discrete &gt; integrated &gt; virtual (&gt; cpu when allowed). Returns -1 with a reason if none fits.</summary>
    public int Select(VulkanOptions options, out string? why)
    {
        why = null;
        if (!string.IsNullOrEmpty(options.Device))
        {
            int chosen = int.TryParse(options.Device, out int idx) ? idx
                : Devices.FirstOrDefault(d => d.Name.Contains(options.Device, StringComparison.OrdinalIgnoreCase))?.Index ?? -1;
            if (chosen < 0 || chosen >= Devices.Count)
            {
                why = $"no Vulkan device matches '{options.Device}' (devices: {string.Join(", ", Devices.Select(d => $"{d.Index}: {d.Name}"))})";
                return -1;
            }
            why = Devices[chosen].WhyUnusable;
            return why is null ? chosen : -1;
        }
        string[] order = options.AllowCpuDevices ? ["discrete", "integrated", "virtual", "other", "cpu"] : ["discrete", "integrated", "virtual", "other"];
        foreach (string type in order)
            foreach (var d in Devices)
                if (d.Type == type && d.WhyUnusable is null) return d.Index;
        why = Devices.Count == 0 ? "the Vulkan loader lists no physical devices"
            : $"no usable device among: {string.Join(", ", Devices.Select(d => $"{d.Name} ({d.Type}{(d.WhyUnusable is null ? "" : ", " + d.WhyUnusable)})"))}"
              + (options.AllowCpuDevices ? "" : "; CPU devices such as lavapipe are only used when asked for (AllowCpuDevices or FASTWEIGHTS_VULKAN_DEVICE)");
        return -1;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Vk.DestroyInstance(Handle, null);
    }
}
