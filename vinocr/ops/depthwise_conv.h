// Depthwise 2-D convolution kernels (float32, NCHW, multiplier 1): forward, grad input, grad
// weight, grad bias. Pure C++ (no Paddle headers) so the kernels can be tested on their own;
// depthwise_conv.cc registers them as a Paddle custom operator.
//
// Layout of the work: every (n, c) plane is independent in the forward pass and in grad input,
// so OpenMP splits the N*C planes across threads; grad weight/bias are accumulated per thread
// (in double) and reduced in thread order afterwards, so results are deterministic for a given
// thread count.
//
// Per plane, the input is copied into a zero-padded, thread-local buffer. A width stride of 2 is
// handled by splitting each padded row into its even and odd columns ("phases"), so that every
// tap reads contiguous memory: x_pad[r][2q + ph] is stored at P[ph][r][q]. Inner loops work on
// 8-float vectors written with GCC vector extensions, which the compiler lowers to AVX2/FMA when
// built with -mavx2 -mfma and to SSE pairs otherwise (no ISA-specific intrinsics).
//
//   forward    out[oh][ow] = b + sum_{kh,kw} w[kh][kw] * x_pad[oh*sh + kh][ow*sw + kw]
//   grad x     stride 1: the forward kernel on gy padded by K-1-p with the flipped kernel;
//              strided: for each gy row, add its width-correlation into K rows of a padded
//              grad buffer (one read-modify-write per row and phase), then un-pad.
//   grad w     gw[kh][kw] = sum_{n,oh,ow} gy[oh][ow] * x_pad[oh*sh + kh][ow*sw + kw]
//   grad b     gb = sum gy
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace vinocr_dw {

constexpr int VL = 8;     // floats per vector
constexpr int KMAX = 15;  // largest kernel size of the generic (non-specialised) path

typedef float vf __attribute__((vector_size(32)));
typedef float vfu __attribute__((vector_size(32), aligned(4), __may_alias__));

static inline vf ld(const float* p) { return *reinterpret_cast<const vfu*>(p); }
static inline void st(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
static inline vf bc(float s) { return vf{s, s, s, s, s, s, s, s}; }
static inline float hsum(vf v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
static inline void st_partial(float* p, vf v, int n) {
  if (n >= VL) {
    st(p, v);
  } else {
    float tmp[VL];
    st(tmp, v);
    std::memcpy(p, tmp, sizeof(float) * n);
  }
}
static inline int round_up(int v, int m) { return (v + m - 1) / m * m; }

struct Geometry {
  int N, C, H, W, K, sh, sw, ph, pw, Ho, Wo;
  int Hp;      // rows of the padded input (H + 2 ph)
  int Wq;      // row stride of one phase of the padded input (multiple of VL)
  int Wo8;     // Wo rounded up to a whole number of vectors
  int64_t phase_stride;  // floats per phase plane (Hp * Wq)

  Geometry(int n, int c, int h, int w, int k, int sh_, int sw_, int ph_, int pw_)
      : N(n), C(c), H(h), W(w), K(k), sh(sh_), sw(sw_), ph(ph_), pw(pw_) {
    Ho = (H + 2 * ph - K) / sh + 1;
    Wo = (W + 2 * pw - K) / sw + 1;
    Hp = H + 2 * ph;
    Wo8 = round_up(Wo, VL);
    const int wp = W + 2 * pw;
    Wq = round_up(std::max((wp + sw - 1) / sw, Wo8 + (K - 1) / sw), VL);
    phase_stride = static_cast<int64_t>(Hp) * Wq;
  }
};

// Copy one H x W plane into the padded phase buffer (borders stay as they are: zero).
template <int SW>
static inline void fill_padded(const float* __restrict src, float* __restrict P,
                               const Geometry& g) {
  for (int r = 0; r < g.H; ++r) {
    const float* s = src + static_cast<int64_t>(r) * g.W;
    float* row = P + static_cast<int64_t>(r + g.ph) * g.Wq;
    if (SW == 1) {
      std::memcpy(row + g.pw, s, sizeof(float) * g.W);
    } else {
      float* even = row;
      float* odd = row + g.phase_stride;
      // padded column j = c + pw goes to phase j & 1, index j >> 1
      for (int c = 0; c < g.W; ++c) {
        const int j = c + g.pw;
        ((j & 1) ? odd : even)[j >> 1] = s[c];
      }
    }
  }
}

// ------------------------------------------------------------------------------------ forward
// One output plane: out[oh][ow] for oh < Ho, ow < Wo, from the padded phase buffer P whose rows
// have stride wq and whose phases are phase_stride apart. KT > 0: kernel size fixed at compile
// time; KT == 0: runtime kernel size k (<= KMAX).
template <int KT, int SW, int NB>
static inline void fwd_block(const float* const* taps, const vf* wv, vf bias, int K, int ow,
                             float* out_row, int Wo) {
  // NB adjacent vectors of one output row; KA accumulator chains per vector (kernel rows
  // alternate between them) so that about 8 independent FMA chains hide the FMA latency.
  constexpr int KA = KT > 0 ? (8 / NB < KT ? (8 / NB > 0 ? 8 / NB : 1) : KT) : 1;
  vf acc[NB][KA];
  for (int b = 0; b < NB; ++b)
    for (int a = 0; a < KA; ++a) acc[b][a] = vf{};
  for (int kh = 0; kh < K; ++kh) {
    const int a = kh % KA;
    for (int kw = 0; kw < K; ++kw) {
      const vf w = wv[kh * K + kw];
      const float* t = taps[kh * K + kw] + ow;
      for (int b = 0; b < NB; ++b) acc[b][a] += w * ld(t + b * VL);
    }
  }
  for (int b = 0; b < NB; ++b) {
    vf s = bias;
    for (int a = 0; a < KA; ++a) s += acc[b][a];
    st_partial(out_row + ow + b * VL, s, Wo - ow - b * VL);
  }
}

template <int KT, int SW>
static void fwd_plane(const float* P, int64_t phase_stride, int wq, int sh, const float* w,
                      float bias, float* out, int Ho, int Wo, int k) {
  const int K = KT > 0 ? KT : k;
  vf wv[(KT > 0 ? KT : KMAX) * (KT > 0 ? KT : KMAX)];
  for (int i = 0; i < K * K; ++i) wv[i] = bc(w[i]);
  const vf vb = bc(bias);
  const float* taps[(KT > 0 ? KT : KMAX) * (KT > 0 ? KT : KMAX)];
  const int nvec = (Wo + VL - 1) / VL;
  for (int oh = 0; oh < Ho; ++oh) {
    for (int kh = 0; kh < K; ++kh) {
      const float* row = P + static_cast<int64_t>(oh * sh + kh) * wq;
      for (int kw = 0; kw < K; ++kw)
        taps[kh * K + kw] = row + (kw % SW) * phase_stride + kw / SW;
    }
    float* out_row = out + static_cast<int64_t>(oh) * Wo;
    int v = 0;
    for (; v + 4 <= nvec; v += 4) fwd_block<KT, SW, 4>(taps, wv, vb, K, v * VL, out_row, Wo);
    for (; v + 2 <= nvec; v += 2) fwd_block<KT, SW, 2>(taps, wv, vb, K, v * VL, out_row, Wo);
    for (; v < nvec; ++v) fwd_block<KT, SW, 1>(taps, wv, vb, K, v * VL, out_row, Wo);
  }
}

// ------------------------------------------------------------------------------- grad weight
// gw[kh][kw] += sum gy[oh][ow] * P[kw % SW][oh*sh + kh][ow + kw / SW], gy rows at G (stride gs)
// with zeros from Wo up to a whole number of vectors.
template <int KT, int SW>
static void gw_plane(const float* P, int64_t phase_stride, int wq, int sh, const float* G,
                     int gs, int Ho, int Wo, int k, double* gw, double* gb) {
  const int K = KT > 0 ? KT : k;
  constexpr int KA = KT > 0 ? KT : KMAX;
  const int nvec = (Wo + VL - 1) / VL;
  vf sb0 = vf{}, sb1 = vf{};
  for (int oh = 0; oh < Ho; ++oh) {
    const float* gr = G + static_cast<int64_t>(oh) * gs;
    int v = 0;
    for (; v + 2 <= nvec; v += 2) {
      sb0 += ld(gr + v * VL);
      sb1 += ld(gr + v * VL + VL);
    }
    if (v < nvec) sb0 += ld(gr + v * VL);
  }
  *gb += hsum(sb0 + sb1);
  for (int kh = 0; kh < K; ++kh) {
    vf acc0[KA], acc1[KA];
    for (int kw = 0; kw < K; ++kw) acc0[kw] = acc1[kw] = vf{};
    for (int oh = 0; oh < Ho; ++oh) {
      const float* gr = G + static_cast<int64_t>(oh) * gs;
      const float* row = P + static_cast<int64_t>(oh * sh + kh) * wq;
      int v = 0;
      for (; v + 2 <= nvec; v += 2) {
        const vf g0 = ld(gr + v * VL), g1 = ld(gr + v * VL + VL);
        for (int kw = 0; kw < K; ++kw) {
          const float* t = row + (kw % SW) * phase_stride + kw / SW + v * VL;
          acc0[kw] += g0 * ld(t);
          acc1[kw] += g1 * ld(t + VL);
        }
      }
      if (v < nvec) {
        const vf g0 = ld(gr + v * VL);
        for (int kw = 0; kw < K; ++kw)
          acc0[kw] += g0 * ld(row + (kw % SW) * phase_stride + kw / SW + v * VL);
      }
    }
    for (int kw = 0; kw < K; ++kw) gw[kh * K + kw] += hsum(acc0[kw] + acc1[kw]);
  }
}

// ------------------------------------------------------------------- grad input, strided case
// gxp[ph][oh*sh + kh][q] += sum_m w[kh][ph + SW*m] * gy[oh][q - m]; G rows hold gy at offset L
// with zeros on both sides (L = (K-1)/SW on the left, up to wq + L on the right).
template <int KT, int SW>
static void gx_strided_plane(float* gxp, int64_t phase_stride, int wq, int sh, const float* w,
                             const float* G, int gs, int L, int Ho, int k) {
  const int K = KT > 0 ? KT : k;
  for (int oh = 0; oh < Ho; ++oh) {
    const float* gr = G + static_cast<int64_t>(oh) * gs + L;
    for (int kh = 0; kh < K; ++kh) {
      for (int ph = 0; ph < SW; ++ph) {
        float* dst = gxp + ph * phase_stride + static_cast<int64_t>(oh * sh + kh) * wq;
        const int M = (K - ph + SW - 1) / SW;
        vf wm[KT > 0 ? KT : KMAX];
        for (int m = 0; m < M; ++m) wm[m] = bc(w[kh * K + ph + SW * m]);
        int q = 0;
        for (; q + 2 * VL <= wq; q += 2 * VL) {
          vf a0 = ld(dst + q), a1 = ld(dst + q + VL);
          for (int m = 0; m < M; ++m) {
            a0 += wm[m] * ld(gr + q - m);
            a1 += wm[m] * ld(gr + q + VL - m);
          }
          st(dst + q, a0);
          st(dst + q + VL, a1);
        }
        for (; q < wq; q += VL) {
          vf a0 = ld(dst + q);
          for (int m = 0; m < M; ++m) a0 += wm[m] * ld(gr + q - m);
          st(dst + q, a0);
        }
      }
    }
  }
}

// ----------------------------------------------------------------------------- whole tensors
template <int KT, int SW>
static void forward_impl(const float* x, const float* w, const float* b, float* y,
                         const Geometry& g, int nthreads) {
  const int64_t planes = static_cast<int64_t>(g.N) * g.C;
  const int64_t in_sz = static_cast<int64_t>(g.H) * g.W, out_sz = static_cast<int64_t>(g.Ho) * g.Wo;
  const int KK = g.K * g.K;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<float> P(static_cast<size_t>(g.phase_stride * SW + VL), 0.f);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
      const int c = static_cast<int>(i % g.C);
      fill_padded<SW>(x + i * in_sz, P.data(), g);
      fwd_plane<KT, SW>(P.data(), g.phase_stride, g.Wq, g.sh, w + c * KK, b ? b[c] : 0.f,
                        y + i * out_sz, g.Ho, g.Wo, g.K);
    }
  }
}

template <int KT, int SW>
static void backward_impl(const float* x, const float* w, const float* gy, float* gx,
                          float* gw, float* gb, const Geometry& g, int nthreads) {
  const int64_t planes = static_cast<int64_t>(g.N) * g.C;
  const int64_t in_sz = static_cast<int64_t>(g.H) * g.W, out_sz = static_cast<int64_t>(g.Ho) * g.Wo;
  const int K = g.K, KK = K * K;
  const bool unit = g.sh == 1 && SW == 1;
  // Stride 1: gy padded by (K-1-p) on every side, read by the forward kernel (flipped weights).
  // Strided: gy rows with L zeros on the left, read by gx_strided_plane.
  const int qh = K - 1 - g.ph, qw = K - 1 - g.pw;
  const int L = (K - 1) / SW;
  const int g_rows = unit ? g.Ho + 2 * qh : g.Ho;
  const int g_off_w = unit ? qw : L;
  const int gs = unit ? round_up(std::max(g.Wo + 2 * qw, g.W + K - 1) + VL, VL)
                      : round_up(L + g.Wq + VL, VL);
  const int64_t g_row0 = unit ? qh : 0;
  std::vector<float> wflip(static_cast<size_t>(g.C) * KK);
  for (int c = 0; c < g.C; ++c)
    for (int i = 0; i < KK; ++i) wflip[c * KK + i] = w[c * KK + (KK - 1 - i)];
  std::vector<std::vector<double>> acc(nthreads);
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
    std::vector<double>& mine = acc[tid];
    mine.assign(static_cast<size_t>(g.C) * (KK + 1), 0.0);
    std::vector<float> P(static_cast<size_t>(g.phase_stride * SW + VL), 0.f);
    std::vector<float> G(static_cast<size_t>(g_rows) * gs + VL, 0.f);
    std::vector<float> GX(unit ? 0 : static_cast<size_t>(g.phase_stride * SW + VL), 0.f);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < planes; ++i) {
      const int c = static_cast<int>(i % g.C);
      fill_padded<SW>(x + i * in_sz, P.data(), g);
      const float* src = gy + i * out_sz;
      float* g0 = G.data() + g_row0 * gs + g_off_w;
      for (int oh = 0; oh < g.Ho; ++oh)
        std::memcpy(g0 + static_cast<int64_t>(oh) * gs, src + static_cast<int64_t>(oh) * g.Wo,
                    sizeof(float) * g.Wo);
      gw_plane<KT, SW>(P.data(), g.phase_stride, g.Wq, g.sh, g0, gs, g.Ho, g.Wo, K,
                       mine.data() + static_cast<size_t>(c) * KK,
                       mine.data() + static_cast<size_t>(g.C) * KK + c);
      float* dst = gx + i * in_sz;
      if (unit) {
        fwd_plane<KT, 1>(G.data(), 0, gs, 1, wflip.data() + c * KK, 0.f, dst, g.H, g.W, K);
      } else {
        std::fill(GX.begin(), GX.end(), 0.f);
        gx_strided_plane<KT, SW>(GX.data(), g.phase_stride, g.Wq, g.sh, w + c * KK,
                                 G.data(), gs, L, g.Ho, K);
        for (int r = 0; r < g.H; ++r) {
          const float* row = GX.data() + static_cast<int64_t>(r + g.ph) * g.Wq;
          float* o = dst + static_cast<int64_t>(r) * g.W;
          if (SW == 1) {
            std::memcpy(o, row + g.pw, sizeof(float) * g.W);
          } else {
            for (int cc = 0; cc < g.W; ++cc) {
              const int j = cc + g.pw;
              o[cc] = row[(j & 1) * g.phase_stride + (j >> 1)];
            }
          }
        }
      }
    }
  }
  // Deterministic reduction in thread order.
  const size_t n = static_cast<size_t>(g.C) * (KK + 1);
  std::vector<double> total(n, 0.0);
  for (int t = 0; t < nthreads; ++t)
    if (!acc[t].empty())
      for (size_t j = 0; j < n; ++j) total[j] += acc[t][j];
  for (int c = 0; c < g.C; ++c) {
    for (int i = 0; i < KK; ++i) gw[c * KK + i] = static_cast<float>(total[c * KK + i]);
    if (gb) gb[c] = static_cast<float>(total[static_cast<size_t>(g.C) * KK + c]);
  }
}

