namespace FastWeights.Engine.Tests;

/// <summary>Checks a hand-derived gradient against central differences of a scalar loss.</summary>
public static class FiniteDifferences
{
    /// <summary>
    /// For each i: (loss(x + h e_i) - loss(x - h e_i)) / 2h must equal grad[i] within
    /// tolerance * max(1, |grad[i]|) (absolute for small gradients, relative for large ones), or within
    /// tolerance alone where <paramref name="relative"/> is false.
    /// <paramref name="values"/> is perturbed in place, one element at a time, and restored;
    /// <paramref name="loss"/> must read it. The loss is assumed smooth within h of every value.
    /// </summary>
    public static void AssertGradient(double[] values, double[] grad, Func<double> loss, string name,
                                      double step = 1e-6, double tolerance = 1e-6, bool relative = true)
    {
        Assert.AreEqual(values.Length, grad.Length, $"{name}: gradient length");
        for (int i = 0; i < values.Length; i++)
        {
            double keep = values[i];
            values[i] = keep + step; double up = loss();
            values[i] = keep - step; double down = loss();
            values[i] = keep;
            Assert.AreEqual((up - down) / (2 * step), grad[i], relative ? tolerance * Math.Max(1, Math.Abs(grad[i])) : tolerance, $"{name}[{i}]");
        }
    }
}
