// The matrix-vector tile of the per-step recurrent kernels (rnn_forward_step.comp: R h_{t-1};
// rnn_backward_step.comp: R^T dq_{t+1}). A workgroup forms OUTS x TILE sums
//   out[o][b] = sum_i W(o, i) v[b][i],   i in [0, IN), b in [0, TILE),
// with W packed for the workgroup's block by pack_step_weights.comp: w[i4 * OUTS + o] holds
// (W(o, 4 i4), .., W(o, 4 i4 + 3)), zero past IN, so one vec4 load per (o, i4) and lanes with
// consecutive o read consecutive 16 bytes (coalesced; the packed W stays in L2 across steps).
// v is staged chunk by chunk (CHUNK4 vec4 columns of TILE rows, zero past IN and past the batch)
// in shared memory by all invocations. For the product, invocation id = l + LANES * s (l < LANES =
// ceil(OUTS / 2), s < SLICES2 = invocations / LANES; any others idle) owns the two outputs l and
// l + LANES (the second one only where < OUTS) for all TILE batch rows and the columns i4 = s,
// s + SLICES2, .. : every vec4 of v it reads from shared memory feeds 8 multiply-adds, not 4
// (with one output per invocation, LSTM 1024 with 8 units per workgroup made 4096 128-bit shared
// reads per SM and step; two outputs took its forward from 13.95 to 12.95 ms on the H200,
// bench/results/2026-12-02-h200-run49.txt and run50.txt). Lanes of a subgroup read one of a few
// addresses (broadcast). No subgroup operations: any subgroup size works.
// Each chunk costs a round trip to L2 and two barriers (bench/results/2026-12-01-h200-run11.txt:
// about 3.5 us per extra forward chunk on the H200), so the host makes CHUNK4 (a specialization
// constant) as large as the device's shared memory allows: one chunk for IN <= 768 with 48 KiB.
// Afterwards the SLICES2 partial sums of (o, b) lie in stepShared[(s * TILE/4 + b/4) * OUTS + o][b % 4];
// stepSum(o, b) adds them. The caller defines TILE (16), the constants OUTS and SLICES (the
// workgroup has OUTS * SLICES <= 256 invocations), the specialization constants CHUNK4 (>= 64) and
// PREFETCH (weight vec4s per invocation loaded ahead of each chunk's staging, over both outputs: the
// host takes ceil(CHUNK4 / SLICES), at most 12, so that normally every weight load of a chunk is in
// flight while v is staged), and vec4 loadV4(uint b, uint i4) (b < TILE, i4 < IN/4 rounded up:
// v[b][4 i4 .. 4 i4 + 3] of its tile, zero past IN and past the batch) before including this file,
// and the constants PERSISTENT and WEIGHT_REGS; where PERSISTENT is not 0 also bool tryLoadV4(uint b,
// uint i4, out vec4 value) (the same values, false while the writer's step has not published them:
// step_exchange.glsl) and bool stagingGivesUp(uint polls) (giveUp of step_exchange.glsl on the
// kernel's fault word). Each invocation stages at most 32 elements per chunk; the shared array
// holds the larger of the staged chunk and the SLICES2 * TILE/4 * OUTS <= 2048 vec4s of partial
// sums (32 KiB).
// Weights in registers (the caller's constant WEIGHT_REGS > 0, PERSISTENT kernels only, where a
// workgroup owns the same block for all steps): loadStepWeights puts this invocation's weight vec4s
// (both outputs of columns s + q SLICES2: stepWeights[2q], [2q + 1]; WEIGHT_REGS >= 2
// ceil(IN/4 / SLICES2)) into registers once, and every step's product reads them there instead of
// from L2. That pays where they are few (heads of 192 and 256 with 8 units: 6-8 vec4s, 3-5% faster
// forward+backward on the H200) and costs where they are many (one head of 768 or 1024: 24-32 vec4s
// took the kernels to 215-254 registers and 1-5% slower, run 49), so the host keeps at most 16.
#if TILE != 16
#error "step_matvec.glsl: sized for tiles of 16 batch rows"
#endif

const uint LANES = (OUTS + 1) / 2;                     // invocations per column slice, two outputs each
const uint SLICES2 = OUTS * SLICES / LANES;             // column slices of the product
const uint STAGED_VECS = TILE * CHUNK4;
const uint PARTIAL_VECS = SLICES2 * (TILE / 4) * OUTS;
shared vec4 stepShared[STAGED_VECS > PARTIAL_VECS ? STAGED_VECS : PARTIAL_VECS];   // staged v [TILE][CHUNK4], then the partial sums
vec4 stepWeights[WEIGHT_REGS + 1];          // WEIGHT_REGS > 0: this invocation's weights (the extra one is never read)
const uint EARLY = (PREFETCH + 1) / 2;      // columns whose weights (both outputs) are loaded ahead of a chunk's staging

// This invocation's place in the product: its outputs o0 = l and o1 = l + LANES, its first column s.
struct ProductLane
{
    uint o0, o1, s;
    bool live, second;      // live: s < SLICES2; second: o1 < OUTS
};

