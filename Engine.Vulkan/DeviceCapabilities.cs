namespace FastWeights.Engine.Vulkan;

/// <summary>Element types as VK_KHR_cooperative_matrix names them (VkComponentTypeKHR values).</summary>
public enum ComponentType
{
    Float16 = 0,
    Float32 = 1,
    Float64 = 2,
    SInt8 = 3,
    SInt16 = 4,
    SInt32 = 5,
    SInt64 = 6,
    UInt8 = 7,
    UInt16 = 8,
    UInt32 = 9,
    UInt64 = 10,
    BFloat16 = 1000141000,
}

/// <summary>One entry of vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR: C[MxN] += A[MxK] B[KxN]
/// with the given component types, at the given scope (3 = subgroup).</summary>
public sealed record CooperativeMatrixShape(int M, int N, int K, ComponentType A, ComponentType B, ComponentType C, ComponentType Result, bool Saturating, int Scope)
{
    public string ScopeName => Scope switch { 1 => "device", 2 => "workgroup", 3 => "subgroup", 5 => "queue family", _ => Scope.ToString() };
    public override string ToString() => $"{M}x{N}x{K} {Short(A)} x {Short(B)} + {Short(C)} -> {Short(Result)} ({ScopeName})";
    internal static string Short(ComponentType t) => t switch
    {
        ComponentType.Float16 => "f16", ComponentType.Float32 => "f32", ComponentType.Float64 => "f64", ComponentType.BFloat16 => "bf16",
        ComponentType.SInt8 => "s8", ComponentType.UInt8 => "u8", ComponentType.SInt32 => "s32", ComponentType.UInt32 => "u32",
        _ => t.ToString(),
    };
}

/// <summary>One entry of vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV
/// (VK_NV_cooperative_matrix2): any M, N, K that are multiples of the granularities, for these types,
/// at this scope, with a workgroup of exactly <paramref name="WorkgroupInvocations"/> invocations
/// when the scope is the workgroup.</summary>
public sealed record FlexibleMatrixShape(int MGranularity, int NGranularity, int KGranularity, ComponentType A, ComponentType B, ComponentType C, ComponentType Result, int Scope, int WorkgroupInvocations)
{
    public override string ToString() =>
        $"multiples of {MGranularity}x{NGranularity}x{KGranularity} {CooperativeMatrixShape.Short(A)} x {CooperativeMatrixShape.Short(B)} + {CooperativeMatrixShape.Short(C)} -> {CooperativeMatrixShape.Short(Result)} "
        + (Scope == 2 ? $"(workgroup of {WorkgroupInvocations})" : $"(scope {Scope})");
}

/// <summary>VK_NV_cooperative_matrix2 as the device offers it: workgroup-scope matrices of flexible
/// sizes loaded through tensor layouts (the driver stages them; on NVIDIA it may pick the newest
/// tensor-core instructions).</summary>
public sealed record CooperativeMatrix2Support(bool WorkgroupScope, bool FlexibleDimensions, bool TensorAddressing,
    int MaxWorkgroupSize, int MaxDimension, int ReservedSharedMemory, IReadOnlyList<FlexibleMatrixShape> Shapes);

