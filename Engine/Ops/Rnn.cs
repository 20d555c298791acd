namespace FastWeights.Engine.Ops;

/// <summary>Recurrent cells, head-wise (FlashRNN-style): the recurrent matrix is block-diagonal over
/// H heads of Dh units. Gate order and biases follow PyTorch, so nn.LSTM / nn.GRU weights load
/// unchanged (H = 1): LSTM (i, f, g, o), GRU (r, z, n), sLSTM (i~, f~, z~, o~), Elman (one gate).</summary>
public enum RnnCell
{
    /// <summary>c_t = f c_{t-1} + i g, h_t = o tanh(c_t); i, f, o sigmoid, g tanh.</summary>
    Lstm,
    /// <summary>r, z sigmoid; n = tanh(x_n + r (R_n h + b_hn)); h_t = (1 - z) n + z h_{t-1}.</summary>
    Gru,
    /// <summary>xLSTM's sLSTM with the max stabiliser m and normaliser n, sigmoid forget gate:
    /// log f = logsigmoid(f~), m_t = max(log f + m_{t-1}, i~), i' = exp(i~ - m_t),
    /// f' = exp(log f + m_{t-1} - m_t), c_t = f' c_{t-1} + i' tanh(z~), n_t = f' n_{t-1} + i',
    /// h_t = sigmoid(o~) c_t / n_t.</summary>
    SLstm,
    /// <summary>h_t = tanh(x_t + R h_{t-1} + b).</summary>
    Elman,
}

public static class RnnCells
{
    public static int Gates(this RnnCell cell) => cell switch { RnnCell.Lstm => 4, RnnCell.Gru => 3, RnnCell.SLstm => 4, _ => 1 };

    /// <summary>Per-unit values the forward saves for the backward, after the states: LSTM i, f, g, o;
    /// GRU r, z, n, (R_n h + b_hn); sLSTM i', f', z, o, m; Elman none (h itself suffices).</summary>
    public static int SavedPerUnit(this RnnCell cell) => cell switch { RnnCell.Lstm => 4, RnnCell.Gru => 4, RnnCell.SLstm => 5, _ => 0 };

    /// <summary>States of a cell besides h: LSTM c; sLSTM c, n, m.</summary>
    public static int ExtraStates(this RnnCell cell) => cell switch { RnnCell.Lstm => 1, RnnCell.SLstm => 3, _ => 0 };
}

/// <summary>A resolved recurrence. Layouts (Dh units per head, G gates):
///   preactivations x [B, T, G*H*Dh], index g*H*Dh + h*Dh + j (gate-major, then head: PyTorch's layout for H = 1);
///   recurrentWeights R [H, G*Dh, Dh], row g*Dh + j of head h;  recurrentBias [G*H*Dh];
///   states [B, H*Dh] each: h, then the cell's extra states (LSTM c; sLSTM c, n, m);
///   outputs [B, T, H*Dh]; saved [B, T, SavedPerUnit*H*Dh + extra states*H*Dh] (what the backward reads).</summary>
public sealed record RnnProblem(RnnCell Cell, Tensor Preactivations, Tensor RecurrentWeights, Tensor? RecurrentBias,
    IReadOnlyList<Tensor?> InitialStates, int Batch, int Steps, int Heads, int HeadDim)
{
    public int Gates => Cell.Gates();
    public int Hidden => Heads * HeadDim;
    public Shape StateShape => new(Batch, Hidden);
    public Shape SavedShape => new(Batch, Steps, (Cell.SavedPerUnit() + Cell.ExtraStates()) * Hidden);
}

public sealed record RnnGradients(Tensor DOutputs, IReadOnlyList<Tensor?> DFinalStates,
    Tensor DPreactivations, Tensor DRecurrentWeights, Tensor? DRecurrentBias, IReadOnlyList<Tensor?> DInitialStates);

public interface IRnnOps
{
    /// <summary>Runs the recurrence: outputs, final states (entries may be null) and, when given, the
    /// saved activations for the backward.</summary>
    void RnnForward(RnnProblem problem, Tensor outputs, IReadOnlyList<Tensor?> finalStates, Tensor? saved);
    void RnnBackward(RnnProblem problem, Tensor outputs, Tensor saved, RnnGradients gradients);

    /// <summary>Whether the pre-activations and R may be f16 or bf16 (each on its own; the bias,
    /// states, outputs and every gradient stay f32). Otherwise they must be f32.</summary>
    bool RnnTakesHalfInputs => false;
}

