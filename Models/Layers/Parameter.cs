using FastWeights.Engine;

namespace FastWeights.Models.Layers;

/// <summary>A trainable tensor with a PyTorch-style name and its gradient (same shape, allocated on
/// first backward).</summary>
public sealed class Parameter(string name, Tensor value) : IDisposable
{
    public string Name { get; } = name;
    public Tensor Value { get; private set; } = value;
    public Tensor? Gradient { get; private set; }

    public Tensor GradientOrNew() => Gradient ??= Tensor.Zeros(Value.Backend, Value.Shape);

    /// <summary>Overwrites the value from host data of exactly this parameter's shape.</summary>
    public void Load(ReadOnlySpan<float> values, Shape shape)
    {
        if (shape != Value.Shape)
            throw new ArgumentException($"{Name}: a tensor of shape {shape} cannot load into a parameter of shape {Value.Shape}");
        Value.CopyFrom(values);
    }

    public void Dispose()
    {
        Value.Dispose();
        Gradient?.Dispose();
    }
}
