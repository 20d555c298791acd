#version 460
// Head-wise recurrent cells, backward through time, one step per dispatch (the large-head
// counterpart of rnn_backward.comp; the host records dispatches for t = T-1 .. 0 into one command
// buffer, then one more with t = -1). Workgroup (x = head * blocks + block, y = batch tile) owns
// UNITS (a specialization constant) units k = block*UNITS + u of one head and a tile of TILE batch rows. Per dispatch (step t):
//   (R^T dq_{t+1})[k][i] = sum_r R[r][k] dq_{t+1}[b0 + i][r] over the head's G*Dh rows
//   (step_matvec.glsl: OUTS = UNITS columns of R, packed per block by pack_step_weights.comp, against
//   dq_{t+1} of the tile staged in shared memory; dq_{t+1} is the previous dispatch's output in the
//   dq store; the final-state gradient replaces the product at t = T-1);
//   invocation u + UNITS*i (strided over the workgroup) runs the cell's backward for unit k, batch row b0 + i
//   (cells.glsl): dx, dq_t and h_{t-1} into their stores (layouts as in rnn_backward.comp), dc, dn
//   and GRU's direct term dH z carried between dispatches in the scratch [3][B, H*Dh].
// At t = -1 only the product runs: dh_0 = R^T dq_0 + the direct term; dc_0, dn_0 from the scratch.
// PERSISTENT = 1: one dispatch runs t = T-1 .. -1; dq_t also goes to an exchange ring
// [2][H][B, G*Dh] of tagged values (step_exchange.glsl), from which the workgroups of step t - 1
// stage it as soon as its writers have published it, with no barrier between the workgroups. The
// host takes it only where all workgroups fit on the device at once (VulkanBackend.Rnn.cs).
// As in the forward, WEIGHT_REGS > 0 keeps the workgroup's packed R^T in registers for all steps.
// ROW_PARTIALS = 1 (one dispatch per step only): the product is split over gate rows instead of
// staging all G*Dh values of dq_{t+1} in every workgroup. After its cells, the workgroup multiplies
// the dq_t of the G*UNITS gate rows it owns (in shared memory) into partial sums for every unit k of
// its head, P_t[block][b][k] = sum over its rows r of dq_t[b][r] R[r][k], written to a store
// [2][H][blocks][B][Dh] (pc.ring's slot; step parity first, since step t - 1 reads P_t while
// writing P_{t-1}); step t - 1 then adds the blocks' partials of its own units:
// (R^T dq_t)[k][b] = sum over blocks of P_t[block][b][k]. R is read unpacked ([H, G*Dh, Dh], rows
// of k contiguous, vec4 loads where VEC4_R). Per step that moves blocks x B x Dh floats twice
// instead of blocks x B x G*Dh once, in two round trips instead of one per staging chunk.
//! variant lstm_bwd_step -DCELL=0
//! variant gru_bwd_step -DCELL=1
//! variant slstm_bwd_step -DCELL=2
//! variant elman_bwd_step -DCELL=3
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "buffers.glsl"
#include "activations.glsl"
#include "cells.glsl"
#include "step_exchange.glsl"

#define TILE 16     // batch rows per workgroup (StepBatchTile on the host)
layout(local_size_x_id = 0) in;                 // OUTS * SLICES invocations (at most 256)
layout(constant_id = 1) const uint UNITS = 4;   // units per workgroup (RnnStepUnits on the host)
layout(constant_id = 2) const uint CHUNK4 = 64;     // vec4 columns of dq staged at a time (step_matvec.glsl)
layout(constant_id = 3) const uint PREFETCH = 4;    // weight vec4s loaded ahead of each chunk's staging
layout(constant_id = 4) const uint VEC4_DQ = 0;     // 1: G*Dh % 4 == 0, so dq rows start 16-byte aligned
layout(constant_id = 5) const uint PERSISTENT = 0;  // 1: all steps in one dispatch (above)
layout(constant_id = 6) const uint WEIGHT_REGS = 0; // PERSISTENT: weight vec4s each invocation keeps in registers (step_matvec.glsl), 0: none
layout(constant_id = 7) const uint ROW_PARTIALS = 0;    // 1: the product split over the gate rows (above)
layout(constant_id = 8) const uint VEC4_R = 0;      // ROW_PARTIALS: Dh % 4 == 0 and R, the partials 16-byte aligned
const uint OUTS = UNITS;                        // columns of R per workgroup
const uint SLICES = 256 / OUTS;                 // r slices (4 units: 64)