public static class Rnn
{
    /// <summary>Shape of the saved activations a forward of this size writes for its backward.</summary>
    public static Shape SavedShape(RnnCell cell, int batch, int steps, int hidden) =>
        new(batch, steps, (cell.SavedPerUnit() + cell.ExtraStates()) * hidden);

    /// <summary>Names of a cell's states in order (h first).</summary>
    public static string[] StateNames(RnnCell cell) => cell switch
    {
        RnnCell.Lstm => ["h", "c"],
        RnnCell.SLstm => ["h", "c", "n", "m"],
        _ => ["h"],
    };

    /// <summary>Runs the cell over T steps. <paramref name="initialStates"/> and
    /// <paramref name="finalStates"/> follow <see cref="StateNames"/> (null entries: zeros / not
    /// written). <paramref name="saved"/> (shape <see cref="RnnProblem.SavedShape"/>) is needed for
    /// the backward.</summary>
    public static RnnProblem Forward(RnnCell cell, Tensor preactivations, Tensor recurrentWeights, Tensor? recurrentBias, Tensor outputs,
        IReadOnlyList<Tensor?>? initialStates = null, IReadOnlyList<Tensor?>? finalStates = null, Tensor? saved = null)
    {
        string op = cell + "Forward";
        var named = new List<(string, Tensor?)> { ("preactivations", preactivations), ("recurrentWeights", recurrentWeights), ("recurrentBias", recurrentBias), ("outputs", outputs), ("saved", saved) };
        var ops = Op.Family<IRnnOps>(op, [.. named]);
        var problem = Check(op, cell, preactivations, recurrentWeights, recurrentBias, initialStates, ops.RnnTakesHalfInputs);
        Op.ShapeIs(op, "outputs", outputs, new Shape(problem.Batch, problem.Steps, problem.Hidden), "([B, T, H*Dh])");
        Op.DTypeIs(op, "outputs", outputs, DType.F32);
        var finals = States(op, "finalStates", cell, problem, finalStates);
        if (saved is not null) { Op.ShapeIs(op, "saved", saved, problem.SavedShape); Op.DTypeIs(op, "saved", saved, DType.F32); }
        ops.RnnForward(problem, outputs, finals, saved);
        return problem;
    }

    /// <summary>One step for generation: x [B, G*H*Dh]; the states (h first) are read and overwritten.</summary>
    public static void Step(RnnCell cell, Tensor preactivations, Tensor recurrentWeights, Tensor? recurrentBias, IReadOnlyList<Tensor> states)
    {
        string op = cell + "Step";
        Op.Rank(op, "preactivations", preactivations, 2, 2);
        var x = preactivations.Reshape(new Shape(preactivations.Shape[0], 1, preactivations.Shape[1]));
        var h = states[0];
        Op.Rank(op, "states[0]", h, 2, 2);
        using var output = h.Reshape(new Shape(h.Shape[0], 1, h.Shape[1]));
        Forward(cell, x, recurrentWeights, recurrentBias, output, states.Cast<Tensor?>().ToList(), [null, .. states.Skip(1)]);
    }

    /// <summary>Backpropagation through time: gradients of the preactivations, of R and of the recurrent
    /// bias (both overwritten), and of the initial states, from dOutputs [B, T, H*Dh] and optional
    /// final-state gradients (for sLSTM only h's: m is a stabiliser and c, n carry its scale).</summary>
    public static void Backward(RnnProblem problem, Tensor outputs, Tensor saved, Tensor dOutputs,
        Tensor dPreactivations, Tensor dRecurrentWeights, Tensor? dRecurrentBias,
        IReadOnlyList<Tensor?>? dFinalStates = null, IReadOnlyList<Tensor?>? dInitialStates = null)
    {
        string op = problem.Cell + "Backward";
        var ops = Op.Family<IRnnOps>(op, ("preactivations", problem.Preactivations), ("outputs", outputs), ("saved", saved), ("dOutputs", dOutputs),
            ("dPreactivations", dPreactivations), ("dRecurrentWeights", dRecurrentWeights), ("dRecurrentBias", dRecurrentBias));
        Op.SameShape(op, "dOutputs", dOutputs, "outputs", outputs);
        Op.ShapeIs(op, "saved", saved, problem.SavedShape);
        Op.SameShape(op, "dPreactivations", dPreactivations, "preactivations", problem.Preactivations);
        Op.SameShape(op, "dRecurrentWeights", dRecurrentWeights, "recurrentWeights", problem.RecurrentWeights);
        Op.DTypeIs(op, "dOutputs", dOutputs, DType.F32);
        Op.DTypeIs(op, "dPreactivations", dPreactivations, DType.F32);
        Op.DTypeIs(op, "dRecurrentWeights", dRecurrentWeights, DType.F32);
        if (dRecurrentBias is not null) Op.DTypeIs(op, "dRecurrentBias", dRecurrentBias, DType.F32);
        if (dRecurrentBias is not null) Op.ShapeIs(op, "dRecurrentBias", dRecurrentBias, new Shape(problem.Gates * problem.Hidden));
        var dFinals = States(op, "dFinalStates", problem.Cell, problem, dFinalStates);
        if (problem.Cell == RnnCell.SLstm && dFinals.Skip(1).Any(t => t is not null))
            throw new OpArgumentException(op, "dFinalStates", "may only hold h's gradient for sLSTM: c and n carry the stabiliser's scale and m has no gradient");
        var dInitials = States(op, "dInitialStates", problem.Cell, problem, dInitialStates);
        ops.RnnBackward(problem, outputs, saved, new RnnGradients(dOutputs, dFinals, dPreactivations, dRecurrentWeights, dRecurrentBias, dInitials));
    }

