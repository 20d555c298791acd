namespace FastWeights.Engine.Ops;

/// <summary>f32 stand-ins for f16/bf16 tensors around a call to a backend that computes from and into
/// f32: <see cref="In"/> gives an exact f32 copy of an input, <see cref="Out"/> an f32 tensor that
/// <see cref="ConvertBack"/> rounds (to nearest) into the caller's half tensor. f32 tensors pass through
/// as they are. Disposing frees the stand-ins.</summary>
internal sealed class WideCopies : IDisposable
{
    private readonly List<Tensor> _owned = [];
    private readonly List<(Tensor Wide, Tensor Given)> _outputs = [];

    public Tensor In(Tensor t)
    {
        if (t.DType == DType.F32) return t;
        var wide = Pointwise.Convert(t, DType.F32);
        _owned.Add(wide);
        return wide;
    }

    /// <summary>A tensor the call writes whole: t itself where f32, else an f32 one converted into t later.</summary>
    public Tensor Out(Tensor t)
    {
        if (t.DType == DType.F32) return t;
        var wide = Tensor.Empty(t.Backend, t.Shape);
        _owned.Add(wide);
        _outputs.Add((wide, t));
        return wide;
    }

    /// <summary>Rounds every <see cref="Out"/> stand-in into its tensor (after the call).</summary>
    public void ConvertBack()
    {
        foreach (var (wide, given) in _outputs) Pointwise.Convert(wide, given);
    }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
    }
}
