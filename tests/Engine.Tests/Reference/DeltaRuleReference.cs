namespace FastWeights.Engine.Tests.Reference;

/// <summary>float64 delta rule written from the math, plain loops over one (batch, head) at a time:
/// S_t = alpha_t S_{t-1} + beta_t (v_t - alpha_t S_{t-1} k_t) k_t^T, o_t = S_t (scale q_t).
/// Arrays use the op's layouts: q, k [B, T, H, Dk]; v [B, T, H, Dv]; beta, alpha [B, T, H];
/// S [B, H, Dv, Dk].</summary>
public sealed class DeltaRuleReference(int batch, int steps, int heads, int dk, int dv)
{
    public double[] Q = [], K = [], V = [], Beta = [], S0 = [];
    public double[]? Alpha;
    public double Scale = 1;

    private int Token(int b, int t, int h) => (b * steps + t) * heads + h;

    /// <summary>Returns o and the final state; states[b, h][t] = S_t (t = 0: the initial state).</summary>
    public (double[] O, double[] Final) Forward(out double[][][] states)
    {
        var o = new double[batch * steps * heads * dv];
        var final = new double[batch * heads * dv * dk];
        states = new double[batch * heads][][];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                int bh = b * heads + h;
                var S = new double[dv, dk];
                for (int i = 0; i < dv; i++) for (int j = 0; j < dk; j++) S[i, j] = S0.Length == 0 ? 0 : S0[(bh * dv + i) * dk + j];
                states[bh] = new double[steps + 1][];
                states[bh][0] = Flatten(S);
                for (int t = 0; t < steps; t++)
                {
                    int tok = Token(b, t, h);
                    double alpha = Alpha?[tok] ?? 1, beta = Beta[tok];
                    var u = new double[dv];
                    for (int i = 0; i < dv; i++)
                    {
                        double sk = 0;
                        for (int j = 0; j < dk; j++) sk += S[i, j] * K[tok * dk + j];
                        u[i] = beta * (V[tok * dv + i] - alpha * sk);
                    }
                    for (int i = 0; i < dv; i++)
                        for (int j = 0; j < dk; j++) S[i, j] = alpha * S[i, j] + u[i] * K[tok * dk + j];
                    for (int i = 0; i < dv; i++)
                    {
                        double sum = 0;
                        for (int j = 0; j < dk; j++) sum += S[i, j] * Scale * Q[tok * dk + j];
                        o[tok * dv + i] = sum;
                    }
                    states[bh][t + 1] = Flatten(S);
                }
                Array.Copy(Flatten(S), 0, final, bh * dv * dk, dv * dk);
            }
        return (o, final);
    }

    private static double[] Flatten(double[,] m) => m.Cast<double>().ToArray();

    /// <summary>Reverse-time backward from the chain rule (see DESIGN.md; gated terms derived the same way).</summary>
    public (double[] DQ, double[] DK, double[] DV, double[] DBeta, double[] DAlpha, double[] DS0) Backward(double[] dO, double[]? dFinal)
    {
        Forward(out var states);
        var dq = new double[Q.Length]; var dkOut = new double[K.Length]; var dvOut = new double[V.Length];
        var dbeta = new double[Beta.Length]; var dalpha = new double[Beta.Length]; var dS0 = new double[batch * heads * dv * dk];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
            {
                int bh = b * heads + h;
                var dS = new double[dv * dk];
                if (dFinal is not null) Array.Copy(dFinal, bh * dv * dk, dS, 0, dv * dk);
                for (int t = steps - 1; t >= 0; t--)
                {
                    int tok = Token(b, t, h);
                    double alpha = Alpha?[tok] ?? 1, beta = Beta[tok];
                    double[] St = states[bh][t + 1], Sp = states[bh][t];
                    for (int j = 0; j < dk; j++)
                    {
                        double sum = 0;
                        for (int i = 0; i < dv; i++) sum += St[i * dk + j] * dO[tok * dv + i];
                        dq[tok * dk + j] = Scale * sum;
                    }
                    for (int i = 0; i < dv; i++)
                        for (int j = 0; j < dk; j++) dS[i * dk + j] += dO[tok * dv + i] * Scale * Q[tok * dk + j];
                    var e = new double[dv]; var du = new double[dv]; var sk = new double[dv];
                    for (int i = 0; i < dv; i++)
                    {
                        for (int j = 0; j < dk; j++) { sk[i] += Sp[i * dk + j] * K[tok * dk + j]; du[i] += dS[i * dk + j] * K[tok * dk + j]; }
                        e[i] = V[tok * dv + i] - alpha * sk[i];
                    }
                    double dA = 0, dB = 0;
                    for (int i = 0; i < dv; i++)
                    {
                        dB += e[i] * du[i];
                        dA -= beta * sk[i] * du[i];
                        for (int j = 0; j < dk; j++) dA += dS[i * dk + j] * Sp[i * dk + j];
                        dvOut[tok * dv + i] = beta * du[i];
                    }
                    for (int j = 0; j < dk; j++)
                    {
                        double sum = 0;
                        for (int i = 0; i < dv; i++) sum += dS[i * dk + j] * beta * e[i] - alpha * beta * du[i] * Sp[i * dk + j];
                        dkOut[tok * dk + j] = sum;
                    }
                    dbeta[tok] = dB;
                    dalpha[tok] = dA;
                    for (int i = 0; i < dv; i++)
                        for (int j = 0; j < dk; j++) dS[i * dk + j] = alpha * (dS[i * dk + j] - beta * du[i] * K[tok * dk + j]);
                }
                Array.Copy(dS, 0, dS0, bh * dv * dk, dv * dk);
            }
        return (dq, dkOut, dvOut, dbeta, dalpha, dS0);
    }
}
