namespace FastWeights.Engine.Tests.Reference;

/// <summary>float64 linear attention from the definition: S_t = S_{t-1} + v_t k_t^T,
/// z_t = z_{t-1} + k_t, o_t = S_t q'_t / (z_t . q'_t + eps) (or S_t q'_t), q' = scale q.
/// Gradients are checked against finite differences of this forward, so none is written here.</summary>
public sealed class LinearAttentionReference(int batch, int steps, int heads, int dk, int dv)
{
    public double[] Q = [], K = [], V = [], S0 = [], Z0 = [];
    public double Scale = 1, Epsilon = 1e-6;
    public bool Normalise;

    public (double[] O, double[] FinalState, double[] FinalZ) Forward()
    {
        var o = new double[batch * steps * heads * dv];
        var finalS = new double[batch * heads * dv * dk];
        var finalZ = new double[batch * heads * dk];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                int bh = b * heads + h;
                var S = new double[dv * dk];
                var z = new double[dk];
                if (S0.Length > 0) Array.Copy(S0, bh * dv * dk, S, 0, dv * dk);
                if (Z0.Length > 0) Array.Copy(Z0, bh * dk, z, 0, dk);
                for (int t = 0; t < steps; t++)
                {
                    int tok = (b * steps + t) * heads + h;
                    for (int i = 0; i < dv; i++)
                        for (int j = 0; j < dk; j++) S[i * dk + j] += V[tok * dv + i] * K[tok * dk + j];
                    for (int j = 0; j < dk; j++) z[j] += K[tok * dk + j];
                    double n = Epsilon;
                    for (int j = 0; j < dk; j++) n += z[j] * Scale * Q[tok * dk + j];
                    for (int i = 0; i < dv; i++)
                    {
                        double y = 0;
                        for (int j = 0; j < dk; j++) y += S[i * dk + j] * Scale * Q[tok * dk + j];
                        o[tok * dv + i] = Normalise ? y / n : y;
                    }
                }
                Array.Copy(S, 0, finalS, bh * dv * dk, dv * dk);
                Array.Copy(z, 0, finalZ, bh * dk, dk);
            }
        return (o, finalS, finalZ);
    }

    /// <summary>Central differences of L = sum(dO ⊙ o) + sum(dS ⊙ S_T) + sum(dZ ⊙ z_T) with respect to
    /// every entry of <paramref name="values"/> (one of the input arrays of this object).</summary>
    public double[] NumericGradient(double[] values, double[] dO, double[] dS, double[] dZ, double h = 1e-6)
    {
        double Loss()
        {
            var (o, s, z) = Forward();
            double sum = 0;
            for (int i = 0; i < o.Length; i++) sum += o[i] * dO[i];
            for (int i = 0; i < s.Length; i++) sum += s[i] * dS[i];
            if (Normalise) for (int i = 0; i < z.Length; i++) sum += z[i] * dZ[i];
            return sum;
        }
        var grad = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            double keep = values[i];
            values[i] = keep + h; double up = Loss();
            values[i] = keep - h; double down = Loss();
            values[i] = keep;
            grad[i] = (up - down) / (2 * h);
        }
        return grad;
    }
}
