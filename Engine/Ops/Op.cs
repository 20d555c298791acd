namespace FastWeights.Engine.Ops;

/// <summary>Argument checks shared by every op family. Each check throws
/// <see cref="OpArgumentException"/> naming the op, the argument and the shapes.</summary>
public static class Op
{
    /// <summary>Checks that every tensor is live and on one backend, and returns that backend's
    /// implementation of op family <typeparamref name="TFamily"/>.</summary>
    public static TFamily Family<TFamily>(string op, params ReadOnlySpan<(string Name, Tensor? Tensor)> tensors) where TFamily : class
    {
        IBackend? backend = null;
        string? firstName = null;
        foreach (var (name, tensor) in tensors)
        {
            if (tensor is null) continue;
            if (tensor.IsDisposed)
                throw new ObjectDisposedException(nameof(Tensor), $"{op}: argument '{name}' {tensor.Shape} was disposed");
            if (backend is null) { backend = tensor.Backend; firstName = name; }
            else if (!ReferenceEquals(backend, tensor.Backend))
                throw new OpArgumentException(op, name, $"{tensor.Shape} lives on backend '{tensor.Backend.Name}' but '{firstName}' lives on '{backend.Name}'; move it explicitly with Tensor.To");
        }
        if (backend is null) throw new ArgumentException($"{op}: no tensor arguments");
        return backend as TFamily
            ?? throw new NotSupportedException($"{op}: backend '{backend.Name}' does not implement {typeof(TFamily).Name}");
    }

    public static void Rank(string op, string name, Tensor t, int minRank, int maxRank)
    {
        if (t.Rank < minRank || t.Rank > maxRank)
            throw new OpArgumentException(op, name, minRank == maxRank
                ? $"must have rank {minRank} but has shape {t.Shape}"
                : $"must have rank {minRank} to {maxRank} but has shape {t.Shape}");
    }

    public static void ShapeIs(string op, string name, Tensor t, Shape expected, string why = "")
    {
        if (t.Shape != expected)
            throw new OpArgumentException(op, name, $"has shape {t.Shape} but must have shape {expected}{(why.Length > 0 ? " " + why : "")}");
    }

    public static void SameShape(string op, string name, Tensor t, string otherName, Tensor other)
    {
        if (t.Shape != other.Shape)
            throw new OpArgumentException(op, name, $"has shape {t.Shape} but '{otherName}' has shape {other.Shape}; they must match");
    }

    public static void DTypeIs(string op, string name, Tensor t, params ReadOnlySpan<DType> allowed)
    {
        foreach (var d in allowed) if (t.DType == d) return;
        var names = new List<string>();
        foreach (var d in allowed) names.Add(d.Name());
        throw new OpArgumentException(op, name, $"{t.Shape} has dtype {t.DType.Name()} but must be {string.Join(" or ", names)}");
    }

    public static void Dim(string op, string name, Tensor t, int axis, int expected, string what)
    {
        if (t.Shape[axis] != expected)
            throw new OpArgumentException(op, name, $"has shape {t.Shape} but axis {(axis < 0 ? t.Rank + axis : axis)} must be {expected} ({what})");
    }

    public static void DistinctOutput(string op, string outputName, Tensor output, string inputName, Tensor input)
    {
        if (ReferenceEquals(output.Storage, input.Storage) && output.ByteOffset < input.ByteOffset + input.ByteCount && input.ByteOffset < output.ByteOffset + output.ByteCount)
            throw new OpArgumentException(op, outputName, $"{output.Shape} overlaps input '{inputName}' {input.Shape}; this op cannot run in place");
    }

    /// <summary>Downloads and checks that every value is finite (only with <see cref="EngineOptions.CheckValues"/>).</summary>
    public static void Finite(string op, string name, Tensor t)
    {
        if (!EngineOptions.CheckValues) return;
        var values = t.ToArray();
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new OpArgumentException(op, name, $"{t.Shape} holds a non-finite value {values[i]} at flat index {i}");
    }

    /// <summary>Downloads and checks low &lt; value &lt; high (or &lt;= high) (only with <see cref="EngineOptions.CheckValues"/>).</summary>
    public static void InRange(string op, string name, Tensor t, float low, float high, bool highInclusive)
    {
        if (!EngineOptions.CheckValues) return;
        var values = t.ToArray();
        for (int i = 0; i < values.Length; i++)
        {
            float v = values[i];
            if (!(v > low && (highInclusive ? v <= high : v < high)))
                throw new OpArgumentException(op, name, $"{t.Shape} holds {v} at flat index {i}, outside ({low}, {high}{(highInclusive ? "]" : ")")}");
        }
    }
}
