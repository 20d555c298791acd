#version 460
// Head-wise recurrent cells, forward, one step per dispatch: for heads too large to keep R on one
// workgroup (Dh > 128; hidden 768 with one head has 3072 gate rows). The host records one dispatch
// per step into one command buffer (a barrier between them, no submit per step). Workgroup
// (x = head * blocks + block, y = batch tile) owns UNITS (a specialization constant) units j = block*UNITS + u of one head, all
// G gate rows of each (so the cell's pointwise math needs nothing from other workgroups), and a tile
// of TILE batch rows. Per dispatch (step t):
//   a[g*UNITS + u][i] = sum_k R[g*Dh + j][k] h_{t-1}[b0 + i][k]   (step_matvec.glsl: OUTS = G*UNITS
//   rows against h_{t-1} of the tile staged in shared memory, h_{t-1} read back from the outputs the
//   previous dispatch wrote, or h_0; R packed per block by pack_step_weights.comp);
//   invocation u + UNITS*i (strided over the workgroup) runs the cell of unit j, batch row b0 + i: h_t to the
//   outputs, c, n, m to the state scratch [4][B, H*Dh] (h, c, n, m; the host copies it to the final
//   states after the last step), the saved activations as the fused kernel writes them.
// Units past Dh (the last block of a head) have zero packed rows and run no cell.
// PERSISTENT = 1: one dispatch runs all T steps; h_t also goes to an exchange ring [2][B, H*Dh] of
// tagged values (step_exchange.glsl), from which the next step's workgroups stage h_{t-1} as soon
// as its writers have published it, with no barrier between the workgroups. The host takes it only
// where all workgroups fit on the device at once (VulkanBackend.Rnn.cs).
// Since a persistent workgroup owns one block for all steps, it can keep its packed R in registers
// (WEIGHT_REGS > 0, loaded once before the first step) instead of reading it from L2 every step.
//! variant lstm_step -DCELL=0
//! variant gru_step -DCELL=1
//! variant slstm_step -DCELL=2
//! variant elman_step -DCELL=3
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "buffers.glsl"
#include "activations.glsl"
#include "cells.glsl"
#include "step_exchange.glsl"

#define TILE 16                 // batch rows per workgroup (StepBatchTile on the host)
layout(local_size_x_id = 0) in;                 // OUTS * SLICES invocations (at most 256)
layout(constant_id = 1) const uint UNITS = 4;   // units per workgroup (RnnStepUnits on the host)
layout(constant_id = 2) const uint CHUNK4 = 64;     // vec4 columns of h staged at a time (step_matvec.glsl)
layout(constant_id = 3) const uint PREFETCH = 4;    // weight vec4s loaded ahead of each chunk's staging
layout(constant_id = 4) const uint VEC4_H = 0;      // 1: the outputs' rows start 16-byte aligned (Dh, H*Dh % 4 == 0)
layout(constant_id = 5) const uint PERSISTENT = 0;  // 1: all steps in one dispatch (above)
layout(constant_id = 6) const uint WEIGHT_REGS = 0; // PERSISTENT: weight vec4s each invocation keeps in registers (step_matvec.glsl), 0: none
const uint OUTS = GATES * UNITS;                // gate rows per workgroup
const uint SLICES = 256 / OUTS;                 // k slices (LSTM, 4 units: 16; GRU: 21, 252 invocations)

layout(push_constant) uniform Push
{
    F32Buffer x;        // [B, T, G*H*Dh]
    F32x4Buffer r;      // R packed per block (pack_step_weights.comp, forward layout)
    F32Buffer bias;     // [G*H*Dh] or 0
    F32Buffer y;        // [B, T, H*Dh]
    F32Buffer saved;    // [B, T, SAVED*H*Dh] or 0
    F32Buffer h0;       // [B, H*Dh] or 0 (never the outputs: the host copies it then); likewise c0, n0, m0
    F32Buffer c0;
    F32Buffer n0;
    F32Buffer m0;
    F32Buffer state;    // [4][B, H*Dh]: h, c, n, m after this step
    ExchangeBuffer ring;    // PERSISTENT: [2][B, H*Dh] (value, tag) pairs, zeroed; else 0
    FaultBuffer fault;      // PERSISTENT: the fault word; else 0
    uint batch;
    uint t;
    uint heads;
    uint dh;
    uint step;          // the step of this dispatch (PERSISTENT: unused)
} pc;

uint gHidden, gHeadBase, gB0, gStep;

// v[b][k] of step_matvec.glsl: h_{t-1}[b0 + b][head*Dh + k], zero past the batch.
float loadV(uint b, uint k)
{
    uint row = gB0 + b;
    if (row >= pc.batch) return 0.0;
    uint before = gStep > 0 ? gStep - 1 : 0;      // step t - 1 (an index in range either way)
    return gStep > 0 ? pc.y.v[(row * pc.t + before) * gHidden + gHeadBase + k] : loadState(pc.h0, row * gHidden + gHeadBase + k);
}

// v[b][4 i4 .. 4 i4 + 3], zero past Dh: one vec4 load when the rows are aligned.
vec4 loadV4(uint b, uint i4)
{
    uint row = gB0 + b, k = 4 * i4;
    if (VEC4_H != 0 && gStep > 0)
        return row < pc.batch ? F32x4Buffer(uint64_t(pc.y)).v[((row * pc.t + gStep - 1) * gHidden + gHeadBase + k) / 4] : vec4(0.0);
    vec4 value = vec4(0.0);
    [[unroll]] for (uint q = 0; q < 4; q++) if (k + q < pc.dh) value[q] = loadV(b, k + q);
    return value;
}

