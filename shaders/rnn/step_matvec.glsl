// The matrix-vector tile of the per-step recurrent kernels (rnn_forward_step.comp: R h_{t-1};
// rnn_backward_step.comp: R^T dq_{t+1}). A workgroup forms OUTS x TILE sums
//   out[o][b] = sum_i W(o, i) v[b][i],   i in [0, IN), b in [0, TILE),
// with W packed for the workgroup's block by pack_step_weights.comp: w[i4 * OUTS + o] holds
// (W(o, 4 i4), .., W(o, 4 i4 + 3)), zero past IN, so one vec4 load per (o, i4) and lanes with
// consecutive o read consecutive 16 bytes (coalesced; the packed W stays in L2 across steps).
// Invocation id = o + OUTS * s (s < SLICES) owns output o for all TILE batch rows and the columns
// i4 = s, s + SLICES, .. ; v is staged chunk by chunk (CHUNK4 vec4 columns of TILE rows, zero past
// IN and past the batch) in shared memory, where every lane of a subgroup reads one of at most a
// few addresses (broadcast). No subgroup operations: any subgroup size works.
// Each chunk costs a round trip to L2 and two barriers, which is what a step's time is made of
// (bench/results/2026-12-01-h200-run11.txt: about 3.5 us per extra forward chunk on the H200), so
// the host makes CHUNK4 (a specialization constant) as large as the device's shared memory allows:
// one chunk for IN <= 768 with 48 KiB.
// Afterwards the SLICES partial sums of (o, b) lie in stepShared[(s * TILE/4 + b/4) * OUTS + o][b % 4];
// stepSum(o, b) adds them. The caller defines TILE (16), the constants OUTS and SLICES, the
// specialization constants CHUNK4 (>= 64) and PREFETCH (weight vec4s per invocation loaded ahead of
// each chunk's staging: the host takes ceil(CHUNK4 / SLICES), at most 12, so that normally every
// weight load of a chunk is in flight while v is staged), and vec4 loadV4(uint b, uint i4) (b < TILE, i4 < IN/4
// rounded up: v[b][4 i4 .. 4 i4 + 3] of its tile, zero past IN and past the batch) before including
// this file, and the constants PERSISTENT and WEIGHT_REGS; where PERSISTENT is not 0 also bool tryLoadV4(uint b, uint i4,
// out vec4 value) (the same values, false while the writer's step has not published them:
// step_exchange.glsl) and bool stagingGivesUp(uint polls) (giveUp of step_exchange.glsl on the
// kernel's fault word). The workgroup has OUTS * SLICES <= 256 invocations and stages at most 32
// elements per invocation, so the SLICES * TILE/4 * OUTS <= 1024 vec4s of partial sums fit in the
// TILE * CHUNK4 >= 1024 vec4s of the staging array.
// Weights in registers (the caller's constant WEIGHT_REGS > 0, PERSISTENT kernels only, where a
// workgroup owns the same block for all steps): loadStepWeights puts this invocation's weight vec4s
// (columns i4 = s + q SLICES, q < WEIGHT_REGS >= ceil(IN/4 / SLICES)) into registers once, and
// every step's product reads them there instead of from L2. On the H200 a step's time followed the
// weight bytes each SM read per step (bench/results/2026-12-02-h200-run48.txt: LSTM 1024 forward
// 16.2 / 17.2 / 25.5 us a step with 64 / 128 / 256 KB a step per SM), not the staged vector's.
#if TILE != 16
#error "step_matvec.glsl: sized for tiles of 16 batch rows"
#endif

shared vec4 stepShared[TILE * CHUNK4];     // staged v [TILE][CHUNK4], then the partial sums
vec4 stepWeights[WEIGHT_REGS + 1];          // WEIGHT_REGS > 0: this invocation's weights (the extra one is never read)

// WEIGHT_REGS > 0: this invocation's weight vec4s into stepWeights, zero past IN (call once).
void loadStepWeights(F32x4Buffer w, uint wBase, uint inCount)
{
    uint id = gl_LocalInvocationID.x, o = id % OUTS, s = id / OUTS, in4 = (inCount + 3) / 4;
    [[unroll]] for (uint q = 0; q < WEIGHT_REGS; q++)
    {
        uint c = s + q * SLICES;
        stepWeights[q] = s < SLICES && c < in4 ? w.v[wBase + c * OUTS + o] : vec4(0.0);
    }
}