/// <summary>What a physical device offers that the kernels care about, read once at start-up.</summary>
public sealed record DeviceCapabilities
{
    public required int Index { get; init; }
    public required string Name { get; init; }
    public required string Type { get; init; }
    public required string ApiVersion { get; init; }
    public required string DriverName { get; init; }
    public required string DriverInfo { get; init; }
    public required uint VendorId { get; init; }
    public required uint DeviceId { get; init; }
    public required int SubgroupSize { get; init; }
    public required int MinSubgroupSize { get; init; }
    public required int MaxSubgroupSize { get; init; }
    public required bool SubgroupSizeControl { get; init; }
    public required bool ComputeFullSubgroups { get; init; }
    public required long MaxSharedMemoryBytes { get; init; }
    public required int MaxWorkgroupInvocations { get; init; }
    /// <summary>maxComputeWorkGroupCount: the most workgroups one dispatch may have along x, y and z.</summary>
    public required (uint X, uint Y, uint Z) MaxWorkgroupCount { get; init; }
    public required int MaxPushConstantsBytes { get; init; }
    public required long MinStorageBufferOffsetAlignment { get; init; }
    public required double TimestampPeriodNs { get; init; }
    public required bool ShaderFloat16 { get; init; }
    public required bool ShaderInt64 { get; init; }
    public required bool StorageBuffer16BitAccess { get; init; }
    public required bool BufferDeviceAddress { get; init; }
    public required bool TimelineSemaphore { get; init; }
    public required bool VulkanMemoryModel { get; init; }
    public required bool ShaderBFloat16 { get; init; }
    public required bool BFloat16CooperativeMatrix { get; init; }
    public required bool CooperativeMatrix { get; init; }
    /// <summary>Float atomic add on shared memory (VK_EXT_shader_atomic_float): the recurrent
    /// fast-weight backward sums over state rows with it.</summary>
    public required bool SharedFloatAtomicAdd { get; init; }
    public required IReadOnlyList<CooperativeMatrixShape> CooperativeMatrixShapes { get; init; }
    /// <summary>Null unless the device has VK_NV_cooperative_matrix2 with workgroup scope, flexible
    /// dimensions and tensor addressing (what gemm_coopmat2.comp needs).</summary>
    public CooperativeMatrix2Support? CooperativeMatrix2 { get; init; }
    public required IReadOnlyList<string> Extensions { get; init; }
    public required long DeviceLocalBytes { get; init; }
    /// <summary>SMs (VK_NV_shader_sm_builtins) or pairs of compute units (VK_AMD_shader_core_properties); 0
    /// where the device does not say. Any workgroup fits on one of them alone, so a dispatch of at
    /// most this many workgroups runs all of them at once on an otherwise idle device (the
    /// persistent recurrent kernels rely on that).</summary>
    public int ComputeUnits { get; init; }

    public bool HasExtension(string name) => Extensions.Contains(name);

    /// <summary>Whether a subgroup-scope shape with these input types accumulating in f32 is listed.</summary>
    public bool HasCooperativeMatrix(int m, int n, int k, ComponentType input) =>
        CooperativeMatrix && CooperativeMatrixShapes.Any(s => s.Scope == 3 && s.M == m && s.N == n && s.K == k
            && s.A == input && s.B == input && s.C == ComponentType.Float32 && s.Result == ComponentType.Float32);

    /// <summary>Whether a workgroup-scope flexible shape for these inputs accumulating in f32 is listed
    /// whose granularities divide (m, n, k) and which runs with this many invocations.</summary>
    public bool HasFlexibleMatrix(int m, int n, int k, ComponentType input, int invocations) =>
        CooperativeMatrix2 is { } c2 && c2.Shapes.Any(s => s.Scope == 2 && s.A == input && s.B == input
            && s.C == ComponentType.Float32 && s.Result == ComponentType.Float32 && s.WorkgroupInvocations == invocations
            && m % s.MGranularity == 0 && n % s.NGranularity == 0 && k % s.KGranularity == 0)
        && m <= c2.MaxDimension && n <= c2.MaxDimension && k <= c2.MaxDimension && invocations <= c2.MaxWorkgroupSize;

    /// <summary>Whether the device can run every kernel of the backend (Vulkan 1.2+ with buffer device
    /// addresses, timeline semaphores and 16-bit storage).</summary>
    public string? WhyUnusable =>
        !BufferDeviceAddress ? "bufferDeviceAddress is not supported" :
        !TimelineSemaphore ? "timelineSemaphore is not supported" :
        !StorageBuffer16BitAccess ? "storageBuffer16BitAccess is not supported" :
        null;
}
