#version 460
// Elementwise f32 ops, one kernel with the op chosen by a specialization constant:
//   OP_ADD       y = a + b
//   OP_MULTIPLY  y = a * b
//   OP_SCALE     y = alpha a + beta y   (beta == 0: y is not read)
//   OP_ACTIVATE  y = f(a)
//   OP_ACTIVATE_BACKWARD  y = f'(a) * b  (b = dy)
//   OP_FILL      y = alpha
//   OP_BROADCAST_LAST  y[r, j] = a[r] for j < cols (backward of the last-axis sum)
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"
#include "activations.glsl"
#include "grid.glsl"

#define OP_ADD 0
#define OP_MULTIPLY 1
#define OP_SCALE 2
#define OP_ACTIVATE 3
#define OP_ACTIVATE_BACKWARD 4
#define OP_FILL 5
#define OP_BROADCAST_LAST 6

layout(local_size_x = 256) in;
layout(constant_id = 0) const uint OP = 0;
layout(constant_id = 1) const uint ACTIVATION = 0;

layout(push_constant) uniform Push
{
    F32Buffer a;
    F32Buffer b;
    F32Buffer y;
    uint n;
    uint cols;
    float alpha;
    float beta;
} pc;

void main()
{
    GRID_LOOP(i, pc.n)
    {
        float r;
        switch (OP)
        {
            case OP_ADD: r = pc.a.v[i] + pc.b.v[i]; break;
            case OP_MULTIPLY: r = pc.a.v[i] * pc.b.v[i]; break;
            case OP_SCALE: r = pc.alpha * pc.a.v[i] + (pc.beta == 0.0 ? 0.0 : pc.beta * pc.y.v[i]); break;
            case OP_ACTIVATE: r = activate(ACTIVATION, pc.a.v[i]); break;
            case OP_ACTIVATE_BACKWARD: r = activateDerivative(ACTIVATION, pc.a.v[i]) * pc.b.v[i]; break;
            case OP_FILL: r = pc.alpha; break;
            default: r = pc.a.v[i / pc.cols]; break;
        }
        pc.y.v[i] = r;
    }
}
