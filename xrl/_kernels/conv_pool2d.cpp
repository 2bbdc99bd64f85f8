// Fused 2-d convolution (stride 1, zero padding) + max-pooling (kernel = stride = P, floor) + optional ReLU.
// Layouts are NHWC (channels innermost): input [N][H][W][Cin], weight [KH][KW][Cin][Cout], output [N][HO][WO][Cout].
// Only the conv positions the pooling reads are computed, and the conv output never leaves the cache: for small CNNs
// the unfused version is memory-bound (see xrl/_kernels/__init__.py for the measured figures).
#include <stddef.h>
#include <string.h>
#include <vector>

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
static inline v8 ld(const float *p) { return *(const v8u *)p; }
static inline void st(float *p, v8 v) { *(v8u *)p = v; }
// max; with SAFE, NaN-propagating as torch's (one more compare: 20% slower for the classifier's first block, so it only
// runs for images or weights that hold a NaN or an infinity)
template <bool SAFE> static inline v8 vmax(v8 a, v8 b) { return (SAFE ? (a > b) | (a != a) : a > b) ? a : b; }

static bool finite(const float *p, size_t n)  // x - x is 0, or NaN for NaN and +-inf; NaN survives the sums
{
    v8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        v8 x0 = ld(p + i), x1 = ld(p + i + 8), x2 = ld(p + i + 16), x3 = ld(p + i + 24);
        a0 += x0 - x0, a1 += x1 - x1, a2 += x2 - x2, a3 += x3 - x3;
    }
    v8 a = a0 + a1 + a2 + a3;
    float rest = 0.0f;
    for (; i < n; ++i) rest += p[i] - p[i];
    for (int j = 0; j < 8; ++j) rest += a[j];
    return rest == 0.0f;
}
#if defined(__x86_64__) && defined(__AVX__)
#define PIN(v) __asm__("" : "+x"(v))  // keep weights in registers: folding their loads into the FMAs costs loads
#else
#define PIN(v) (void)0
#endif

// One image: its zero-padded input `buf` [HB][WB][Cin] -> its output `oi` [HO][WO][Cout]. R conv positions (along
// a row) x COB * 8 output channels are accumulated in registers at a time.
template <int R, int COB, bool SAFE>
static void image(const float *__restrict__ buf, const float *__restrict__ wb, const float *__restrict__ b,
                  float *__restrict__ oi, float *__restrict__ row, const int *__restrict__ off, int Cout, int K, int WB,
                  int Cin, int P, int HO, int WO, int XC, int relu)
{
    const int CB = COB * 8;
    for (int cb = 0; cb < Cout; cb += CB) {
        v8 bias[COB];
        for (int j = 0; j < COB; ++j) bias[j] = ld(b + cb + 8 * j);
        for (int oy = 0; oy < HO; ++oy) {
            for (int py = 0; py < P; ++py) {  // conv rows of this pooling window; their max is kept in `row`
                const float *src = &buf[(size_t)(oy * P + py) * WB * Cin];
                for (int x0 = 0; x0 < XC; x0 += R) {
                    v8 acc[R][COB];
                    for (int r = 0; r < R; ++r)
                        for (int j = 0; j < COB; ++j) acc[r][j] = bias[j];
                    const float *s = src + (size_t)x0 * Cin;
                    const float *wk = &wb[(size_t)cb * K];
                    for (int k = 0; k < K; ++k, wk += CB) {
                        v8 wv[COB];
                        for (int j = 0; j < COB; ++j) { wv[j] = ld(wk + 8 * j); PIN(wv[j]); }
                        const float *sk = s + off[k];
                        for (int r = 0; r < R; ++r) {
                            float v = sk[r * Cin];
                            for (int j = 0; j < COB; ++j) acc[r][j] += v * wv[j];
                        }
                    }
                    float *rw = &row[(size_t)x0 * CB];
                    for (int r = 0; r < R; ++r)
                        for (int j = 0; j < COB; ++j) {
                            float *p = rw + (r * COB + j) * 8;
                            st(p, py ? vmax<SAFE>(ld(p), acc[r][j]) : acc[r][j]);
                        }
                }
            }
            for (int ox = 0; ox < WO; ++ox)
                for (int j = 0; j < COB; ++j) {
                    v8 m = ld(&row[(size_t)ox * P * CB + j * 8]);
                    for (int px = 1; px < P; ++px) m = vmax<SAFE>(m, ld(&row[((size_t)ox * P + px) * CB + j * 8]));
                    if (relu) m = vmax<SAFE>(m, v8{});  // v8{}: zeros (m - m is NaN for an infinite m)
                    st(oi + ((size_t)oy * WO + ox) * Cout + cb + j * 8, m);
                }
        }
    }
}

