namespace FastWeights.Engine.Tests.Reference;

/// <summary>float64 first-order scan from the definition, and its backward from the chain rule.</summary>
public static class ScanReference
{
    // h_t = a_t h_{t-1} + x_t
    public static double[] Forward(double[] a, double[] x, double[]? h0, int batches, int steps, int channels)
    {
        var h = new double[a.Length];
        for (int b = 0; b < batches; b++)
            for (int c = 0; c < channels; c++)
            {
                double carry = h0?[b * channels + c] ?? 0;
                for (int t = 0; t < steps; t++)
                {
                    int i = (b * steps + t) * channels + c;
                    carry = a[i] * carry + x[i];
                    h[i] = carry;
                }
            }
        return h;
    }

    // g_t = dh_t + a_{t+1} g_{t+1};  dx = g;  da_t = g_t h_{t-1};  dh0 = a_0 g_0
    public static (double[] Da, double[] Dx, double[] Dh0) Backward(double[] a, double[] h, double[]? h0, double[] dh, int batches, int steps, int channels)
    {
        var da = new double[a.Length];
        var dx = new double[a.Length];
        var dh0 = new double[batches * channels];
        for (int b = 0; b < batches; b++)
            for (int c = 0; c < channels; c++)
            {
                double g = 0, nextA = 0;
                for (int t = steps - 1; t >= 0; t--)
                {
                    int i = (b * steps + t) * channels + c;
                    g = dh[i] + nextA * g;
                    dx[i] = g;
                    da[i] = g * (t > 0 ? h[i - channels] : h0?[b * channels + c] ?? 0);
                    nextA = a[i];
                }
                dh0[b * channels + c] = a[b * steps * channels + c] * g;
            }
        return (da, dx, dh0);
    }
}
