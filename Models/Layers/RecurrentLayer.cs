using FastWeights.Engine;
using FastWeights.Engine.Ops;

namespace FastWeights.Models.Layers;

/// <summary>A recurrent layer: the input projection x W_ih^T + b_ih for all steps (GEMMs), then the
/// head-wise recurrence (Rnn). Parameters carry PyTorch's names and, for one head, its shapes, so an
/// nn.LSTM / nn.GRU state dict loads unchanged:
///   weight_ih_l0 [G*hidden, input], bias_ih_l0 [G*hidden], bias_hh_l0 [G*hidden],
///   weight_hh_l0 [G*hidden, hidden] for one head, [heads, G*Dh, Dh] (block-diagonal R) for several.
/// Input x [B, T, input]; output h [B, T, hidden].</summary>
public sealed class RecurrentLayer : IDisposable
{
    private readonly IBackend _backend;
    private Tensor? _ones;            // [B*T, 1] of 1: broadcasts b_ih through a K = 1 GEMM
    private Context? _context;

    private sealed record Context(Tensor Input, Tensor Preactivations, Tensor Outputs, Tensor Saved, RnnProblem Problem) : IDisposable
    {
        public void Dispose() { Preactivations.Dispose(); Saved.Dispose(); }
    }

    public RecurrentLayer(IBackend backend, RnnCell cell, int inputSize, int hiddenSize, int heads = 1, ulong seed = 1)
    {
        if (hiddenSize % heads != 0) throw new ArgumentException($"RecurrentLayer: hidden size {hiddenSize} is not a multiple of {heads} heads");
        _backend = backend;
        Cell = cell;
        InputSize = inputSize;
        HiddenSize = hiddenSize;
        Heads = heads;
        int g = cell.Gates(), dh = hiddenSize / heads;
        float bound = 1f / MathF.Sqrt(dh); // PyTorch's U(-1/sqrt(hidden), 1/sqrt(hidden)), per head
        WeightIh = new Parameter("weight_ih_l0", Tensor.Uniform(backend, new Shape(g * hiddenSize, inputSize), seed, -bound, bound));
        WeightHh = new Parameter("weight_hh_l0", Tensor.Uniform(backend, new Shape(heads, g * dh, dh), seed + 1, -bound, bound));
        BiasIh = new Parameter("bias_ih_l0", Tensor.Uniform(backend, new Shape(g * hiddenSize), seed + 2, -bound, bound));
        BiasHh = new Parameter("bias_hh_l0", Tensor.Uniform(backend, new Shape(g * hiddenSize), seed + 3, -bound, bound));
    }

    public RnnCell Cell { get; }
    public int InputSize { get; }
    public int HiddenSize { get; }
    public int Heads { get; }
    public Parameter WeightIh { get; }
    public Parameter WeightHh { get; }
    public Parameter BiasIh { get; }
    public Parameter BiasHh { get; }
    public IReadOnlyList<Parameter> Parameters => [WeightIh, WeightHh, BiasIh, BiasHh];

    /// <summary>Loads tensors by PyTorch name (a state dict as host arrays with their shapes).
    /// For one head, weight_hh_l0 may come as PyTorch's [G*hidden, hidden].</summary>
    public void LoadStateDict(IReadOnlyDictionary<string, (float[] Values, int[] Shape)> state)
    {
        foreach (var p in Parameters)
        {
            if (!state.TryGetValue(p.Name, out var entry)) throw new KeyNotFoundException($"RecurrentLayer: the state dict has no '{p.Name}'");
            var shape = new Shape(entry.Shape);
            if (p == WeightHh && Heads == 1 && shape.Rank == 2) shape = new Shape(1, shape[0], shape[1]);
            p.Load(entry.Values, shape);
        }
    }

