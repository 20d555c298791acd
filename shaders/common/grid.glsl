// Elementwise kernels cover n elements with a grid-stride loop, so any n fits in the dispatch
// limits: the host launches min(ceil(n / 256), 65535) groups of 256 invocations.
#define GRID_LOOP(i, n) for (uint i = gl_GlobalInvocationID.x; i < (n); i += gl_NumWorkGroups.x * gl_WorkGroupSize.x)
