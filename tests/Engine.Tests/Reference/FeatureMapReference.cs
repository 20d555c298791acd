using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Tests.Reference;

/// <summary>float64 feature maps and L2 normalisation written from the math, one row of d values at
/// a time over rows x d arrays (the last axis of any tensor).</summary>
public static class FeatureMapReference
{
    /// <summary>phi(x) per row, then y = phi / (sum phi + eps) when the map sum-normalises.</summary>
    public static double[] Forward(FeatureMap map, double[] x, int d)
    {
        int rows = x.Length / d, width = map.OutputDim(d);
        var y = new double[rows * width];
        for (int row = 0; row < rows; row++)
        {
            var phi = Phi(map, x.AsSpan(row * d, d));
            double sum = phi.Sum() + FeatureMaps.SumEpsilon;
            for (int i = 0; i < width; i++) y[row * width + i] = map.SumNormalise ? phi[i] / sum : phi[i];
        }
        return y;
    }

    /// <summary>dx = J^T dy with J the Jacobian of one row, written entry by entry.</summary>
    public static double[] Backward(FeatureMap map, double[] x, double[] dy, int d)
    {
        int rows = x.Length / d, width = map.OutputDim(d);
        var dx = new double[x.Length];
        for (int row = 0; row < rows; row++)
        {
            var xs = x.AsSpan(row * d, d);
            var g = dy.AsSpan(row * width, width).ToArray();
            if (map.SumNormalise)
            {
                // y_m = phi_m / s, s = sum phi + eps: dy_m/dphi_i = [m = i] / s - phi_m / s^2
                var phi = Phi(map, xs);
                double s = phi.Sum() + FeatureMaps.SumEpsilon;
                var dphi = new double[width];
                for (int i = 0; i < width; i++)
                    for (int m = 0; m < width; m++) dphi[i] += g[m] * ((m == i ? 1 / s : 0) - phi[m] / (s * s));
                g = dphi;
            }
            for (int a = 0; a < d; a++)
            {
                double v = xs[a], sum = 0;
                switch (map.Kind)
                {
                    case FeatureMapKind.Identity: sum = g[a]; break;
                    case FeatureMapKind.Relu: sum = v > 0 ? g[a] : 0; break;
                    case FeatureMapKind.EluPlusOne: sum = (v > 0 ? 1 : Math.Exp(v)) * g[a]; break;
                    case FeatureMapKind.Dpfp:
                        // d phi_{j,i} / d x_a = (dr_i/dx_a) r_{i+j} + r_i (dr_{i+j}/dx_a), with
                        // dr_a/dx_a = [x_a > 0] and dr_{a+d}/dx_a = -[x_a < 0]
                        int w = 2 * d;
                        var r = Rectified(xs);
                        double DrDx(int index) => index == a ? (v > 0 ? 1 : 0) : index == a + d ? (v < 0 ? -1 : 0) : 0;
                        for (int j = 1; j <= map.Nu; j++)
                            for (int i = 0; i < w; i++)
                            {
                                int other = (i + j) % w;
                                sum += g[(j - 1) * w + i] * (DrDx(i) * r[other] + r[i] * DrDx(other));
                            }
                        break;
                }
                dx[row * d + a] = sum;
            }
        }
        return dx;
    }

    /// <summary>DPFP-nu: output (j - 1) 2d + i = r_i r_{(i + j) mod 2d}, r = [relu(x), relu(-x)].</summary>
    public static double[] Phi(FeatureMap map, ReadOnlySpan<double> x)
    {
        int d = x.Length;
        var y = new double[map.OutputDim(d)];
        switch (map.Kind)
        {
            case FeatureMapKind.Identity: for (int i = 0; i < d; i++) y[i] = x[i]; break;
            case FeatureMapKind.Relu: for (int i = 0; i < d; i++) y[i] = Math.Max(x[i], 0); break;
            case FeatureMapKind.EluPlusOne: for (int i = 0; i < d; i++) y[i] = x[i] > 0 ? x[i] + 1 : Math.Exp(x[i]); break;
            case FeatureMapKind.Dpfp:
                var r = Rectified(x);
                int w = 2 * d;
                for (int j = 1; j <= map.Nu; j++)
                    for (int i = 0; i < w; i++) y[(j - 1) * w + i] = r[i] * r[(i + j) % w];
                break;
        }
        return y;
    }

    private static double[] Rectified(ReadOnlySpan<double> x)
    {
        int d = x.Length;
        var r = new double[2 * d];
        for (int i = 0; i < d; i++) { r[i] = Math.Max(x[i], 0); r[i + d] = Math.Max(-x[i], 0); }
        return r;
    }

    /// <summary>y = x / n, n = sqrt(x . x + eps), per row.</summary>
    public static double[] L2Normalize(double[] x, int d, double eps)
    {
        var y = new double[x.Length];
        for (int row = 0; row < x.Length / d; row++)
        {
            double n = Math.Sqrt(Enumerable.Range(0, d).Sum(i => x[row * d + i] * x[row * d + i]) + eps);
            for (int i = 0; i < d; i++) y[row * d + i] = x[row * d + i] / n;
        }
        return y;
    }

    /// <summary>dx_a = sum_m dy_m dy_m/dx_a with dy_m/dx_a = [m = a] / n - x_m x_a / n^3.</summary>
    public static double[] L2NormalizeBackward(double[] x, double[] dy, int d, double eps)
    {
        var dx = new double[x.Length];
        for (int row = 0; row < x.Length / d; row++)
        {
            int o = row * d;
            double n = Math.Sqrt(Enumerable.Range(0, d).Sum(i => x[o + i] * x[o + i]) + eps);
            for (int a = 0; a < d; a++)
            {
                double sum = 0;
                for (int m = 0; m < d; m++) sum += dy[o + m] * ((m == a ? 1 / n : 0) - x[o + m] * x[o + a] / (n * n * n));
                dx[o + a] = sum;
            }
        }
        return dx;
    }
}