// PERSISTENT: loadV4's values from the exchange ring (h_{t-1} carries tag t), false until published.
bool tryLoadV4(uint b, uint i4, out vec4 value)
{
    uint row = gB0 + b, k = 4 * i4;
    value = vec4(0.0);
    if (row >= pc.batch) return true;
    if (gStep == 0) { value = loadV4(b, i4); return true; }
    uint at = (((gStep - 1) % 2) * pc.batch + row) * gHidden + gHeadBase + k;
    if (VEC4_H != 0) return tryTake4(pc.ring, at, gStep, value);
    bool ready = true;
    [[unroll]] for (uint q = 0; q < 4; q++)
    {
        float v = 0.0;
        if (k + q < pc.dh) ready = tryTake(pc.ring, at + q, gStep, v) && ready;
        value[q] = v;
    }
    return ready;
}

bool stagingGivesUp(uint polls) { return giveUp(pc.fault, polls); }

#include "step_matvec.glsl"

// What the cell of unit block*UNITS + u, batch row b0 + i needs besides R h_{t-1}: loaded before the
// product so that these loads' latency overlaps it.
struct CellInputs
{
    bool live;
    float a[GATES];     // x + bias (GRU's n gate: the recurrent bias b_hn alone)
    float xn, hPrev, c, n, m;
};

CellInputs loadCell(uint head, uint block, uint u, uint i)
{
    CellInputs in_;
    uint hidden = pc.heads * pc.dh, width = GATES * hidden, plane = pc.batch * hidden;
    uint j = block * UNITS + u, b = gl_WorkGroupID.y * TILE + i;
    in_.live = i < TILE && j < pc.dh && b < pc.batch;
    if (!in_.live) return in_;
    uint gu = head * pc.dh + j, token = b * pc.t + gStep, at = b * hidden + gu;
    [[unroll]] for (uint g = 0; g < GATES; g++)
    {
        in_.a[g] = loadState(pc.bias, g * hidden + gu);
        if (CELL != GRU || g != 2) in_.a[g] += pc.x.v[token * width + g * hidden + gu];
    }
    in_.xn = CELL == GRU ? pc.x.v[token * width + 2 * hidden + gu] : 0.0;
    uint before = gStep > 0 ? gStep - 1 : 0;
    in_.hPrev = gStep > 0 ? pc.y.v[(b * pc.t + before) * hidden + gu] : loadState(pc.h0, at);
    bool start = gStep == 0;
    in_.c = start ? loadState(pc.c0, at) : pc.state.v[plane + at];
    in_.n = start ? loadState(pc.n0, at) : pc.state.v[2 * plane + at];
    in_.m = start ? loadState(pc.m0, at) : pc.state.v[3 * plane + at];
    return in_;
}

// The cell after stepMatVec: h_t to the outputs and the state scratch, the saved activations.
void runCell(CellInputs in_, uint head, uint block, uint u, uint i)
{
    if (!in_.live) return;
    uint hidden = pc.heads * pc.dh, plane = pc.batch * hidden;
    uint j = block * UNITS + u, b = gl_WorkGroupID.y * TILE + i;
    uint gu = head * pc.dh + j, token = b * pc.t + gStep, at = b * hidden + gu;
    float a[GATES];
    [[unroll]] for (uint g = 0; g < GATES; g++) a[g] = in_.a[g] + stepSum(g * UNITS + u, i);
    float c = in_.c, n = in_.n, m = in_.m;
    float h = cellForward(a, in_.xn, in_.hPrev, c, n, m, pc.saved, token * SAVED * hidden + gu, hidden);
    pc.y.v[token * hidden + gu] = h;
    if (PERSISTENT != 0) publish(pc.ring, ((gStep % 2) * pc.batch + b) * hidden + gu, h, gStep + 1);
    pc.state.v[at] = h;
    pc.state.v[plane + at] = c;
    pc.state.v[2 * plane + at] = n;
    pc.state.v[3 * plane + at] = m;
}

// One step: the cells' inputs, R h_{t-1}, the cells.
void runStep(uint head, uint block)
{
    // UNITS * TILE cells; a GRU workgroup of 16 units has fewer invocations (240), so some run two:
    // the first one's inputs are loaded before the product.
    uint first = gl_LocalInvocationID.x;
    CellInputs early = loadCell(head, block, first % UNITS, first / UNITS);
    stepMatVec(pc.r, gl_WorkGroupID.x * ((pc.dh + 3) / 4) * OUTS, pc.dh);
    runCell(early, head, block, first % UNITS, first / UNITS);
    for (uint c = first + gl_WorkGroupSize.x; c < UNITS * TILE; c += gl_WorkGroupSize.x)
        runCell(loadCell(head, block, c % UNITS, c / UNITS), head, block, c % UNITS, c / UNITS);
}

void main()
{
    uint blocks = (pc.dh + UNITS - 1) / UNITS, head = gl_WorkGroupID.x / blocks, block = gl_WorkGroupID.x % blocks;
    gHidden = pc.heads * pc.dh; gHeadBase = head * pc.dh; gB0 = gl_WorkGroupID.y * TILE;
    if (PERSISTENT == 0)
    {
        gStep = pc.step;
        runStep(head, block);
        return;
    }
    if (WEIGHT_REGS > 0) loadStepWeights(pc.r, gl_WorkGroupID.x * ((pc.dh + 3) / 4) * OUTS, pc.dh);
    for (uint t = 0; t < pc.t; t++)
    {
        gStep = t;
        runStep(head, block);
    }
}