// Dispatch on kernel size (3, 5 specialised; any other odd size up to KMAX generic) and width
// stride (1 or 2).
template <int SW>
static void forward_k(const float* x, const float* w, const float* b, float* y,
                      const Geometry& g, int nthreads) {
  if (g.K == 3) forward_impl<3, SW>(x, w, b, y, g, nthreads);
  else if (g.K == 5) forward_impl<5, SW>(x, w, b, y, g, nthreads);
  else forward_impl<0, SW>(x, w, b, y, g, nthreads);
}

static void forward(const float* x, const float* w, const float* b, float* y, const Geometry& g,
                    int nthreads) {
  if (g.sw == 1) forward_k<1>(x, w, b, y, g, nthreads);
  else forward_k<2>(x, w, b, y, g, nthreads);
}

template <int SW>
static void backward_k(const float* x, const float* w, const float* gy, float* gx, float* gw,
                       float* gb, const Geometry& g, int nthreads) {
  if (g.K == 3) backward_impl<3, SW>(x, w, gy, gx, gw, gb, g, nthreads);
  else if (g.K == 5) backward_impl<5, SW>(x, w, gy, gx, gw, gb, g, nthreads);
  else backward_impl<0, SW>(x, w, gy, gx, gw, gb, g, nthreads);
}

static void backward(const float* x, const float* w, const float* gy, float* gx, float* gw,
                     float* gb, const Geometry& g, int nthreads) {
  if (g.sw == 1) backward_k<1>(x, w, gy, gx, gw, gb, g, nthreads);
  else backward_k<2>(x, w, gy, gx, gw, gb, g, nthreads);
}

}  // namespace vinocr_dw
