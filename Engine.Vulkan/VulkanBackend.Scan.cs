using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/scan/scan.comp: segmented parallel scan, 32 channels x 16 time segments per workgroup.
public sealed partial class VulkanBackend : IScanOps
{
    public void ScanForward(Tensor a, Tensor x, Tensor? h0, Tensor h) =>
        DispatchScan("scan/scan_forward", a, x, h0, h, null, null, null);

    public void ScanBackward(Tensor a, Tensor? h0, Tensor h, Tensor dh, Tensor da, Tensor dx, Tensor? dh0) =>
        DispatchScan("scan/scan_backward", a, dh, h0, h, dx, da, dh0);

    private void DispatchScan(string variant, Tensor a, Tensor input, Tensor? h0, Tensor h, Tensor? dx, Tensor? da, Tensor? dh0)
    {
        int batches = a.Shape[0], steps = a.Shape[1], channels = a.Shape[2];
        if (batches == 0 || channels == 0) return;
        if (steps == 0) { if (dh0 is not null) Fill(dh0, 0f); return; }
        var push = new PushConstants(stackalloc byte[96]);
        push.Address(a);
        push.Address(input);
        push.AddressOrZero(h0);
        push.Address(h);
        push.AddressOrZero(dx);
        push.AddressOrZero(da);
        push.AddressOrZero(dh0);
        push.Append(steps);
        push.Append(channels);
        Dispatch(Kernels.Get(variant), push, Groups(channels, 32), (uint)batches);
    }
}
