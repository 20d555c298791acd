#version 460
// Linear attention (sum rule), recurrent backward. Forward, with q' = scale q:
//   S_t = S_{t-1} + v_t k_t^T,  z_t = z_{t-1} + k_t,  y_t = S_t q'_t,
//   n_t = z_t . q'_t + eps (normalised; else n_t = 1),  o_t = y_t / n_t.
// Given do_t, dS_T and dz_T:
//   dy_t = do_t / n_t,  dn_t = -(do_t . o_t) / n_t
//   dq_t = scale (S_t^T dy_t + dn_t z_t)                          (phase 0, forward in time)
//   G_t = dS_T + sum_{tau >= t} dy_tau q'_tau^T,  g_t = dz_T + sum_{tau >= t} dn_tau q'_tau
//   dv_t = G_t k_t,  dk_t = G_t^T v_t + g_t,  dS_0 = G_1,  dz_0 = g_1   (phase 1, reverse in time)
// Phase 0 rebuilds S_t and z_t from the initial state; phase 1 needs no states at all, only the
// per-token n_t and dn_t that phase 0 leaves in the scratch.
// Layout of the work as in recurrent.comp: one workgroup per (batch, head, block of state rows);
// row r belongs to LANES invocations (lane l: columns l, l + LANES, ...). Each block sums only its
// own rows, so dq, dk and dz_0 are sums over the blocks: with BLOCKS > 1 the kernel writes each
// block's part to a partial buffer laid out [element, block] that the host then sums over its last
// axis; with one block the partial buffer is the output itself. The block's dn_t is its rows' part
// of the sum over rows: dq and g are linear in dn, so the parts add up as well. Row sums within the
// block go through shared memory with float atomics.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_shader_atomic_float : require
#include "buffers.glsl"

#define KMAX 32
#define MAX_DK 1024

layout(local_size_x_id = 0) in;            // rows of the block x LANES
layout(constant_id = 1) const uint LANES = 4;

layout(push_constant) uniform Push
{
    F32Buffer q;
    F32Buffer k;
    F32Buffer v;
    F32Buffer dOut;
    F32Buffer initialState;   // 0: zeros
    F32Buffer initialZ;       // 0: zeros
    F32Buffer dFinal;         // 0: none
    F32Buffer dFinalZ;        // 0: none
    F32Buffer scalars;        // [B*T*H, blocks, 2]: n_t and the block's dn_t
    F32Buffer dQuery;         // [B*T*H*Dk, blocks]
    F32Buffer dKey;           // [B*T*H*Dk, blocks]
    F32Buffer dValue;         // [B, T, H, Dv]
    F32Buffer dInitial;       // [B, H, Dv, Dk] (0: not written)
    F32Buffer dInitialZ;      // [B*H*Dk, blocks] (0: not written)
    uint t;
    uint heads;
    uint dk;
    uint dvDim;
    float scale;
    float eps;
    uint normalise;
    uint phase;
} pc;

shared float columnSum[MAX_DK];   // dq (phase 0) or dk (phase 1) of this block
shared float columnZ[MAX_DK];     // z_t, phase 0
shared float rowSum[2];           // sum over the block's rows of do . o, by the parity of the step
                                  // (reset one step after use, so no barrier is needed for the reset)

float reduceRow(float x)
{
    [[unroll]] for (uint offset = LANES / 2; offset > 0; offset /= 2) x += subgroupShuffleXor(x, offset);
    return x;
}

