using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastWeights.Engine.Cpu.Rnn;

/// <summary>y[rows, n] (+)= x[rows, k] w[k, n] for the few rows of a recurrence step (the batch),
/// with w reused by every step: no packing, w is read row by row (contiguous), four rows of x at
/// a time against 4 vectors of w's row, 16 accumulators. n need not be a multiple of the vector
/// width (a scalar tail finishes each row).</summary>
internal static unsafe class SmallRowsProduct
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(float* x, int rows, int k, float* w, int n, float* y, bool accumulate)
    {
        int width = Vector256<float>.Count;
        int block = 4 * width;
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            int j = 0;
            for (; j + block <= n; j += block)
            {
                Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
                Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
                float* x0 = x + (long)r * k, x1 = x0 + k, x2 = x1 + k, x3 = x2 + k;
                for (int l = 0; l < k; l++)
                {
                    float* wr = w + (long)l * n + j;
                    var w0 = Vector256.Load(wr); var w1 = Vector256.Load(wr + width); var w2 = Vector256.Load(wr + 2 * width); var w3 = Vector256.Load(wr + 3 * width);
                    var b0 = Vector256.Create(x0[l]); a00 = Vector256.FusedMultiplyAdd(b0, w0, a00); a01 = Vector256.FusedMultiplyAdd(b0, w1, a01); a02 = Vector256.FusedMultiplyAdd(b0, w2, a02); a03 = Vector256.FusedMultiplyAdd(b0, w3, a03);
                    var b1 = Vector256.Create(x1[l]); a10 = Vector256.FusedMultiplyAdd(b1, w0, a10); a11 = Vector256.FusedMultiplyAdd(b1, w1, a11); a12 = Vector256.FusedMultiplyAdd(b1, w2, a12); a13 = Vector256.FusedMultiplyAdd(b1, w3, a13);
                    var b2 = Vector256.Create(x2[l]); a20 = Vector256.FusedMultiplyAdd(b2, w0, a20); a21 = Vector256.FusedMultiplyAdd(b2, w1, a21); a22 = Vector256.FusedMultiplyAdd(b2, w2, a22); a23 = Vector256.FusedMultiplyAdd(b2, w3, a23);
                    var b3 = Vector256.Create(x3[l]); a30 = Vector256.FusedMultiplyAdd(b3, w0, a30); a31 = Vector256.FusedMultiplyAdd(b3, w1, a31); a32 = Vector256.FusedMultiplyAdd(b3, w2, a32); a33 = Vector256.FusedMultiplyAdd(b3, w3, a33);
                }
                Put(y + (long)r * n + j, width, a00, a01, a02, a03, accumulate);
                Put(y + (long)(r + 1) * n + j, width, a10, a11, a12, a13, accumulate);
                Put(y + (long)(r + 2) * n + j, width, a20, a21, a22, a23, accumulate);
                Put(y + (long)(r + 3) * n + j, width, a30, a31, a32, a33, accumulate);
            }
            for (int rr = r; rr < r + 4; rr++) Tail(x + (long)rr * k, k, w, n, j, y + (long)rr * n, accumulate);
        }
        for (; r < rows; r++) Tail(x + (long)r * k, k, w, n, 0, y + (long)r * n, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* y, int width, Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3, bool accumulate)
    {
        if (accumulate)
        {
            a0 += Vector256.Load(y); a1 += Vector256.Load(y + width); a2 += Vector256.Load(y + 2 * width); a3 += Vector256.Load(y + 3 * width);
        }
        Vector256.Store(a0, y); Vector256.Store(a1, y + width); Vector256.Store(a2, y + 2 * width); Vector256.Store(a3, y + 3 * width);
    }

    // Columns [from, n) of one row: y[j] (+)= sum_l x[l] w[l, j].
    private static void Tail(float* x, int k, float* w, int n, int from, float* y, bool accumulate)
    {
        for (int j = from; j < n; j++)
        {
            float sum = accumulate ? y[j] : 0f;
            for (int l = 0; l < k; l++) sum += x[l] * w[(long)l * n + j];
            y[j] = sum;
        }
    }
}