ProductLane productLane()
{
    ProductLane lane;
    uint id = gl_LocalInvocationID.x;
    lane.o0 = id % LANES;
    lane.s = id / LANES;
    lane.o1 = min(lane.o0 + LANES, uint(OUTS) - 1);     // an address in range; zero weights where !second
    lane.live = lane.s < SLICES2;
    lane.second = lane.o0 + LANES < OUTS;
    return lane;
}

// The weights of column c (< in4) for both outputs, zero where an output does not exist.
void laneWeights(F32x4Buffer w, uint wBase, ProductLane lane, uint c, bool inRange, out vec4 w0, out vec4 w1)
{
    vec4 loaded0 = w.v[wBase + c * OUTS + lane.o0], loaded1 = w.v[wBase + c * OUTS + lane.o1];
    w0 = inRange ? loaded0 : vec4(0.0);
    w1 = inRange && lane.second ? loaded1 : vec4(0.0);
}

// WEIGHT_REGS > 0: this invocation's weight vec4s into stepWeights, zero past IN (call once).
void loadStepWeights(F32x4Buffer w, uint wBase, uint inCount)
{
    ProductLane lane = productLane();
    uint in4 = (inCount + 3) / 4;
    [[unroll]] for (uint q = 0; 2 * q + 1 < WEIGHT_REGS; q++)
    {
        uint c = lane.s + q * SLICES2;
        laneWeights(w, wBase, lane, min(c, in4 - 1), lane.live && c < in4, stepWeights[2 * q], stepWeights[2 * q + 1]);
    }
}

// acc0/acc1 += the two outputs' weights of one column times v's column `at` (TILE rows).
#define STEP_MULTIPLY(w0, w1, at) \
    [[unroll]] for (uint b = 0; b < TILE; b++) \
    { \
        vec4 v = stepShared[b * CHUNK4 + (at)]; \
        acc0[b] += dot(w0, v); \
        acc1[b] += dot(w1, v); \
    }

// Every invocation of the workgroup calls this in uniform control flow. in4 = ceil(IN / 4).
void stepMatVec(F32x4Buffer w, uint wBase, uint inCount)
{
    uint id = gl_LocalInvocationID.x;
    ProductLane lane = productLane();
    uint in4 = (inCount + 3) / 4;
    float acc0[TILE], acc1[TILE];
    [[unroll]] for (uint b = 0; b < TILE; b++) { acc0[b] = 0.0; acc1[b] = 0.0; }
    for (uint c0 = 0; c0 < in4; c0 += CHUNK4)
    {
        // The weights of the chunk's first EARLY columns of this invocation are loaded before the
        // staging, so their latency overlaps it (all of them when EARLY * SLICES2 >= CHUNK4).
        uint end = min(in4 - c0, uint(CHUNK4));
        vec4 early0[EARLY], early1[EARLY];
        if (WEIGHT_REGS == 0) [[unroll]] for (uint q = 0; q < EARLY; q++)
        {
            uint c = lane.s + q * SLICES2;
            laneWeights(w, wBase, lane, c0 + min(c, end - 1), lane.live && c < end, early0[q], early1[q]);
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
        if (lane.live && WEIGHT_REGS > 0)
        {
            // Registers 2q, 2q + 1 hold column s + q SLICES2; the ones inside this chunk take part.
            [[unroll]] for (uint q = 0; 2 * q + 1 < WEIGHT_REGS; q++)
            {
                uint c = lane.s + q * SLICES2;
                if (c >= c0 && c < c0 + end) STEP_MULTIPLY(stepWeights[2 * q], stepWeights[2 * q + 1], c - c0)
            }
        }
        else if (lane.live)
        {
            [[unroll]] for (uint q = 0; q < EARLY; q++)
            {
                uint c = lane.s + q * SLICES2;
                if (c < end) STEP_MULTIPLY(early0[q], early1[q], c)
            }
            for (uint c = lane.s + EARLY * SLICES2; c < end; c += SLICES2)
            {
                vec4 w0, w1;
                laneWeights(w, wBase, lane, c0 + c, true, w0, w1);
                STEP_MULTIPLY(w0, w1, c)
            }
        }
    }
    barrier();                                       // staging reads done: reuse the array
    if (lane.live)
        [[unroll]] for (uint b4 = 0; b4 < TILE / 4; b4++)
        {
            uint row = (lane.s * (TILE / 4) + b4) * OUTS;
            stepShared[row + lane.o0] = vec4(acc0[4 * b4], acc0[4 * b4 + 1], acc0[4 * b4 + 2], acc0[4 * b4 + 3]);
            if (lane.second) stepShared[row + lane.o0 + LANES] = vec4(acc1[4 * b4], acc1[4 * b4 + 1], acc1[4 * b4 + 2], acc1[4 * b4 + 3]);
        }
    barrier();
}

// out[o][b] after stepMatVec: the sum of the SLICES2 partial sums.
float stepSum(uint o, uint b)
{
    float sum = 0.0;
    for (uint s = 0; s < SLICES2; s++) sum += stepShared[(s * (TILE / 4) + b / 4) * OUTS + o][b % 4];
    return sum;
}
