namespace FastWeights.Engine;

/// <summary>An immutable row-major shape of rank 0 to 4 (every op here needs at most 4-D).</summary>
public readonly struct Shape : IEquatable<Shape>
{
    public const int MaxRank = 4;
    private readonly int[]? _dims;

    public Shape(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Length > MaxRank)
            throw new ArgumentException($"Shape: rank {dims.Length} exceeds the maximum rank {MaxRank}", nameof(dims));
        foreach (int d in dims)
            if (d < 0) throw new ArgumentException($"Shape: negative dimension in [{string.Join(", ", dims)}]", nameof(dims));
        _dims = (int[])dims.Clone();
    }

    public int Rank => _dims?.Length ?? 0;
    public int this[int axis] => _dims![axis < 0 ? axis + Rank : axis];
    public ReadOnlySpan<int> Dims => _dims;

    /// <summary>Number of elements (1 for rank 0).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            if (_dims != null) foreach (int d in _dims) n *= d;
            return n;
        }
    }

    /// <summary>Product of all dimensions before the last one: the row count of the 2-D view.</summary>
    public long Rows => Rank == 0 ? 1 : ElementCount / Math.Max(1, this[-1]);

    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (int d in Dims) h.Add(d);
        return h.ToHashCode();
    }
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    public override string ToString() => "[" + string.Join(", ", _dims ?? []) + "]";

    public static implicit operator Shape(int[] dims) => new(dims);
}
