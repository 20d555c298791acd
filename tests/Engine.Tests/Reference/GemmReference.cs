namespace FastWeights.Engine.Tests.Reference;

/// <summary>float64 GEMM written from the definition C = alpha op(A) op(B) + beta C.</summary>
public static class GemmReference
{
    /// <summary>a: batchA x (M x K or K x M), b likewise, c: batch x M x N (read for beta, written).
    /// A batch count of 1 for a or b means shared.</summary>
    public static double[] Forward(double[] a, double[] b, double[] c, int batch, int m, int n, int k,
        bool transposeA, bool transposeB, double alpha, double beta, bool sharedA, bool sharedB)
    {
        var result = new double[batch * m * n];
        for (int p = 0; p < batch; p++)
        {
            int oa = sharedA ? 0 : p * m * k, ob = sharedB ? 0 : p * k * n, oc = p * m * n;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int l = 0; l < k; l++)
                    {
                        double av = transposeA ? a[oa + l * m + i] : a[oa + i * k + l];
                        double bv = transposeB ? b[ob + j * k + l] : b[ob + l * n + j];
                        sum += av * bv;
                    }
                    result[oc + i * n + j] = alpha * sum + beta * c[oc + i * n + j];
                }
        }
        return result;
    }
}