// Images n0..n1-1 of the batch.
template <int R, int COB>
static void run(const float *__restrict__ x, const float *__restrict__ w, const float *__restrict__ b,
                float *__restrict__ out, int n0, int n1, int H, int W, int Cin, int Cout, int KH, int KW, int PT,
                int PL, int P, int HO, int WO, int relu)
{
    const int XC = (WO * P + R - 1) / R * R;        // conv columns computed (rounded up to groups of R)
    const int HB = HO * P + KH - 1, WB = XC + KW - 1; // rows and columns of the zero-padded input that are read
    const int K = KH * KW * Cin, CB = COB * 8;
    std::vector<float> buf((size_t)HB * WB * Cin), row((size_t)XC * CB);
    std::vector<int> off(K);
    std::vector<float> wb((size_t)K * Cout);  // weights regrouped per block of CB output channels: contiguous streams
    for (int cb = 0; cb < Cout; cb += CB)
        for (int k = 0; k < K; ++k)
            memcpy(&wb[(size_t)cb * K + (size_t)k * CB], w + (size_t)k * Cout + cb, sizeof(float) * CB);
    const bool finite_w = finite(w, (size_t)K * Cout) && finite(b, Cout);
    for (int ky = 0, k = 0; ky < KH; ++ky)
        for (int kx = 0; kx < KW; ++kx)
            for (int ci = 0; ci < Cin; ++ci, ++k) off[k] = (ky * WB + kx) * Cin + ci;
    for (int n = n0; n < n1; ++n) {
        const float *xi = x + (size_t)n * H * W * Cin;
        float *oi = out + (size_t)n * HO * WO * Cout;
        memset(buf.data(), 0, sizeof(float) * buf.size());
        int cols = W < WB - PL ? W : WB - PL;
        for (int y = 0; y < HB && cols > 0; ++y) {
            int sy = y - PT;
            if (sy >= 0 && sy < H)
                memcpy(&buf[((size_t)y * WB + PL) * Cin], xi + (size_t)sy * W * Cin, sizeof(float) * cols * Cin);
        }
        const float *bi = buf.data();
        (finite_w && finite(bi, buf.size()) ? image<R, COB, false> : image<R, COB, true>)(
            bi, wb.data(), b, oi, row.data(), off.data(), Cout, K, WB, Cin, P, HO, WO, XC, relu);
    }
}

// The whole batch; `threads` > 1 splits its images across an OpenMP team (built against the OpenMP runtime torch
// loaded, so the team is torch's own: a second runtime's threads would spin against torch's for the same cores).
// Returns 0, or -1 if Cout % 8 != 0.
extern "C" int xrl_conv_pool2d(const float *x, const float *w, const float *b, float *out, int N, int H, int W,
                               int Cin, int Cout, int KH, int KW, int PT, int PL, int P, int HO, int WO, int relu,
                               int threads)
{
    typedef void (*kernel)(const float *, const float *, const float *, float *, int, int, int, int, int, int, int,
                           int, int, int, int, int, int, int);
    kernel f = Cout % 32 == 0 ? run<2, 4> : Cout % 16 == 0 ? run<4, 2> : Cout % 8 == 0 ? run<8, 1> : (kernel)0;
    if (!f) return -1;
    if (threads > N) threads = N;
    if (threads < 1) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int t = 0; t < threads; ++t)
        f(x, w, b, out, (int)((long)N * t / threads), (int)((long)N * (t + 1) / threads), H, W, Cin, Cout, KH, KW,
          PT, PL, P, HO, WO, relu);
    return 0;
}
