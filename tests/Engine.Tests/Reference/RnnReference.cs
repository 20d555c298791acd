using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Tests.Reference;

/// <summary>float64 head-wise cells written from their equations (Engine/Ops/Rnn.cs), plain loops.
/// x [B, T, G*H*Dh] gate-major then head; R [H, G*Dh, Dh]; bias [G*H*Dh]; states [B, H*Dh].</summary>
public sealed class RnnReference(RnnCell cell, int batch, int steps, int heads, int headDim)
{
    public double[] X = [], R = [], Bias = [];
    public double[][] Initial = [];   // per state (h, c, n, m), or empty for zeros

    private int G => cell.Gates();
    private int Hd => heads * headDim;
    private static double Sigmoid(double v) => 1 / (1 + Math.Exp(-v));

    /// <summary>Returns outputs [B, T, H*Dh] and the final states.</summary>
    public (double[] Y, double[][] Final) Forward()
    {
        int states = Rnn.StateNames(cell).Length;
        var y = new double[batch * steps * Hd];
        var s = new double[states][];
        for (int i = 0; i < states; i++) s[i] = Initial.Length > i && Initial[i].Length > 0 ? (double[])Initial[i].Clone() : new double[batch * Hd];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < steps; t++)
            {
                var hPrev = new double[Hd];
                Array.Copy(s[0], b * Hd, hPrev, 0, Hd);
                for (int h = 0; h < heads; h++)
                    for (int j = 0; j < headDim; j++)
                    {
                        int u = h * headDim + j;
                        // recurrent part of gate g for unit j of head h: (R h_{t-1})[g*Dh + j] + bias
                        double Rec(int g)
                        {
                            double sum = Bias.Length > 0 ? Bias[g * Hd + u] : 0;
                            for (int k = 0; k < headDim; k++) sum += R[((h * G + g) * headDim + j) * headDim + k] * hPrev[h * headDim + k];
                            return sum;
                        }
                        double Xg(int g) => X[(b * steps + t) * G * Hd + g * Hd + u];
                        double hNew;
                        int at = b * Hd + u;
                        switch (cell)
                        {
                            case RnnCell.Lstm:
                            {
                                double i = Sigmoid(Xg(0) + Rec(0)), f = Sigmoid(Xg(1) + Rec(1)), g = Math.Tanh(Xg(2) + Rec(2)), o = Sigmoid(Xg(3) + Rec(3));
                                s[1][at] = f * s[1][at] + i * g;
                                hNew = o * Math.Tanh(s[1][at]);
                                break;
                            }
                            case RnnCell.Gru:
                            {
                                double r = Sigmoid(Xg(0) + Rec(0)), z = Sigmoid(Xg(1) + Rec(1));
                                double n = Math.Tanh(Xg(2) + r * Rec(2));
                                hNew = (1 - z) * n + z * hPrev[u];
                                break;
                            }
                            case RnnCell.SLstm:
                            {
                                double iT = Xg(0) + Rec(0), fT = Xg(1) + Rec(1);
                                double logF = -Math.Log(1 + Math.Exp(-fT));
                                double m = Math.Max(logF + s[3][at], iT);
                                double ip = Math.Exp(iT - m), fp = Math.Exp(logF + s[3][at] - m);
                                double z = Math.Tanh(Xg(2) + Rec(2)), o = Sigmoid(Xg(3) + Rec(3));
                                s[1][at] = fp * s[1][at] + ip * z;
                                s[2][at] = fp * s[2][at] + ip;
                                s[3][at] = m;
                                hNew = o * s[1][at] / s[2][at];
                                break;
                            }
                            default:
                                hNew = Math.Tanh(Xg(0) + Rec(0));
                                break;
                        }
                        y[(b * steps + t) * Hd + u] = hNew;
                    }
                for (int u = 0; u < Hd; u++) s[0][b * Hd + u] = y[(b * steps + t) * Hd + u];
            }
        return (y, s);
    }

    /// <summary>Central differences of L = sum(w ⊙ y) + sum(wh ⊙ h_T) with respect to each entry of
    /// <paramref name="values"/> (an input array of this object).</summary>
    public double[] NumericGradient(double[] values, double[] w, double[] wh, double step = 1e-6)
    {
        double Loss()
        {
            var (y, final) = Forward();
            double sum = 0;
            for (int i = 0; i < y.Length; i++) sum += y[i] * w[i];
            for (int i = 0; i < wh.Length; i++) sum += final[0][i] * wh[i];
            return sum;
        }
        var grad = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            double keep = values[i];
            values[i] = keep + step; double up = Loss();
            values[i] = keep - step; double down = Loss();
            values[i] = keep;
            grad[i] = (up - down) / (2 * step);
        }
        return grad;
    }
}