// Every invocation of the workgroup calls this in uniform control flow. in4 = ceil(IN / 4).
void stepMatVec(F32x4Buffer w, uint wBase, uint inCount)
{
    uint id = gl_LocalInvocationID.x, o = id % OUTS, s = id / OUTS;
    uint in4 = (inCount + 3) / 4;
    float acc[TILE];
    [[unroll]] for (uint b = 0; b < TILE; b++) acc[b] = 0.0;
    for (uint c0 = 0; c0 < in4; c0 += CHUNK4)
    {
        // The chunk's first PREFETCH weight vec4s of this invocation are loaded before the staging,
        // so their latency overlaps it (all of them when PREFETCH * SLICES >= CHUNK4).
        uint end = min(in4 - c0, uint(CHUNK4));
        vec4 early[PREFETCH];
        if (WEIGHT_REGS == 0) [[unroll]] for (uint q = 0; q < PREFETCH; q++)
        {
            uint c = s + q * SLICES;
            vec4 loaded = w.v[wBase + (c0 + min(c, end - 1)) * OUTS + o];    // always in range
            early[q] = c < end ? loaded : vec4(0.0);
        }
        barrier();                                   // the previous chunk's readers are done
        if (PERSISTENT == 0)
            [[unroll]] for (uint e = id; e < TILE * CHUNK4; e += OUTS * SLICES)
            {
                uint b = e / CHUNK4, c = e % CHUNK4;
                if (c < end) stepShared[e] = loadV4(b, c0 + c);      // columns past the chunk's end are never read
            }
        else
        {
            // Every element of this invocation's share is loaded at once; the ones whose tag was
            // not there yet (bit q of `pending`: element id + q * invocations) are polled again
            // together, so a wait costs one round trip per poll, not one per element.
            uint pending = 0u;
            [[unroll]] for (uint e = id, q = 0; e < TILE * CHUNK4; e += OUTS * SLICES, q++)
                if (e % CHUNK4 < end) pending |= 1u << q;
            for (uint polls = 1; pending != 0u; polls++)
            {
                [[unroll]] for (uint e = id, q = 0; e < TILE * CHUNK4; e += OUTS * SLICES, q++)
                {
                    vec4 value;
                    if ((pending & (1u << q)) != 0u && tryLoadV4(e / CHUNK4, c0 + e % CHUNK4, value)) { stepShared[e] = value; pending &= ~(1u << q); }
                }
                if (pending != 0u && stagingGivesUp(polls)) break;
            }
        }
        barrier();
        if (WEIGHT_REGS > 0)
        {
            // Register q holds column s + q SLICES; the ones inside this chunk take part.
            [[unroll]] for (uint q = 0; q < WEIGHT_REGS; q++)
            {
                uint c = s + q * SLICES;
                if (c >= c0 && c < c0 + end) [[unroll]] for (uint b = 0; b < TILE; b++) acc[b] += dot(stepWeights[q], stepShared[b * CHUNK4 + c - c0]);
            }
            continue;
        }
        [[unroll]] for (uint q = 0; q < PREFETCH; q++)
        {
            uint c = s + q * SLICES;
            if (c < end) [[unroll]] for (uint b = 0; b < TILE; b++) acc[b] += dot(early[q], stepShared[b * CHUNK4 + c]);
        }
        for (uint c = s + PREFETCH * SLICES; c < end; c += SLICES)
        {
            vec4 wv = w.v[wBase + (c0 + c) * OUTS + o];
            [[unroll]] for (uint b = 0; b < TILE; b++) acc[b] += dot(wv, stepShared[b * CHUNK4 + c]);
        }
    }
    barrier();                                       // staging reads done: reuse the array
    [[unroll]] for (uint b4 = 0; b4 < TILE / 4; b4++)
        stepShared[(s * (TILE / 4) + b4) * OUTS + o] = vec4(acc[4 * b4], acc[4 * b4 + 1], acc[4 * b4 + 2], acc[4 * b4 + 3]);
    barrier();
}

// out[o][b] after stepMatVec: the sum of the SLICES partial sums.
float stepSum(uint o, uint b)
{
    float sum = 0.0;
    for (uint s = 0; s < SLICES; s++) sum += stepShared[(s * (TILE / 4) + b / 4) * OUTS + o][b % 4];
    return sum;
}
