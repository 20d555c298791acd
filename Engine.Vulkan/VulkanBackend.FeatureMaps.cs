using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/feature_maps/rows.comp: one workgroup per row of the last axis (up to 512 wide).
public sealed partial class VulkanBackend : IFeatureMapOps
{
    private const int FeatureMapMaxWidth = 512;

    public void FeatureMapForward(FeatureMap map, Tensor x, Tensor y) => Rows(0, map, x, null, y, 0f);
    public void FeatureMapBackward(FeatureMap map, Tensor x, Tensor dy, Tensor dx) => Rows(1, map, x, dy, dx, 0f);
    public void L2Normalize(Tensor x, Tensor y, float epsilon) => Rows(2, FeatureMap.Identity, x, null, y, epsilon);
    public void L2NormalizeBackward(Tensor x, Tensor dy, Tensor dx, float epsilon) => Rows(3, FeatureMap.Identity, x, dy, dx, epsilon);

    private void Rows(int mode, FeatureMap map, Tensor x, Tensor? dy, Tensor y, float epsilon)
    {
        int d = x.Shape[-1];
        long rows = x.ElementCount / d;
        if (rows == 0) return;
        if (d > FeatureMapMaxWidth)
            throw new OpArgumentException(mode < 2 ? "FeatureMap" : "L2Normalize", "x", $"{x.Shape}: the Vulkan row kernel takes a last axis of at most {FeatureMapMaxWidth}");
        var kernel = Kernels.Get("feature_maps/rows", [mode, (int)map.Kind, Math.Max(1, map.Nu), map.SumNormalise ? 1 : 0]);
        var push = new PushConstants(stackalloc byte[64]);
        push.Address(x);
        push.AddressOrZero(dy);
        push.Address(y);
        push.Append(checked((uint)rows));
        push.Append(d);
        push.Append(epsilon);
        Dispatch(kernel, push, (uint)Math.Min(rows, 65535));
    }
}