    /// <summary>h = recurrence(x W_ih^T + b_ih). Keeps what Backward needs until it runs; the returned
    /// outputs (owned by the caller) and x must stay alive until then, since the backward reads them.</summary>
    public Tensor Forward(Tensor x, IReadOnlyList<Tensor?>? initialStates = null, IReadOnlyList<Tensor?>? finalStates = null)
    {
        Op.Rank("RecurrentLayer", "x", x, 3, 3);
        Op.Dim("RecurrentLayer", "x", x, 2, InputSize, "the layer's input size");
        int b = x.Shape[0], t = x.Shape[1], g = Cell.Gates();
        var pre = Tensor.Empty(_backend, new Shape(b, t, g * HiddenSize));
        var pre2 = pre.Reshape(new Shape(b * t, g * HiddenSize));
        Gemm.Forward(Ones(b * t), BiasIh.Value.Reshape(new Shape(1, g * HiddenSize)), pre2);            // b_ih in every row
        Gemm.Forward(x.Reshape(new Shape(b * t, InputSize)), WeightIh.Value, pre2, transposeB: true, beta: 1f);
        var outputs = Tensor.Empty(_backend, new Shape(b, t, HiddenSize));
        var saved = Tensor.Empty(_backend, Rnn.SavedShape(Cell, b, t, HiddenSize));
        var problem = Rnn.Forward(Cell, pre, WeightHh.Value, BiasHh.Value, outputs, initialStates, finalStates, saved);
        _context?.Dispose();
        _context = new Context(x, pre, outputs, saved, problem);
        return outputs;
    }

    /// <summary>Accumulates parameter gradients from dh [B, T, hidden] and returns dx [B, T, input].
    /// <paramref name="dFinalStates"/>: optional gradients reaching the final states the forward
    /// returned, in <see cref="Rnn.StateNames"/> order, each [B, hidden] (for sLSTM h's only);
    /// <paramref name="dInitialStates"/>: optional tensors [B, hidden] that receive (overwritten) the
    /// gradients with respect to the initial states (at the zero state where the forward was given
    /// none).</summary>
    public Tensor Backward(Tensor dOutputs, IReadOnlyList<Tensor?>? dFinalStates = null, IReadOnlyList<Tensor?>? dInitialStates = null)
    {
        var c = _context ?? throw new InvalidOperationException("RecurrentLayer: Backward without a Forward");
        int b = c.Input.Shape[0], t = c.Input.Shape[1], g = Cell.Gates(), rows = b * t;
        using var dPre = Tensor.Empty(_backend, c.Preactivations.Shape);
        using var dR = Tensor.Empty(_backend, WeightHh.Value.Shape);
        using var dBiasHh = Tensor.Empty(_backend, BiasHh.Value.Shape);
        Rnn.Backward(c.Problem, c.Outputs, c.Saved, dOutputs, dPre, dR, dBiasHh, dFinalStates, dInitialStates);
        Pointwise.Add(WeightHh.GradientOrNew(), dR, WeightHh.GradientOrNew());
        Pointwise.Add(BiasHh.GradientOrNew(), dBiasHh, BiasHh.GradientOrNew());
        var dPre2 = dPre.Reshape(new Shape(rows, g * HiddenSize));
        // dW_ih += dPre^T x;  db_ih += 1^T dPre;  dx = dPre W_ih
        Gemm.Forward(dPre2, c.Input.Reshape(new Shape(rows, InputSize)), WeightIh.GradientOrNew(), transposeA: true, beta: 1f);
        Gemm.Forward(Ones(rows), dPre2, BiasIh.GradientOrNew().Reshape(new Shape(1, g * HiddenSize)), transposeA: true, beta: 1f);
        var dx = Tensor.Empty(_backend, c.Input.Shape);
        Gemm.Forward(dPre2, WeightIh.Value, dx.Reshape(new Shape(rows, InputSize)));
        _context = null;
        c.Dispose();
        return dx;
    }

    private Tensor Ones(int rows)
    {
        if (_ones is null || _ones.Shape[0] != rows)
        {
            _ones?.Dispose();
            _ones = Tensor.Full(_backend, new Shape(rows, 1), 1f);
        }
        return _ones;
    }

    public void Dispose()
    {
        _context?.Dispose();
        _ones?.Dispose();
        foreach (var p in Parameters) p.Dispose();
    }
}
