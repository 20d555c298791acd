using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Vulkan;

// shaders/pointwise/: elementwise.comp (op and activation as specialization constants),
// convert.comp, sum_last_axis.comp.
public sealed partial class VulkanBackend : IPointwiseOps
{
    private const int ElementwiseAdd = 0, ElementwiseMultiply = 1, ElementwiseScale = 2, ElementwiseActivate = 3,
        ElementwiseActivateBackward = 4, ElementwiseFill = 5, ElementwiseBroadcastLast = 6;
    private const int MaxGroups = 65535;

    public void Add(Tensor a, Tensor b, Tensor y) => Elementwise(ElementwiseAdd, 0, a, b, y, y.ElementCount);
    public void Multiply(Tensor a, Tensor b, Tensor y) => Elementwise(ElementwiseMultiply, 0, a, b, y, y.ElementCount);
    public void Scale(Tensor x, float alpha, float beta, Tensor y) => Elementwise(ElementwiseScale, 0, x, null, y, y.ElementCount, alpha: alpha, beta: beta);
    public void Activate(Activation activation, Tensor x, Tensor y) => Elementwise(ElementwiseActivate, (int)activation, x, null, y, y.ElementCount);
    public void ActivateBackward(Activation activation, Tensor x, Tensor dy, Tensor dx) => Elementwise(ElementwiseActivateBackward, (int)activation, x, dy, dx, dx.ElementCount);
    public void Fill(Tensor y, float value) => Elementwise(ElementwiseFill, 0, null, null, y, y.ElementCount, alpha: value);
    public void BroadcastLastAxis(Tensor dy, Tensor dx) => Elementwise(ElementwiseBroadcastLast, 0, dy, null, dx, dx.ElementCount, cols: dx.Shape[-1]);

    private void Elementwise(int op, int activation, Tensor? a, Tensor? b, Tensor y, long n, int cols = 1, float alpha = 0f, float beta = 0f)
    {
        if (n == 0) return;
        var kernel = Kernels.Get("pointwise/elementwise", [op, activation]);
        var push = new PushConstants(stackalloc byte[64]);
        push.AddressOrZero(a);
        push.AddressOrZero(b);
        push.Address(y);
        push.Append(checked((uint)n));
        push.Append(Math.Max(cols, 1));
        push.Append(alpha);
        push.Append(beta);
        Dispatch(kernel, push, (uint)Math.Min(Groups(n, 256), MaxGroups));
    }

    public void SumLastAxis(Tensor x, Tensor y)
    {
        if (y.ElementCount == 0) return;
        var kernel = Kernels.Get("pointwise/sum_last_axis");
        var push = new PushConstants(stackalloc byte[64]);
        push.Address(x);
        push.Address(y);
        push.Append(checked((uint)y.ElementCount));
        push.Append(x.Shape[-1]);
        Dispatch(kernel, push, (uint)Math.Min(y.ElementCount, MaxGroups));
    }

    public void Convert(Tensor source, Tensor destination)
    {
        if (source.ElementCount == 0) return;
        // Four elements per invocation when whole vectors line up (the storage blocks start 256-byte aligned).
        bool vec4 = source.ElementCount % 4 == 0 && source.ByteOffset % 16 == 0 && destination.ByteOffset % 16 == 0;
        var kernel = Kernels.Get("pointwise/convert", [(int)source.DType, (int)destination.DType, vec4 ? 1 : 0]);
        var push = new PushConstants(stackalloc byte[64]);
        push.Address(source);
        push.Address(destination);
        push.Append(checked((uint)source.ElementCount));
        Dispatch(kernel, push, (uint)Math.Min(Groups(vec4 ? source.ElementCount / 4 : source.ElementCount, 256), MaxGroups));
    }
}
