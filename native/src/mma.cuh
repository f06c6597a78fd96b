// Warp-level tensor-core primitives (sm_80 and later): asynchronous copies into shared memory, ldmatrix and the
// bf16 m16n8k16 MMA with fp32 accumulation.
//
// Fragment layouts (g = lane / 4, t = lane % 4):
//   A (16 x 16, row-major)   a[0]: (g, 2t..2t+1)  a[1]: (g + 8, 2t..)  a[2]: (g, 2t + 8..)  a[3]: (g + 8, 2t + 8..)
//   B (16 x 8, k x n)        b[0]: (k 2t..2t+1, n g)  b[1]: (k 2t + 8.., n g)
//   C (16 x 8, fp32)         c[0]: (g, 2t)  c[1]: (g, 2t + 1)  c[2]: (g + 8, 2t)  c[3]: (g + 8, 2t + 1)
// One MMA computes each output element from its own row of A and column of B only, so a row's result never depends
// on the other rows of its tile: kernels whose K loop runs in the same order give the same bits whatever the tile.
#pragma once

#include "common.cuh"

namespace rr {

__device__ __forceinline__ unsigned smem_address(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }

// 16 bytes from global to shared memory; zero-fills the destination when !valid (the source is not read).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)), "l"(gmem), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 bf16 matrices; lane i gives the address of row i % 8 of matrix i / 8.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(smem)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(smem)));
}

__device__ __forceinline__ void ldmatrix_x2(unsigned (&r)[2], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(smem_address(smem)));
}

// c += a . b
__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two fp32 values as one register of two bf16 (the first in the low half), rounded to nearest even.
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
}

// Row-major tile addressing for ldmatrix: the lane's row and column offsets (in elements) of an A fragment (16 x 16)
// and of a pair of B fragments (two n8 tiles, k16) whose rows are n and columns k.
__device__ __forceinline__ int a_frag_row(int lane) { return lane & 15; }
__device__ __forceinline__ int a_frag_col(int lane) { return (lane >> 4) << 3; }
__device__ __forceinline__ int b_frag_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
__device__ __forceinline__ int b_frag_col(int lane) { return ((lane >> 3) & 1) << 3; }

}  // namespace rr