    private static RnnProblem Check(string op, RnnCell cell, Tensor x, Tensor r, Tensor? bias, IReadOnlyList<Tensor?>? initialStates, bool halfInputs)
    {
        Op.Rank(op, "recurrentWeights", r, 3, 3);
        Op.Rank(op, "preactivations", x, 3, 3);
        int gates = cell.Gates(), heads = r.Shape[0], headDim = r.Shape[2];
        if (r.Shape[1] != gates * headDim)
            throw new OpArgumentException(op, "recurrentWeights", $"has shape {r.Shape} but a {cell} head needs {gates} gates x {headDim} units = {gates * headDim} rows ([H, G*Dh, Dh])");
        if (x.Shape[2] != gates * heads * headDim)
            throw new OpArgumentException(op, "preactivations", $"has shape {x.Shape} but {cell} with {heads} heads of {headDim} needs a last axis of G*H*Dh = {gates}*{heads}*{headDim} = {gates * heads * headDim}");
        foreach (var (name, t) in new[] { ("preactivations", x), ("recurrentWeights", r) })
        {
            if (halfInputs) Op.DTypeIs(op, name, t, DType.F32, DType.F16, DType.BF16);
            else if (t.DType != DType.F32)
                throw new OpArgumentException(op, name, $"{t.Shape} has dtype {t.DType.Name()} but the {t.Backend.Name} backend's recurrent cells take f32 only (the Vulkan backend also takes f16 and bf16)");
        }
        if (bias is not null) { Op.ShapeIs(op, "recurrentBias", bias, new Shape(gates * heads * headDim), "([G*H*Dh])"); Op.DTypeIs(op, "recurrentBias", bias, DType.F32); }
        var problem = new RnnProblem(cell, x, r, bias, [], x.Shape[0], x.Shape[1], heads, headDim);
        return problem with { InitialStates = States(op, "initialStates", cell, problem, initialStates) };
    }

    private static Tensor?[] States(string op, string argument, RnnCell cell, RnnProblem p, IReadOnlyList<Tensor?>? states)
    {
        var names = StateNames(cell);
        var result = new Tensor?[names.Length];
        if (states is null) return result;
        if (states.Count > names.Length)
            throw new OpArgumentException(op, argument, $"holds {states.Count} states but {cell} has {names.Length} ({string.Join(", ", names)})");
        for (int i = 0; i < states.Count; i++)
        {
            var t = states[i];
            if (t is null) continue;
            if (t.IsDisposed) throw new ObjectDisposedException(nameof(Tensor), $"{op}: argument '{argument}[{i}]' was disposed");
            if (!ReferenceEquals(t.Backend, p.Preactivations.Backend))
                throw new OpArgumentException(op, $"{argument}[{i}]", $"{t.Shape} lives on backend '{t.Backend.Name}' but 'preactivations' lives on '{p.Preactivations.Backend.Name}'");
            Op.ShapeIs(op, $"{argument}[{i}] ({names[i]})", t, p.StateShape, "([B, H*Dh])");
            Op.DTypeIs(op, $"{argument}[{i}]", t, DType.F32);
            result[i] = t;
        }
        return result;
    }
}
