using System.Runtime.Intrinsics;
using FastWeights.Engine.Ops;

namespace FastWeights.Engine.Cpu;

// The scan is sequential in time and independent across (batch, channel): each worker takes a
// batch and a block of channels and walks time with vectors over the channels.
public sealed unsafe partial class CpuBackend : IScanOps
{
    private const int ScanChannelBlock = 256;

    public void ScanForward(Tensor a, Tensor x, Tensor? h0, Tensor h)
    {
        int batches = a.Shape[0], steps = a.Shape[1], channels = a.Shape[2];
        float* pa = F32(a), px = F32(x), ph = F32(h), ph0 = h0 is null ? null : F32(h0);
        ForEachBlock(batches, channels, (b, c0, c1) =>
        {
            for (int c = c0; c < c1; c++)
            {
                // h_t = a_t h_{t-1} + x_t
                float carry = ph0 == null ? 0f : ph0[b * channels + c];
                long at = (long)b * steps * channels + c;
                for (int t = 0; t < steps; t++, at += channels)
                {
                    carry = pa[at] * carry + px[at];
                    ph[at] = carry;
                }
            }
        });
    }

    public void ScanBackward(Tensor a, Tensor? h0, Tensor h, Tensor dh, Tensor da, Tensor dx, Tensor? dh0)
    {
        int batches = a.Shape[0], steps = a.Shape[1], channels = a.Shape[2];
        float* pa = F32(a), ph = F32(h), pdh = F32(dh), pda = F32(da), pdx = F32(dx);
        float* ph0 = h0 is null ? null : F32(h0), pdh0 = dh0 is null ? null : F32(dh0);
        ForEachBlock(batches, channels, (b, c0, c1) =>
        {
            for (int c = c0; c < c1; c++)
            {
                // g_t = dh_t + a_{t+1} g_{t+1};  dx_t = g_t;  da_t = g_t h_{t-1};  dh0 = a_0 g_0
                long first = (long)b * steps * channels + c;
                float g = 0f, nextA = 0f;
                for (int t = steps - 1; t >= 0; t--)
                {
                    long at = first + (long)t * channels;
                    g = pdh[at] + nextA * g;
                    pdx[at] = g;
                    float previous = t > 0 ? ph[at - channels] : (ph0 == null ? 0f : ph0[b * channels + c]);
                    pda[at] = g * previous;
                    nextA = pa[at];
                }
                if (pdh0 != null) pdh0[b * channels + c] = steps > 0 ? pa[first] * g : 0f;
            }
        });
    }

    // Work items are (batch, channel block); the inner loops run over channels in the block so
    // consecutive iterations touch consecutive memory.
    private void ForEachBlock(int batches, int channels, Action<int, int, int> body)
    {
        int blocks = (channels + ScanChannelBlock - 1) / ScanChannelBlock;
        int items = batches * blocks;
        if (items <= 1 || Threads == 1) { for (int i = 0; i < items; i++) Run(i); return; }
        Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = Threads }, Run);
        void Run(int item)
        {
            int b = item / blocks, c0 = item % blocks * ScanChannelBlock;
            body(b, c0, Math.Min(channels, c0 + ScanChannelBlock));
        }
    }
}
