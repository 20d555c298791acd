using System.Numerics.Tensors;
using FastWeights.Engine.Numerics;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// Elementwise work through TensorPrimitives (which vectorises with Vector512/256 itself).
public sealed unsafe partial class CpuBackend : IPointwiseOps
{
    public void Add(Tensor a, Tensor b, Tensor y) => TensorPrimitives.Add(Span(a), Span(b), Span(y));

    public void Multiply(Tensor a, Tensor b, Tensor y) => TensorPrimitives.Multiply(Span(a), Span(b), Span(y));

    public void Scale(Tensor x, float alpha, float beta, Tensor y)
    {
        if (beta == 0f) TensorPrimitives.Multiply(Span(x), alpha, Span(y));
        else
        {
            TensorPrimitives.Multiply(Span(y), beta, Span(y));
            TensorPrimitives.MultiplyAdd(Span(x), alpha, Span(y), Span(y));
        }
    }

    public void Activate(Activation activation, Tensor x, Tensor y)
    {
        ReadOnlySpan<float> xs = Span(x);
        Span<float> ys = Span(y);
        switch (activation)
        {
            case Activation.Identity: xs.CopyTo(ys); break;
            case Activation.Sigmoid: TensorPrimitives.Sigmoid(xs, ys); break;
            case Activation.Tanh: TensorPrimitives.Tanh(xs, ys); break;
            case Activation.Relu: TensorPrimitives.Max(xs, 0f, ys); break;
            case Activation.Silu:
                // y = x * sigmoid(x)
                TensorPrimitives.Sigmoid(xs, ys);
                TensorPrimitives.Multiply(xs, ys, ys);
                break;
            case Activation.EluPlusOne:
                for (int i = 0; i < xs.Length; i++) ys[i] = xs[i] > 0f ? xs[i] + 1f : MathF.Exp(xs[i]);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(activation));
        }
    }

    public void ActivateBackward(Activation activation, Tensor x, Tensor dy, Tensor dx)
    {
        ReadOnlySpan<float> xs = Span(x), dys = Span(dy);
        Span<float> dxs = Span(dx);
        for (int i = 0; i < xs.Length; i++)
        {
            float v = xs[i], g = dys[i];
            dxs[i] = activation switch
            {
                Activation.Identity => g,
                Activation.Sigmoid => Sigmoid(v) * (1f - Sigmoid(v)) * g,
                Activation.Tanh => (1f - MathF.Tanh(v) * MathF.Tanh(v)) * g,
                Activation.Relu => v > 0f ? g : 0f,
                Activation.Silu => Sigmoid(v) * (1f + v * (1f - Sigmoid(v))) * g,
                Activation.EluPlusOne => v > 0f ? g : MathF.Exp(v) * g,
                _ => throw new ArgumentOutOfRangeException(nameof(activation)),
            };
        }
    }

    private static float Sigmoid(float v) => 1f / (1f + MathF.Exp(-v));

    public void SumLastAxis(Tensor x, Tensor y)
    {
        int cols = x.Shape[-1];
        float* px = F32(x), py = F32(y);
        long rows = y.ElementCount;
        for (long r = 0; r < rows; r++) py[r] = TensorPrimitives.Sum(new ReadOnlySpan<float>(px + r * cols, cols));
    }

    public void BroadcastLastAxis(Tensor dy, Tensor dx)
    {
        int cols = dx.Shape[-1];
        float* pdy = F32(dy), pdx = F32(dx);
        long rows = dy.ElementCount;
        for (long r = 0; r < rows; r++) new Span<float>(pdx + r * cols, cols).Fill(pdy[r]);
    }

    public void Convert(Tensor source, Tensor destination)
    {
        int n = checked((int)source.ElementCount);
        if (source.DType == destination.DType) { Copy(source.Storage, source.ByteOffset, destination.Storage, destination.ByteOffset, source.ByteCount); return; }
        var srcBytes = new ReadOnlySpan<byte>(Bytes(source), (int)source.ByteCount);
        if (destination.DType == DType.F32) { Float16Conversions.Decode(srcBytes, source.DType, Span(destination)); return; }
        var dstBytes = new Span<byte>(Bytes(destination), (int)destination.ByteCount);
        if (source.DType == DType.F32) { Float16Conversions.Encode(Span(source), destination.DType, dstBytes); return; }
        var tmp = new float[n];
        Float16Conversions.Decode(srcBytes, source.DType, tmp);
        Float16Conversions.Encode(tmp, destination.DType, dstBytes);
    }

    public void Fill(Tensor y, float value) => Span(y).Fill(value);
}