void main()
{
    uint bh = gl_WorkGroupID.x, b = bh / pc.heads, h = bh % pc.heads;
    uint block = gl_WorkGroupID.y, blocks = gl_NumWorkGroups.y;
    uint rowsPerBlock = gl_WorkGroupSize.x / LANES;
    uint lane = gl_LocalInvocationID.x % LANES, localRow = gl_LocalInvocationID.x / LANES;
    uint row = block * rowsPerBlock + localRow;
    bool rowValid = row < pc.dvDim;
    bool firstRow = localRow == 0;
    uint columns = (pc.dk + LANES - 1) / LANES;
    uint stateAt = (bh * pc.dvDim + row) * pc.dk;
    bool normalise = pc.normalise != 0;

    for (uint c = gl_LocalInvocationID.x; c < pc.dk; c += gl_WorkGroupSize.x) columnSum[c] = 0.0;
    if (gl_LocalInvocationID.x < 2) rowSum[gl_LocalInvocationID.x] = 0.0;

    float s[KMAX], z[KMAX];
    [[unroll]] for (uint j = 0; j < KMAX; j++)
    {
        uint c = lane + j * LANES;
        bool inside = j < columns && c < pc.dk;
        if (pc.phase == 0)
        {
            s[j] = inside && rowValid && uint64_t(pc.initialState) != 0 ? pc.initialState.v[stateAt + c] : 0.0;
            z[j] = inside && normalise && uint64_t(pc.initialZ) != 0 ? pc.initialZ.v[bh * pc.dk + c] : 0.0;
        }
        else
        {   // s holds G (the gradient reaching S_t), z holds this block's part of g
            s[j] = inside && rowValid && uint64_t(pc.dFinal) != 0 ? pc.dFinal.v[stateAt + c] : 0.0;
            z[j] = inside && normalise && block == 0 && uint64_t(pc.dFinalZ) != 0 ? pc.dFinalZ.v[bh * pc.dk + c] : 0.0;
        }
    }
    // dFinal(Z) may be the very tensor dInitial(Z) is written to: every read happens first.
    barrier();

    for (uint step = 0; step < pc.t; step++)
    {
        uint t = pc.phase == 0 ? step : pc.t - 1 - step;
        uint token = (b * pc.t + t) * pc.heads + h;
        float kv[KMAX], qv[KMAX];
        [[unroll]] for (uint j = 0; j < KMAX; j++)
        {
            uint c = lane + j * LANES;
            bool inside = j < columns && c < pc.dk;
            kv[j] = inside ? pc.k.v[token * pc.dk + c] : 0.0;
            qv[j] = inside ? pc.scale * pc.q.v[token * pc.dk + c] : 0.0;
        }
        float value = rowValid ? pc.v.v[token * pc.dvDim + row] : 0.0;
        float dOut = rowValid ? pc.dOut.v[token * pc.dvDim + row] : 0.0;
        uint scalarAt = (token * blocks + block) * 2;
        if (pc.phase == 0)
        {
            float y = 0.0, zq = 0.0;
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                s[j] += value * kv[j];
                z[j] += kv[j];
                y += s[j] * qv[j];
                zq += z[j] * qv[j];
            }
            y = reduceRow(y);
            float n = normalise ? reduceRow(zq) + pc.eps : 1.0;
            float dy = dOut / n;
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                uint c = lane + j * LANES;
                if (j < columns && c < pc.dk)
                {
                    if (rowValid) atomicAdd(columnSum[c], s[j] * dy);
                    if (firstRow) columnZ[c] = z[j];
                }
            }
            if (rowValid && lane == 0 && normalise) atomicAdd(rowSum[step & 1], dOut * (y / n));
            barrier();
            float dn = normalise ? -rowSum[step & 1] / n : 0.0;
            for (uint c = gl_LocalInvocationID.x; c < pc.dk; c += gl_WorkGroupSize.x)
            {
                pc.dQuery.v[(token * pc.dk + c) * blocks + block] = pc.scale * (columnSum[c] + (normalise ? dn * columnZ[c] : 0.0));
                columnSum[c] = 0.0;
            }
            barrier();
            if (gl_LocalInvocationID.x == 0)
            {
                pc.scalars.v[scalarAt] = n;
                pc.scalars.v[scalarAt + 1] = dn;
                rowSum[step & 1] = 0.0;
            }
        }
        else
        {
            float n = pc.scalars.v[scalarAt], dn = pc.scalars.v[scalarAt + 1];
            float dy = dOut / n, dv = 0.0;
            [[unroll]] for (uint j = 0; j < KMAX; j++)
            {
                uint c = lane + j * LANES;
                s[j] += dy * qv[j];
                z[j] += dn * qv[j];
                dv += s[j] * kv[j];
                if (j < columns && c < pc.dk)
                {
                    if (rowValid) atomicAdd(columnSum[c], s[j] * value);
                    if (firstRow && normalise) atomicAdd(columnSum[c], z[j]);
                }
            }
            dv = reduceRow(dv);
            if (rowValid && lane == 0) pc.dValue.v[token * pc.dvDim + row] = dv;
            barrier();
            for (uint c = gl_LocalInvocationID.x; c < pc.dk; c += gl_WorkGroupSize.x)
            {
                pc.dKey.v[(token * pc.dk + c) * blocks + block] = columnSum[c];
                columnSum[c] = 0.0;
            }
            barrier();
        }
    }

    if (pc.phase == 1)
        [[unroll]] for (uint j = 0; j < KMAX; j++)
        {
            uint c = lane + j * LANES;
            if (j >= columns || c >= pc.dk) continue;
            if (rowValid && uint64_t(pc.dInitial) != 0) pc.dInitial.v[stateAt + c] = s[j];
            if (firstRow && uint64_t(pc.dInitialZ) != 0) pc.dInitialZ.v[(bh * pc.dk + c) * blocks + block] = z[j];
        }
}
