namespace FastWeights.Engine.Cpu.Gemm;

/// <summary>Plain loops for machines without AVX2 (and the reference order of operations).</summary>
internal static unsafe class ScalarGemm
{
    public static void Multiply(float* a, float* b, float* c, int m, int n, int k, bool transposeA, bool transposeB, float alpha, float beta)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float sum = 0f;
                for (int l = 0; l < k; l++)
                    sum += (transposeA ? a[(long)l * m + i] : a[(long)i * k + l]) * (transposeB ? b[(long)j * k + l] : b[(long)l * n + j]);
                long at = (long)i * n + j;
                c[at] = beta == 0f ? alpha * sum : alpha * sum + beta * c[at];
            }
    }
}
