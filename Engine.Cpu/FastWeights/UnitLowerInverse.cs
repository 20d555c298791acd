using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.FastWeights;

/// <summary>The inverse of the chunk's unit lower triangular WY matrix A = I + diag(beta) Kk by
/// forward substitution, Kk strictly lower (n x n inside a C x C buffer, row stride C).</summary>
internal static unsafe class UnitLowerInverse
{
    /// <summary>X = A^-1. Row i of A X = I reads X_i + sum_{j&lt;i} beta_i Kk_ij X_j = e_i, so
    ///   X_i = e_i - sum_{j&lt;i} (beta_i Kk_ij) X_j,
    /// and X_j is zero past column j (X is unit lower triangular too): row i only touches columns
    /// 0..j of each earlier row, whole Vector256s of them (rows are cleared to C first, so the
    /// columns up to the next multiple of 8 are zeros). Cost about n^3 / 48 vector FMAs.
    /// Rows i &lt; n are written in full (C columns: zero above the diagonal); rows past n are not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Invert(float* kk, float* beta, float* x, int n, int stride)
    {
        for (int i = 0; i < n; i++)
        {
            float* xi = x + (long)i * stride;
            new Span<float>(xi, stride).Clear();
            float* kki = kk + (long)i * stride;
            float bi = beta[i];
            for (int j = 0; j < i; j++)
            {
                float l = bi * kki[j];
                if (l == 0f) continue;
                float* xj = x + (long)j * stride;
                int width = (j + 8) & ~7;
                var factor = Vector256.Create(-l);
                for (int c = 0; c < width; c += 8)
                    Vector256.FusedMultiplyAdd(factor, Vector256.Load(xj + c), Vector256.Load(xi + c)).Store(xi + c);
            }
            xi[i] = 1f;
        }
    }
}
