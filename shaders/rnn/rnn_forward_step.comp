#version 460
// Head-wise recurrent cells, forward, one step per dispatch: for heads too large to keep R on one
// workgroup (Dh > 128; hidden 768 with one head has 3072 gate rows). The host records one dispatch
// per step into one command buffer (a barrier between them, no submit per step). Gate rows are split
// over workgroups by unit: a subgroup takes unit j of head h (global unit gu = h*Dh + j) and its G
// gate rows R[g*Dh + j] for a tile of TILE batch rows, so the cell's pointwise math needs nothing
// from other subgroups. Per dispatch (step t):
//   a[g][i] = sum_k R[g*Dh + j][k] h_{t-1}[b0 + i][k]: lanes stride over k (R and h_{t-1} read
//   coalesced from global memory, R stays in L2 across steps), then a subgroup add;
//   lane i mod (subgroup size) runs the cell for batch row i: h_t to the outputs (which the next step
//   reads as h_{t-1}), c, n, m to the state scratch [4][B, H*Dh] (h, c, n, m; the host copies it to
//   the final states after the last step), the saved activations as the fused kernel writes them.
// Any subgroup size; the host asks for whole subgroups.
//! variant lstm_step -DCELL=0
//! variant gru_step -DCELL=1
//! variant slstm_step -DCELL=2
//! variant elman_step -DCELL=3
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "buffers.glsl"
#include "activations.glsl"
#include "cells.glsl"

#define TILE 16     // batch rows per workgroup

layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push
{
    F32Buffer x;        // [B, T, G*H*Dh]
    F32Buffer r;        // [H, G*Dh, Dh]
    F32Buffer bias;     // [G*H*Dh] or 0
    F32Buffer y;        // [B, T, H*Dh]
    F32Buffer saved;    // [B, T, SAVED*H*Dh] or 0
    F32Buffer h0;       // [B, H*Dh] or 0 (never the outputs: the host copies it then); likewise c0, n0, m0
    F32Buffer c0;
    F32Buffer n0;
    F32Buffer m0;
    F32Buffer state;    // [4][B, H*Dh]: h, c, n, m after this step
    uint batch;
    uint t;
    uint heads;
    uint dh;
    uint step;
    uint unitsPerGroup;
} pc;

void main()
{
    uint hidden = pc.heads * pc.dh, width = GATES * hidden, plane = pc.batch * hidden;
    uint b0 = gl_WorkGroupID.y * TILE, lane = gl_SubgroupInvocationID;
    uint first = gl_WorkGroupID.x * pc.unitsPerGroup, last = min(first + pc.unitsPerGroup, hidden);
    uint before = pc.step > 0 ? pc.step - 1 : 0;       // step t - 1 (an index in range either way)
    for (uint gu = first + gl_SubgroupID; gu < last; gu += gl_NumSubgroups)
    {
        uint head = gu / pc.dh, j = gu % pc.dh;
        float acc[GATES][TILE];
        [[unroll]] for (uint g = 0; g < GATES; g++) [[unroll]] for (uint i = 0; i < TILE; i++) acc[g][i] = 0.0;
        for (uint k = lane; k < pc.dh; k += gl_SubgroupSize)
        {
            float w[GATES];
            [[unroll]] for (uint g = 0; g < GATES; g++) w[g] = pc.r.v[((head * GATES + g) * pc.dh + j) * pc.dh + k];
            [[unroll]] for (uint i = 0; i < TILE; i++)
            {
                uint b = b0 + i;
                if (b >= pc.batch) break;
                uint at = b * hidden + head * pc.dh + k;
                float hv = pc.step > 0 ? pc.y.v[(b * pc.t + before) * hidden + head * pc.dh + k] : loadState(pc.h0, at);
                [[unroll]] for (uint g = 0; g < GATES; g++) acc[g][i] += w[g] * hv;
            }
        }
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            if (b0 + i >= pc.batch) break;
            [[unroll]] for (uint g = 0; g < GATES; g++) acc[g][i] = subgroupAdd(acc[g][i]);
        }
        [[unroll]] for (uint i = 0; i < TILE; i++)
        {
            uint b = b0 + i;
            if (b >= pc.batch) break;
            if (i % gl_SubgroupSize != lane) continue;
            uint token = b * pc.t + pc.step, at = b * hidden + gu;
            float a[GATES];
            [[unroll]] for (uint g = 0; g < GATES; g++)
            {
                a[g] = acc[g][i] + loadState(pc.bias, g * hidden + gu);
                if (CELL != GRU || g != 2) a[g] += pc.x.v[token * width + g * hidden + gu];
            }
            float xn = CELL == GRU ? pc.x.v[token * width + 2 * hidden + gu] : 0.0;
            float hPrev = pc.step > 0 ? pc.y.v[(b * pc.t + before) * hidden + gu] : loadState(pc.h0, at);
            bool start = pc.step == 0;
            float c = start ? loadState(pc.c0, at) : pc.state.v[plane + at];
            float n = start ? loadState(pc.n0, at) : pc.state.v[2 * plane + at];
            float m = start ? loadState(pc.m0, at) : pc.state.v[3 * plane + at];
            float h = cellForward(a, xn, hPrev, c, n, m, pc.saved, token * SAVED * hidden + gu, hidden);
            pc.y.v[token * hidden + gu] = h;
            pc.state.v[at] = h;
            pc.state.v[plane + at] = c;
            pc.state.v[2 * plane + at] = n;
            pc.state.v[3 * plane + at] = m;
        }
    }
}