layout(push_constant) uniform Push
{
    F32x4Buffer r;      // R packed per block (pack_step_weights.comp, backward layout)
    F32Buffer saved;    // [B, T, SAVED*H*Dh]
    F32Buffer y;        // forward outputs [B, T, H*Dh]
    F32Buffer dy;       // [B, T, H*Dh]
    F32Buffer dhT;      // [B, H*Dh] or 0; likewise dcT (LSTM)
    F32Buffer dcT;
    F32Buffer h0;       // [B, H*Dh] or 0; likewise c0, n0, m0
    F32Buffer c0;
    F32Buffer n0;
    F32Buffer m0;
    F32Buffer dx;       // [B, T, G*H*Dh]
    F32Buffer dq;       // [H, B*T, G*Dh]
    F32Buffer hPrev;    // [H, B*T, Dh]
    F32Buffer dh0;      // [B, H*Dh] or 0; likewise dc0, dn0
    F32Buffer dc0;
    F32Buffer dn0;
    F32Buffer state;    // [3][B, H*Dh]: dc, dn, direct term, reaching step t - 1
    ExchangeBuffer ring;    // PERSISTENT: [2][H][B, G*Dh] (value, tag) pairs, zeroed; ROW_PARTIALS: the partials [2][H][blocks][B][Dh]; else 0
    FaultBuffer fault;      // PERSISTENT: the fault word; else 0
    uint batch;
    uint t;
    uint heads;
    uint dh;
    int step;           // the step of this dispatch (PERSISTENT: unused)
} pc;

uint gRows, gTokens, gHead, gB0;
int gStep;

// v[b][r] of step_matvec.glsl: dq_{t+1}[b0 + b][r] of this head, zero past the batch.
float loadV(uint b, uint r)
{
    uint row = gB0 + b;
    if (row >= pc.batch) return 0.0;
    return pc.dq.v[(gHead * gTokens + row * pc.t + uint(gStep + 1)) * gRows + r];
}

// v[b][4 i4 .. 4 i4 + 3], zero past G*Dh: one vec4 load when the rows are aligned.
vec4 loadV4(uint b, uint i4)
{
    uint row = gB0 + b, r = 4 * i4;
    if (VEC4_DQ != 0)
        return row < pc.batch ? F32x4Buffer(uint64_t(pc.dq)).v[((gHead * gTokens + row * pc.t + uint(gStep + 1)) * gRows + r) / 4] : vec4(0.0);
    vec4 value = vec4(0.0);
    [[unroll]] for (uint q = 0; q < 4; q++) if (r + q < gRows) value[q] = loadV(b, r + q);
    return value;
}

// PERSISTENT: loadV4's values from the exchange ring (dq_{t+1} carries tag t + 2), false until published.
bool tryLoadV4(uint b, uint i4, out vec4 value)
{
    uint row = gB0 + b, r = 4 * i4, tag = uint(gStep + 2);
    value = vec4(0.0);
    if (row >= pc.batch) return true;
    uint at = (((uint(gStep + 1) % 2) * pc.heads + gHead) * pc.batch + row) * gRows + r;
    if (VEC4_DQ != 0) return tryTake4(pc.ring, at, tag, value);
    bool ready = true;
    [[unroll]] for (uint q = 0; q < 4; q++)
    {
        float v = 0.0;
        if (r + q < gRows) ready = tryTake(pc.ring, at + q, tag, v) && ready;
        value[q] = v;
    }
    return ready;
}

