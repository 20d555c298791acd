// X_dd = (I + L_dd)^-1 for one 16 x 16 unit lower triangular block, in one subgroup of 32 with no
// workgroup barrier (triangular_inverse.glsl's stage 1 in the tensor-core builds,
// chunk_wy_fragments.comp). Lane l holds column c = l % 16 of rows r = l / 16 + 2 m (m < 8), y[m].
// Column-oriented forward substitution: row r of X_dd is e_r - sum_{s<r} L_dd[r][s] X_dd[s], so
//   invariant (before step s): y holds row r of X_dd for r <= s, and e_r - sum_{s'<s} L_dd[r][s'] X_dd[s']
//   for r > s;
// step s takes row s (y[s / 2] of lane 16 (s % 2) + c) through a shuffle and subtracts L_dd[r][s] X_dd[s]
// from every row r > s. (X_dd[s][c] = 0 for c > s and 1 at c = s, so y keeps the zeros above the
// diagonal and the 1 on it.) L_AT(r, s) reads L_dd[r][s] (f32); it is read only below the diagonal.
#extension GL_KHR_shader_subgroup_shuffle : require

#define SUBGROUP_FORWARD_SUBSTITUTION(y, c, r0, L_AT) \
    [[unroll]] for (uint m = 0; m < 8; m++) y[m] = r0 + 2 * m == c ? 1.0 : 0.0; \
    [[unroll]] for (uint s = 0; s < 16; s++) \
    { \
        float rowS = subgroupShuffle(y[s / 2], 16 * (s % 2) + c); \
        [[unroll]] for (uint m = 0; m < 8; m++) \
        { \
            uint r = r0 + 2 * m; \
            if (r > s) y[m] = fma(-L_AT(r, s), rowS, y[m]); \
        } \
    }
