using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>The processor's vendor, for blockings that differ by microarchitecture (as BLIS keeps one
/// configuration per microarchitecture).</summary>
internal static class CpuVendor
{
    /// <summary>The 12-character vendor string of CPUID leaf 0 ("GenuineIntel", "AuthenticAMD", ...);
    /// empty where CPUID is not available (not x86).</summary>
    public static readonly string Name = Read();

    public static readonly bool IsAmd = Name == "AuthenticAMD";

    private static string Read()
    {
        if (!X86Base.IsSupported) return "";
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<int> registers = [ebx, edx, ecx];   // the string's order: EBX, EDX, ECX
        return Encoding.ASCII.GetString(MemoryMarshal.AsBytes(registers));
    }
}
