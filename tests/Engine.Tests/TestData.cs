using FastWeights.Engine.Numerics;

namespace FastWeights.Engine.Tests;

/// <summary>Random inputs (never zeros) and comparison helpers.</summary>
public static class TestData
{
    public static float[] Uniform(int count, ulong seed, float low = -1f, float high = 1f)
    {
        var values = new float[count];
        new SeededRandom(seed).FillUniform(values, low, high);
        return values;
    }

    public static double[] ToDouble(float[] values) => Array.ConvertAll(values, v => (double)v);

    /// <summary>Values rounded through a dtype, as the kernel sees them.</summary>
    public static float[] RoundTrip(float[] values, DType dtype)
    {
        var bytes = new byte[values.Length * dtype.SizeInBytes()];
        Float16Conversions.Encode(values, dtype, bytes);
        var back = new float[values.Length];
        Float16Conversions.Decode(bytes, dtype, back);
        return back;
    }

    /// <summary>Asserts |actual - expected| &lt;= atol + rtol * |expected| elementwise; the message names
    /// the worst element.</summary>
    public static void AssertClose(double[] expected, float[] actual, double rtol, double atol, string what)
    {
        Assert.AreEqual(expected.Length, actual.Length, $"{what}: length");
        int worst = -1;
        double worstExcess = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            double excess = err - (atol + rtol * Math.Abs(expected[i]));
            if (double.IsNaN(actual[i]) || excess > worstExcess) { worst = i; worstExcess = double.IsNaN(actual[i]) ? double.PositiveInfinity : excess; }
        }
        if (worst >= 0)
            Assert.Fail($"{what}: element {worst} is {actual[worst]} but the reference is {expected[worst]} (rtol {rtol}, atol {atol}, {expected.Length} elements)");
    }

    /// <summary>Tolerance scaled to a reduction of length k: fp32 rounding grows like sqrt(k).</summary>
    public static double F32Tolerance(int reductionLength) => 1e-5 * Math.Max(1.0, Math.Sqrt(reductionLength) / 4);
}