bool stagingGivesUp(uint polls) { return giveUp(pc.fault, polls); }

#include "step_matvec.glsl"

// What the cell's backward of unit block*UNITS + u, batch row b0 + i needs besides R^T dq_{t+1},
// loaded before the product so that these loads' latency overlaps it (the saved activations are
// read by cellBackward itself).
struct CellInputs
{
    bool live;
    float dhFinal, dc, dn, dhDirect, hp, dy, y;
};

CellInputs loadCell(uint head, uint block, uint u, uint i, bool product, bool final)
{
    CellInputs in_;
    uint hidden = pc.heads * pc.dh, plane = pc.batch * hidden;
    uint k = block * UNITS + u, b = gl_WorkGroupID.y * TILE + i;
    in_.live = i < TILE && k < pc.dh && b < pc.batch;
    if (!in_.live) return in_;
    uint gu = head * pc.dh + k, at = b * hidden + gu;
    in_.dhFinal = product ? 0.0 : loadState(pc.dhT, at);
    in_.dc = final ? (CELL == LSTM ? loadState(pc.dcT, at) : 0.0) : pc.state.v[at];
    in_.dn = final ? 0.0 : pc.state.v[plane + at];
    in_.dhDirect = final ? 0.0 : pc.state.v[2 * plane + at];
    if (gStep >= 0)
    {
        uint s = uint(gStep), token = b * pc.t + s, before = s > 0 ? token - 1 : token;
        in_.hp = s > 0 ? pc.y.v[before * hidden + gu] : loadState(pc.h0, at);
        in_.dy = pc.dy.v[token * hidden + gu];
        in_.y = pc.y.v[token * hidden + gu];
    }
    return in_;
}

// ROW_PARTIALS: stepShared holds, in vec4s, the cells' R^T dq_{t+1} [UNITS][TILE] at ROW_SUM, the
// reduction's partial sums [ROW_PARTS][UNITS * TILE] at ROW_PART, and this step's dq_t [OUTS][TILE]
// at ROW_DQ (zero for cells past Dh or the batch): at most 64 + 64 + 256 of the >= 1024 vec4s
// (UNITS * TILE <= 256 and ROW_PARTS * UNITS * TILE <= 256 floats, OUTS <= 64).
const uint ROW_CELLS = UNITS * TILE;
const uint ROW_PARTS = 256 / ROW_CELLS;         // invocations per cell in the reduction (1 .. 16)
const uint ROW_SUM = 0, ROW_PART = 64, ROW_DQ = 128;

uint partialsAt(uint parity, uint head, uint block, uint row, uint k)
{
    uint blocks = (pc.dh + UNITS - 1) / UNITS;
    return (((parity * pc.heads + head) * blocks + block) * pc.batch + row) * pc.dh + k;
}

// (R^T dq_{t+1})[k][b] for this workgroup's cells: the sum over the head's blocks of their partials
// P_{t+1} (parity (t + 1) % 2), ROW_PARTS invocations per cell, then one of them adds those.
void reduceRowPartials(uint head, uint block)
{
    F32Buffer partials = F32Buffer(uint64_t(pc.ring));
    uint id = gl_LocalInvocationID.x, cell = id % ROW_CELLS, part = id / ROW_CELLS;
    uint u = cell % UNITS, i = cell / UNITS, k = block * UNITS + u, row = gB0 + i;
    uint blocks = (pc.dh + UNITS - 1) / UNITS, parity = uint(gStep + 1) % 2;
    float sum = 0.0;
    if (part < ROW_PARTS && k < pc.dh && row < pc.batch)
        for (uint w = part; w < blocks; w += ROW_PARTS) sum += partials.v[partialsAt(parity, head, w, row, k)];
    if (part < ROW_PARTS) stepShared[ROW_PART + (part * ROW_CELLS + cell) / 4][cell % 4] = sum;
    barrier();
    if (id < ROW_CELLS)
    {
        float total = 0.0;
        for (uint q = 0; q < ROW_PARTS; q++) total += stepShared[ROW_PART + (q * ROW_CELLS + id) / 4][id % 4];
        stepShared[ROW_SUM + id / 4][id % 4] = total;
    }
    barrier();
}

