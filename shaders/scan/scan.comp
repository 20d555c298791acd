#version 460
// First-order linear scan over [B, T, C], parallel over batches, channels and time segments.
//   forward:  h_t = a_t h_{t-1} + x_t,  h_{-1} = h0 (or 0)
//   backward: g_t = dh_t + a_{t+1} g_{t+1} (g past the end = 0);  dx_t = g_t;
//             da_t = g_t h_{t-1};  dh0 = a_0 g_0
// A workgroup owns CHANNELS consecutive channels of one batch (consecutive invocations read
// consecutive channels, so loads coalesce) and splits time into SEGMENTS segments. Pass 1: each
// invocation scans its segment from a zero carry, keeping the segment's product of coefficients
// P and end value Y. Pass 2: one invocation per channel chains the segments,
// E_s = Y_s + P_s E_{s-1}. Pass 3: each invocation rescans its segment from its carry E_{s-1} and
// writes the results. Memory traffic: a and x read twice, h written once.
//! variant scan_forward -DBACKWARD=0
//! variant scan_backward -DBACKWARD=1
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"

#define CHANNELS 32
#define SEGMENTS 16
layout(local_size_x = CHANNELS, local_size_y = SEGMENTS) in;

layout(push_constant) uniform Push
{
    uint64_t a;      // [B, T, C]
    uint64_t x;      // forward: x; backward: dh
    uint64_t h0;     // [B, C] or 0
    uint64_t h;      // forward: out h; backward: in h (the forward's outputs)
    uint64_t dx;     // backward: out
    uint64_t da;     // backward: out
    uint64_t dh0;    // backward: out [B, C] or 0
    uint t;
    uint c;
} pc;

shared float segmentProduct[SEGMENTS][CHANNELS];
shared float segmentEnd[SEGMENTS][CHANNELS];

// Coefficient and input of scan step s (s counts in scan order; backward scans time in reverse).
float coefficient(uint base, uint s)
{
#if BACKWARD
    uint time = pc.t - 1 - s;
    return time + 1 < pc.t ? F32Buffer(pc.a).v[base + (time + 1) * pc.c] : 0.0;
#else
    return F32Buffer(pc.a).v[base + s * pc.c];
#endif
}

float stepInput(uint base, uint s)
{
#if BACKWARD
    return F32Buffer(pc.x).v[base + (pc.t - 1 - s) * pc.c];
#else
    return F32Buffer(pc.x).v[base + s * pc.c];
#endif
}

void main()
{
    uint channel = gl_WorkGroupID.x * CHANNELS + gl_LocalInvocationID.x;
    uint batch = gl_WorkGroupID.y;
    uint segment = gl_LocalInvocationID.y;
    bool valid = channel < pc.c;
    uint base = batch * pc.t * pc.c + channel;              // element (batch, 0, channel)
    uint length = (pc.t + SEGMENTS - 1) / SEGMENTS;
    uint first = min(segment * length, pc.t), last = min(first + length, pc.t);

    float product = 1.0, value = 0.0;
    if (valid)
        for (uint s = first; s < last; s++)
        {
            float coef = coefficient(base, s);
            value = coef * value + stepInput(base, s);
            product *= coef;
        }
    segmentProduct[segment][gl_LocalInvocationID.x] = product;
    segmentEnd[segment][gl_LocalInvocationID.x] = value;
    barrier();
    if (segment == 0 && valid)
    {
#if BACKWARD
        float carry = 0.0;
#else
        float carry = pc.h0 != 0 ? F32Buffer(pc.h0).v[batch * pc.c + channel] : 0.0;
#endif
        for (uint s = 0; s < SEGMENTS; s++)
        {
            float end = segmentEnd[s][gl_LocalInvocationID.x] + segmentProduct[s][gl_LocalInvocationID.x] * carry;
            segmentEnd[s][gl_LocalInvocationID.x] = carry;   // now: the carry into segment s
            carry = end;
        }
    }
    barrier();
    if (!valid) return;
    float carry = segmentEnd[segment][gl_LocalInvocationID.x];
    for (uint s = first; s < last; s++)
    {
        carry = coefficient(base, s) * carry + stepInput(base, s);
#if BACKWARD
        uint time = pc.t - 1 - s;
        uint at = base + time * pc.c;
        F32Buffer(pc.dx).v[at] = carry;
        float previous = time > 0 ? F32Buffer(pc.h).v[at - pc.c] : (pc.h0 != 0 ? F32Buffer(pc.h0).v[batch * pc.c + channel] : 0.0);
        F32Buffer(pc.da).v[at] = carry * previous;
        if (time == 0 && pc.dh0 != 0) F32Buffer(pc.dh0).v[batch * pc.c + channel] = F32Buffer(pc.a).v[at] * carry;
#else
        F32Buffer(pc.h).v[base + s * pc.c] = carry;
#endif
    }
}
