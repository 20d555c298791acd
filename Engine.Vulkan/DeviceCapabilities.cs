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
    private static string Short(ComponentType t) => t switch
    {
        ComponentType.Float16 => "f16", ComponentType.Float32 => "f32", ComponentType.Float64 => "f64", ComponentType.BFloat16 => "bf16",
        ComponentType.SInt8 => "s8", ComponentType.UInt8 => "u8", ComponentType.SInt32 => "s32", ComponentType.UInt32 => "u32",
        _ => t.ToString(),
    };
}

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
    public required IReadOnlyList<string> Extensions { get; init; }
    public required long DeviceLocalBytes { get; init; }

    public bool HasExtension(string name) => Extensions.Contains(name);

    /// <summary>Whether a subgroup-scope shape with these input types accumulating in f32 is listed.</summary>
    public bool HasCooperativeMatrix(int m, int n, int k, ComponentType input) =>
        CooperativeMatrix && CooperativeMatrixShapes.Any(s => s.Scope == 3 && s.M == m && s.N == n && s.K == k
            && s.A == input && s.B == input && s.C == ComponentType.Float32 && s.Result == ComponentType.Float32);

    /// <summary>Whether the device can run every kernel of the backend (Vulkan 1.2+ with buffer device
    /// addresses, timeline semaphores and 16-bit storage).</summary>
    public string? WhyUnusable =>
        !BufferDeviceAddress ? "bufferDeviceAddress is not supported" :
        !TimelineSemaphore ? "timelineSemaphore is not supported" :
        !StorageBuffer16BitAccess ? "storageBuffer16BitAccess is not supported" :
        null;
}