float rowSum(uint u, uint i) { uint cell = u + UNITS * i; return stepShared[ROW_SUM + cell / 4][cell % 4]; }

// R[head][row r][4 c .. 4 c + 3], zero past Dh.
vec4 loadR4(uint head, uint r, uint c)
{
    uint at = (head * GATES * pc.dh + r) * pc.dh + 4 * c;
    if (VEC4_R != 0) return pc.r.v[at / 4];
    F32Buffer raw = F32Buffer(uint64_t(pc.r));
    vec4 value = vec4(0.0);
    [[unroll]] for (uint q = 0; q < 4; q++) if (4 * c + q < pc.dh) value[q] = raw.v[at + q];
    return value;
}

// P_t[block][b][k] = sum over this workgroup's rows r of dq_t[b][r] R[r][k] for every k of the
// head (invocation c owns the columns 4c .. 4c + 3, c = id, id + 256, ..), to parity t % 2.
void writeRowPartials(uint head, uint block)
{
    F32Buffer partials = F32Buffer(uint64_t(pc.ring));
    uint in4 = (pc.dh + 3) / 4, parity = uint(gStep) % 2;
    for (uint c = gl_LocalInvocationID.x; c < in4; c += gl_WorkGroupSize.x)
    {
        vec4 acc[TILE];
        [[unroll]] for (uint b = 0; b < TILE; b++) acc[b] = vec4(0.0);
        [[unroll]] for (uint o = 0; o < GATES * UNITS; o++)
        {
            uint g = o / UNITS, j = block * UNITS + o % UNITS;
            vec4 w = j < pc.dh ? loadR4(head, g * pc.dh + j, c) : vec4(0.0);
            [[unroll]] for (uint b4 = 0; b4 < TILE / 4; b4++)
            {
                vec4 d = stepShared[ROW_DQ + o * (TILE / 4) + b4];
                [[unroll]] for (uint q = 0; q < 4; q++) acc[4 * b4 + q] += d[q] * w;
            }
        }
        [[unroll]] for (uint b = 0; b < TILE; b++)
        {
            uint row = gB0 + b;
            if (row >= pc.batch) continue;
            uint at = partialsAt(parity, head, block, row, 4 * c);
            if (VEC4_R != 0) F32x4Buffer(uint64_t(partials)).v[at / 4] = acc[b];
            else [[unroll]] for (uint q = 0; q < 4; q++) if (4 * c + q < pc.dh) partials.v[at + q] = acc[b][q];
        }
    }
}

