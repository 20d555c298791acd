namespace FastWeights.Engine.Tests.Reference;

/// <summary>float64 linear attention written from the math, plain loops over one (batch, head) and
/// one token at a time:
///   S_t = S_{t-1} + v_t k_t^T,  z_t = z_{t-1} + k_t,  q' = scale q_t,
///   o_t = S_t q' / (z_t . q' + eps)  (normalised)  or  S_t q'  (not).
/// Arrays use the op's layouts: q, k [B, T, H, Dk]; v, o [B, T, H, Dv]; S [B, H, Dv, Dk]; z [B, H, Dk].</summary>
public sealed class LinearAttentionReference(int batch, int steps, int heads, int dk, int dv)
{
    public double[] Q = [], K = [], V = [], S0 = [], Z0 = [];
    public double Scale = 1, Epsilon = 1e-6;
    public bool Normalise;

    private int Token(int b, int t, int h) => (b * steps + t) * heads + h;

    /// <summary>o, the final state and the final normaliser; states[bh][t] = (S_t, z_t), t = 0 the initial ones.</summary>
    public (double[] O, double[] Final, double[] FinalZ) Forward(out (double[,] S, double[] Z)[][] states)
    {
        var o = new double[batch * steps * heads * dv];
        var final = new double[batch * heads * dv * dk];
        var finalZ = new double[batch * heads * dk];
        states = new (double[,], double[])[batch * heads][];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                int bh = b * heads + h;
                var S = new double[dv, dk];
                var z = new double[dk];
                for (int i = 0; i < dv; i++) for (int j = 0; j < dk; j++) S[i, j] = S0.Length == 0 ? 0 : S0[(bh * dv + i) * dk + j];
                for (int j = 0; j < dk; j++) z[j] = Z0.Length == 0 ? 0 : Z0[bh * dk + j];
                states[bh] = new (double[,], double[])[steps + 1];
                states[bh][0] = ((double[,])S.Clone(), (double[])z.Clone());
                for (int t = 0; t < steps; t++)
                {
                    int tok = Token(b, t, h);
                    for (int i = 0; i < dv; i++) for (int j = 0; j < dk; j++) S[i, j] += V[tok * dv + i] * K[tok * dk + j];
                    for (int j = 0; j < dk; j++) z[j] += K[tok * dk + j];
                    double den = 1;
                    if (Normalise)
                    {
                        den = Epsilon;
                        for (int j = 0; j < dk; j++) den += z[j] * Scale * Q[tok * dk + j];
                    }
                    for (int i = 0; i < dv; i++)
                    {
                        double num = 0;
                        for (int j = 0; j < dk; j++) num += S[i, j] * Scale * Q[tok * dk + j];
                        o[tok * dv + i] = num / den;
                    }
                    states[bh][t + 1] = ((double[,])S.Clone(), (double[])z.Clone());
                }
                for (int i = 0; i < dv; i++) for (int j = 0; j < dk; j++) final[(bh * dv + i) * dk + j] = S[i, j];
                for (int j = 0; j < dk; j++) finalZ[bh * dk + j] = z[j];
            }
        return (o, final, finalZ);
    }

    /// <summary>Reverse-time chain rule with the stored S_t, z_t. With dS, dz the gradients reaching
    /// S_t, z_t (seeded by the final-state gradients), num = S_t q', den = z_t . q' + eps:
    ///   dnum = do_t / den;  dden = -(do_t . num) / den^2;  dq_t = scale (S_t^T dnum + dden z_t)
    ///   dS += dnum q'^T;  dz += dden q';  dv_t = dS k_t;  dk_t = dS^T v_t + dz
    /// and what is left in dS, dz reaches S_0, z_0.</summary>
    public (double[] DQ, double[] DK, double[] DV, double[] DS0, double[] DZ0) Backward(double[] dO, double[]? dFinal, double[]? dFinalZ)
    {
        Forward(out var states);
        var dq = new double[Q.Length];
        var dk_ = new double[K.Length];
        var dv_ = new double[V.Length];
        var dS0 = new double[batch * heads * dv * dk];
        var dZ0 = new double[batch * heads * dk];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                int bh = b * heads + h;
                var dS = new double[dv, dk];
                var dz = new double[dk];
                for (int i = 0; i < dv; i++) for (int j = 0; j < dk; j++) dS[i, j] = dFinal?[(bh * dv + i) * dk + j] ?? 0;
                for (int j = 0; j < dk; j++) dz[j] = Normalise ? dFinalZ?[bh * dk + j] ?? 0 : 0;
                for (int t = steps - 1; t >= 0; t--)
                {
                    int tok = Token(b, t, h);
                    var (S, z) = states[bh][t + 1];
                    var q = new double[dk];
                    for (int j = 0; j < dk; j++) q[j] = Scale * Q[tok * dk + j];
                    double den = 1;
                    if (Normalise) { den = Epsilon; for (int j = 0; j < dk; j++) den += z[j] * q[j]; }
                    var dnum = new double[dv];
                    double doNum = 0;
                    for (int i = 0; i < dv; i++)
                    {
                        double num = 0;
                        for (int j = 0; j < dk; j++) num += S[i, j] * q[j];
                        dnum[i] = dO[tok * dv + i] / den;
                        doNum += dO[tok * dv + i] * num;
                    }
                    double dden = Normalise ? -doNum / (den * den) : 0;
                    for (int j = 0; j < dk; j++)
                    {
                        double sum = dden * z[j];
                        for (int i = 0; i < dv; i++) sum += S[i, j] * dnum[i];
                        dq[tok * dk + j] = Scale * sum;
                    }
                    for (int i = 0; i < dv; i++) for (int j = 0; j < dk; j++) dS[i, j] += dnum[i] * q[j];
                    for (int j = 0; j < dk; j++) dz[j] += dden * q[j];
                    for (int i = 0; i < dv; i++)
                    {
                        double sum = 0;
                        for (int j = 0; j < dk; j++) sum += dS[i, j] * K[tok * dk + j];
                        dv_[tok * dv + i] = sum;
                    }
                    for (int j = 0; j < dk; j++)
                    {
                        double sum = dz[j];
                        for (int i = 0; i < dv; i++) sum += dS[i, j] * V[tok * dv + i];
                        dk_[tok * dk + j] = sum;
                    }
                }
                for (int i = 0; i < dv; i++) for (int j = 0; j < dk; j++) dS0[(bh * dv + i) * dk + j] = dS[i, j];
                for (int j = 0; j < dk; j++) dZ0[bh * dk + j] = dz[j];
            }
        return (dq, dk_, dv_, dS0, dZ0);
    }
}