// The cell's backward after stepMatVec (if product).
void runCell(CellInputs in_, uint head, uint block, uint u, uint i, bool product)
{
    if (!in_.live) return;
    uint hidden = pc.heads * pc.dh, width = GATES * hidden, plane = pc.batch * hidden;
    uint rows = GATES * pc.dh, tokens = pc.batch * pc.t;
    uint k = block * UNITS + u, b = gl_WorkGroupID.y * TILE + i;
    uint gu = head * pc.dh + k, at = b * hidden + gu;
    float dhRec = !product ? in_.dhFinal : ROW_PARTIALS != 0 ? rowSum(u, i) : stepSum(u, i);
    float dc = in_.dc, dn = in_.dn, dhDirect = in_.dhDirect;
    if (gStep < 0)
    {
        if (uint64_t(pc.dh0) != 0) pc.dh0.v[at] = dhRec + dhDirect;
        if (uint64_t(pc.dc0) != 0) pc.dc0.v[at] = dc;
        if (uint64_t(pc.dn0) != 0) pc.dn0.v[at] = dn;
        return;
    }
    uint s = uint(gStep), token = b * pc.t + s, savedAt = token * SAVED * hidden + gu;
    uint before = s > 0 ? token - 1 : token;          // step t - 1 (an index in range either way)
    float cPrev, nPrev, mPrev;
    previousStates(pc.saved, before * SAVED * hidden + gu, s == 0, pc.c0, pc.n0, pc.m0, at, hidden, cPrev, nPrev, mPrev);
    float dH = in_.dy + dhRec + dhDirect;
    float dqv[GATES], dxv[GATES];
    cellBackward(dH, dc, dn, dhDirect, pc.saved, savedAt, hidden, in_.hp, in_.y, cPrev, nPrev, mPrev, dqv, dxv);
    uint store = head * tokens + token;
    [[unroll]] for (uint g = 0; g < GATES; g++)
    {
        pc.dx.v[token * width + g * hidden + gu] = dxv[g];
        pc.dq.v[store * rows + g * pc.dh + k] = dqv[g];
        if (ROW_PARTIALS != 0) stepShared[ROW_DQ + (g * UNITS + u) * (TILE / 4) + i / 4][i % 4] = dqv[g];
    }
    if (PERSISTENT != 0)
    {
        uint ringAt = (((s % 2) * pc.heads + head) * pc.batch + b) * rows + k;
        [[unroll]] for (uint g = 0; g < GATES; g++) publish(pc.ring, ringAt + g * pc.dh, dqv[g], s + 1);
    }
    pc.hPrev.v[store * pc.dh + k] = in_.hp;
    pc.state.v[at] = dc;
    pc.state.v[plane + at] = dn;
    pc.state.v[2 * plane + at] = dhDirect;
}

// One step (gStep; -1: the initial-state gradients).
void runStep(uint head, uint block)
{
    uint rows = GATES * pc.dh;
    bool product = gStep + 1 < int(pc.t);            // dq_{t+1} exists (uniform over the dispatch)
    bool final = gStep == int(pc.t) - 1;             // the first step: states from dFinal
    // UNITS * TILE cells (at most 256, the workgroup's size): the inputs are loaded before the product.
    uint first = gl_LocalInvocationID.x;
    CellInputs early = loadCell(head, block, first % UNITS, first / UNITS, product, final);
    if (ROW_PARTIALS != 0)
    {
        // dq_t of cells past Dh or the batch stays zero in the product; the reduction's barriers
        // order this before the cells' writes
        for (uint e = first; e < GATES * UNITS * (TILE / 4); e += gl_WorkGroupSize.x) stepShared[ROW_DQ + e] = vec4(0.0);
        if (product) reduceRowPartials(head, block);
        else barrier();
    }
    else if (product) stepMatVec(pc.r, gl_WorkGroupID.x * ((rows + 3) / 4) * OUTS, rows);
    runCell(early, head, block, first % UNITS, first / UNITS, product);
    for (uint c = first + gl_WorkGroupSize.x; c < UNITS * TILE; c += gl_WorkGroupSize.x)
        runCell(loadCell(head, block, c % UNITS, c / UNITS, product, final), head, block, c % UNITS, c / UNITS, product);
    if (ROW_PARTIALS != 0 && gStep >= 0)
    {
        barrier();
        writeRowPartials(head, block);
    }
}

void main()
{
    uint rows = GATES * pc.dh, tokens = pc.batch * pc.t;
    uint blocks = (pc.dh + UNITS - 1) / UNITS, head = gl_WorkGroupID.x / blocks, block = gl_WorkGroupID.x % blocks;
    gRows = rows; gTokens = tokens; gHead = head; gB0 = gl_WorkGroupID.y * TILE;
    if (PERSISTENT == 0)
    {
        gStep = pc.step;
        runStep(head, block);
        return;
    }
    if (WEIGHT_REGS > 0) loadStepWeights(pc.r, gl_WorkGroupID.x * ((rows + 3) / 4) * OUTS, rows);
    for (int t = int(pc.t) - 1; t >= -1; t--)
    {
        gStep = t;
        runStep(head, block);
    }
}
