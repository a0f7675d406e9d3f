/* Compiled kernels for the vitals monitor's tick: `close_block`, the screening half of `test_block`, the loop and
 * the ring scatter of `_flush` (codeblue/signals/detect.py, windows.py and pipeline.py hold the numpy and Python
 * implementations, which stay the reference and the fallback when this module is not built), and replay's line
 * path (below).
 *
 * At the library's density a tick works on a few dozen rows, where numpy's per-call overhead (about 1 us per
 * call, 40-odd calls per block) is most of the cost; the same arithmetic as plain loops costs a few
 * microseconds. Every operation is the numpy code's elementwise operation in the same order, in IEEE double
 * (the build passes -ffp-contract=off, so nothing is fused), except log(): numpy's SIMD log and the C
 * library's may differ in the last bit, so the CUSUM sums and the Chernoff screen can differ from the numpy
 * path by an ulp (the tests compare them with a tolerance of 1e-12 and every verdict exactly).
 *
 * Arrays arrive through the buffer protocol (C-contiguous numpy arrays); every length is checked against the
 * shape the caller states, so a wrong call raises ValueError instead of reading out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_NI 32
#define MAX_NC 64
#define MAX_W 16

/* Layout, set once by setup(): ring length, counters per bucket, indicators and their counters. */
static Py_ssize_t FN = 0, NC = 0, NI = 0;
static int NUM[MAX_NI], DEN[MAX_NI];
static char JUDGED[MAX_NI];

static int64_t pymod(int64_t a, int64_t m) { int64_t r = a % m; return r < 0 ? r + m : r; }
static int64_t pydiv(int64_t a, int64_t m) { int64_t q = a / m; return (a % m != 0 && ((a < 0) != (m < 0))) ? q - 1 : q; }
/* numpy's maximum / minimum: NaN propagates from either side. */
static double np_max(double a, double b) { return (a != a) ? a : (b != b) ? b : (a >= b ? a : b); }
static double np_min(double a, double b) { return (a != a) ? a : (b != b) ? b : (a <= b ? a : b); }

static int need(Py_buffer *b, Py_ssize_t items, Py_ssize_t itemsize, const char *name) {
    if (b->len < items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, need at least %zd", name, b->len, items * itemsize);
        return 0;
    }
    return 1;
}

static int int_list(PyObject *seq, int *out, Py_ssize_t max, const char *name) {
    PyObject *fast = PySequence_Fast(seq, name);
    if (fast == NULL) return -1;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    if (k > max) { Py_DECREF(fast); PyErr_Format(PyExc_ValueError, "%s: at most %zd items", name, max); return -1; }
    for (Py_ssize_t j = 0; j < k; j++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, j));
        if (v == -1 && PyErr_Occurred()) { Py_DECREF(fast); return -1; }
        out[j] = (int)v;
    }
    Py_DECREF(fast);
    return (int)k;
}

static PyObject *setup(PyObject *self, PyObject *args) {
    Py_ssize_t fn, nc;
    PyObject *num, *den, *judged;
    if (!PyArg_ParseTuple(args, "nnOOO", &fn, &nc, &num, &den, &judged)) return NULL;
    int judged_i[MAX_NI];
    int a = int_list(num, NUM, MAX_NI, "num"), b = int_list(den, DEN, MAX_NI, "den");
    int c = int_list(judged, judged_i, MAX_NI, "judged");
    if (a < 0 || b < 0 || c < 0) return NULL;
    if (a != b || a != c || fn <= 0 || nc <= 0 || nc > MAX_NC) {
        PyErr_SetString(PyExc_ValueError, "setup: inconsistent layout");
        return NULL;
    }
    for (int i = 0; i < a; i++) {
        if (NUM[i] < 0 || NUM[i] >= nc || DEN[i] < 0 || DEN[i] >= nc) {
            PyErr_SetString(PyExc_ValueError, "setup: counter index out of range");
            return NULL;
        }
        JUDGED[i] = (char)(judged_i[i] != 0);
    }
    FN = fn; NC = nc; NI = a;
    Py_RETURN_NONE;
}

/* close_block(fine, fine_ids, bnum, bden, learn_b, cusum, hold, n, first, close_to, decay, memory_events,
 *             cusum_ratio, min_baseline): fold fine buckets first..close_to of rows 0..n-1 into the baselines
 * (indicators not held, buckets from the row's learn_b on) and step the CUSUMs. */
static PyObject *close_block(PyObject *self, PyObject *args) {
    Py_buffer fine, ids, bnum, bden, learn, cusum, hold;
    Py_ssize_t n;
    long long first, close_to;
    double decay, memory, ratio, min_baseline;
    if (!PyArg_ParseTuple(args, "y*y*w*w*y*w*y*nLLdddd", &fine, &ids, &bnum, &bden, &learn, &cusum, &hold, &n,
                          &first, &close_to, &decay, &memory, &ratio, &min_baseline))
        return NULL;
    PyObject *result = NULL;
    if (NI == 0) { PyErr_SetString(PyExc_RuntimeError, "setup() was not called"); goto done; }
    if (!need(&fine, n * FN * NC, 4, "fine") || !need(&ids, n * FN, 4, "fine_ids") || !need(&bnum, n * NI, 8, "bnum")
        || !need(&bden, n * NI, 8, "bden") || !need(&learn, n, 8, "learn_b") || !need(&cusum, n * NI, 8, "cusum")
        || !need(&hold, n * NI, 1, "hold"))
        goto done;
    {
        const int32_t *F = fine.buf, *I = ids.buf;
        const int64_t *L = learn.buf;
        const char *H = hold.buf;
        double *BN = bnum.buf, *BD = bden.buf, *CU = cusum.buf;
        for (long long b = first; b <= close_to; b++) {
            int64_t slot = pymod(b, FN);
            for (Py_ssize_t r = 0; r < n; r++) {
                double okf = (I[r * FN + slot] == b) ? 1.0 : 0.0;
                const int32_t *cnt = F + (r * FN + slot) * NC;
                int learn_row = L[r] <= b;
                for (Py_ssize_t i = 0; i < NI; i++) {
                    Py_ssize_t c = r * NI + i;
                    double x = (double)cnt[NUM[i]] * okf, m = (double)cnt[DEN[i]] * okf;
                    int keep = !H[c] && learn_row;
                    double dd = BN[c] >= memory ? decay : 1.0;
                    BN[c] = BN[c] * dd;
                    BN[c] = BN[c] + (keep ? x : 0.0);
                    BD[c] = BD[c] * dd;
                    BD[c] = BD[c] + (keep ? m : 0.0);
                    double p0 = (BN[c] + 0.5) / (BD[c] + 1.0);
                    p0 = np_min(np_max(p0, 1e-6), 0.45);
                    double p1 = p0 * ratio;
                    double llr = x * log(p1 / p0) + (m - x) * log((1.0 - p1) / (1.0 - p0));
                    double s = CU[c] + ((BD[c] >= min_baseline && JUDGED[i]) ? llr : 0.0);
                    CU[c] = np_max(0.0, s);
                }
            }
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&fine); PyBuffer_Release(&ids); PyBuffer_Release(&bnum); PyBuffer_Release(&bden);
    PyBuffer_Release(&learn); PyBuffer_Release(&cusum); PyBuffer_Release(&hold);
    return result;
}

/* screen(fine, fine_ids, bnum, bden, firing, hold, cusum, last_b, n, eval_b, windows, ratios, min_count,
 *        min_q_log, cusum_h, X, N, P0) -> (cells, cusum_cells)
 *
 * For every active row r (last_b[r] > eval_b - FN) of rows 0..n-1: the window sums X[r, w, i], N[r, w, i]
 * (numerators and denominators over the buckets whose age is in [0, windows[w])), the baseline rate P0[r, i];
 * hold[r, i] = firing[r, i]; the candidate cells (at least min_count bad events, a rate at least ratio x the
 * inflated baseline, n > 0, not firing) that pass the Chernoff screen n KL(x/n || p) > min_q_log, as
 * (r, w, i, x, n, p) in (row, window, indicator) order; and the cells whose CUSUM exceeds cusum_h, as (r, i).
 * Rows not active are left alone (their X, N and P0 entries are not written). */
static PyObject *screen(PyObject *self, PyObject *args) {
    Py_buffer fine, ids, bnum, bden, firing, hold, cusum, lastb, ratios, Xb, Nb, Pb;
    Py_ssize_t n;
    long long eval_b;
    PyObject *windows;
    double min_count, chernoff, cusum_h;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*y*y*nLOy*dddw*w*w*", &fine, &ids, &bnum, &bden, &firing, &hold, &cusum,
                          &lastb, &n, &eval_b, &windows, &ratios, &min_count, &chernoff, &cusum_h, &Xb, &Nb, &Pb))
        return NULL;
    PyObject *result = NULL, *cells = NULL, *cus = NULL;
    int W[MAX_W];
    int nw = int_list(windows, W, MAX_W, "windows");
    if (nw < 0) goto done;
    if (NI == 0) { PyErr_SetString(PyExc_RuntimeError, "setup() was not called"); goto done; }
    if (!need(&fine, n * FN * NC, 4, "fine") || !need(&ids, n * FN, 4, "fine_ids") || !need(&bnum, n * NI, 8, "bnum")
        || !need(&bden, n * NI, 8, "bden") || !need(&firing, n * NI, 1, "firing") || !need(&hold, n * NI, 1, "hold")
        || !need(&cusum, n * NI, 8, "cusum") || !need(&lastb, n, 8, "last_b") || !need(&ratios, NI, 8, "ratios")
        || !need(&Xb, n * nw * NI, 8, "X") || !need(&Nb, n * nw * NI, 8, "N") || !need(&Pb, n * NI, 8, "P0"))
        goto done;
    cells = PyList_New(0);
    cus = PyList_New(0);
    if (cells == NULL || cus == NULL) goto done;
    {
        const int32_t *F = fine.buf, *I = ids.buf;
        const double *BN = bnum.buf, *BD = bden.buf, *CU = cusum.buf, *R = ratios.buf;
        const char *FI = firing.buf;
        char *H = hold.buf;
        const int64_t *LB = lastb.buf;
        double *X = Xb.buf, *N = Nb.buf, *P = Pb.buf;
        int64_t sums[MAX_W * MAX_NC], bins[MAX_W * MAX_NC];  /* [window][counter], nw x NC used */
        double p0u[MAX_NI];
        /* The windows by length (insertion sort, stable), and for each window the last sorted position whose
         * length does not exceed it: a bucket is counted once, in the bin of the shortest window holding it,
         * and a window's sum is the bins up to that position. */
        uint32_t len_sorted[MAX_W];
        int upto[MAX_W];
        for (int w = 0; w < nw; w++) {
            uint32_t v = (uint32_t)W[w];
            int j = w;
            while (j > 0 && len_sorted[j - 1] > v) { len_sorted[j] = len_sorted[j - 1]; j--; }
            len_sorted[j] = v;
        }
        for (int w = 0; w < nw; w++) {
            upto[w] = -1;
            for (int j = 0; j < nw; j++) if (len_sorted[j] <= (uint32_t)W[w]) upto[w] = j;
        }
        uint32_t longest = nw ? len_sorted[nw - 1] : 0;
        for (Py_ssize_t r = 0; r < n; r++) {
            if (LB[r] <= eval_b - FN) continue;  /* idle for the whole ring */
            memset(bins, 0, (size_t)(nw * NC) * sizeof(int64_t));
            for (Py_ssize_t s = 0; s < FN; s++) {
                uint32_t age = (uint32_t)(int32_t)(eval_b - (long long)I[r * FN + s]);
                if (age >= longest) continue;
                int j = 0;
                while (age >= len_sorted[j]) j++;
                const int32_t *cnt = F + (r * FN + s) * NC;
                int64_t *bin = bins + j * NC;
                if (NC == 15) {  /* the layout of indicators.py: a fixed-length loop the compiler vectorises */
                    for (int k = 0; k < 15; k++) bin[k] += cnt[k];
                } else {
                    for (Py_ssize_t k = 0; k < NC; k++) bin[k] += cnt[k];
                }
            }
            for (int j = 1; j < nw; j++)
                for (Py_ssize_t k = 0; k < NC; k++) bins[j * NC + k] += bins[(j - 1) * NC + k];
            for (int w = 0; w < nw; w++) {
                if (upto[w] < 0) memset(sums + w * NC, 0, (size_t)NC * sizeof(int64_t));
                else memcpy(sums + w * NC, bins + upto[w] * NC, (size_t)NC * sizeof(int64_t));
            }
            for (Py_ssize_t i = 0; i < NI; i++) {
                Py_ssize_t c = r * NI + i;
                double p0 = (BN[c] + 0.5) / (BD[c] + 1.0);
                P[c] = p0;
                double var = p0 * (1.0 - p0) / np_max(BD[c], 1.0);
                p0u[i] = np_min(0.999, p0 + 2.0 * sqrt(var));
                H[c] = FI[c];
            }
            for (int w = 0; w < nw; w++) {
                for (Py_ssize_t i = 0; i < NI; i++) {
                    double x = (double)sums[w * NC + NUM[i]], nn = (double)sums[w * NC + DEN[i]];
                    Py_ssize_t xi = (r * nw + w) * NI + i;
                    X[xi] = x;
                    N[xi] = nn;
                    double floor = np_max((R[i] * p0u[i]) * nn, min_count);
                    if (!(floor <= x) || !(nn > 0) || FI[r * NI + i]) continue;
                    double pc = p0u[i];
                    double q = x / np_max(nn, 1.0);
                    double kl = q > 0 ? q * log(q / pc) : 0.0;
                    double omq = 1 - q;
                    kl = kl + (q < 1 ? omq * log(omq / (1 - pc)) : 0.0);
                    if (!(nn * kl > chernoff)) continue;
                    PyObject *t = Py_BuildValue("(niiLLd)", r, w, (int)i, (long long)sums[w * NC + NUM[i]],
                                                (long long)sums[w * NC + DEN[i]], pc);
                    if (t == NULL || PyList_Append(cells, t) < 0) { Py_XDECREF(t); goto done; }
                    Py_DECREF(t);
                }
            }
            for (Py_ssize_t i = 0; i < NI; i++) {
                if (CU[r * NI + i] > cusum_h) {
                    PyObject *t = Py_BuildValue("(ni)", r, (int)i);
                    if (t == NULL || PyList_Append(cus, t) < 0) { Py_XDECREF(t); goto done; }
                    Py_DECREF(t);
                }
            }
        }
    }
    result = PyTuple_Pack(2, cells, cus);
done:
    Py_XDECREF(cells); Py_XDECREF(cus);
    PyBuffer_Release(&fine); PyBuffer_Release(&ids); PyBuffer_Release(&bnum); PyBuffer_Release(&bden);
    PyBuffer_Release(&firing); PyBuffer_Release(&hold); PyBuffer_Release(&cusum); PyBuffer_Release(&lastb);
    PyBuffer_Release(&ratios); PyBuffer_Release(&Xb); PyBuffer_Release(&Nb); PyBuffer_Release(&Pb);
    return result;
}

/* One ring of `scatter`, with numpy's semantics exactly (windows._scatter): the stale test reads the ids as
 * they were before the call; stale slots are cleared and take their bucket in order (a slot named twice takes
 * the last); then every vector whose slot holds its bucket is added. */
static void scatter_ring(int32_t *ring, int32_t *rids, Py_ssize_t len, int div, Py_ssize_t k,
                        const int64_t *rows, const int64_t *bs, const int32_t *vecs, char *stale) {
    for (Py_ssize_t j = 0; j < k; j++) {
        int64_t b = pydiv(bs[j], div);
        stale[j] = rids[rows[j] * len + pymod(b, len)] < b;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        if (!stale[j]) continue;
        int64_t b = pydiv(bs[j], div);
        Py_ssize_t at = rows[j] * len + pymod(b, len);
        memset(ring + at * NC, 0, NC * sizeof(int32_t));
        rids[at] = (int32_t)b;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        int64_t b = pydiv(bs[j], div);
        Py_ssize_t at = rows[j] * len + pymod(b, len);
        if (rids[at] != b) continue;
        int32_t *dst = ring + at * NC;
        const int32_t *src = vecs + j * NC;
        for (Py_ssize_t c = 0; c < NC; c++) dst[c] += src[c];
    }
}

/* scatter(fine, fine_ids, coarse, coarse_ids, last_b, cap, coarse_n, per_coarse, rows, bs, ks, counts): add
 * counts[ks[j]] (a list of NC ints) to fine bucket bs[j] of row rows[j] and to its coarse bucket, as
 * windows.scatter_add does; last_b[row] takes the largest bucket. */
static PyObject *scatter(PyObject *self, PyObject *args) {
    Py_buffer fine, fids, coarse, cids, lastb;
    Py_ssize_t cap, cn;
    int per;
    PyObject *rows_o, *bs_o, *ks_o, *counts_o;
    if (!PyArg_ParseTuple(args, "w*w*w*w*w*nniO!O!O!O!", &fine, &fids, &coarse, &cids, &lastb, &cap, &cn, &per,
                          &PyList_Type, &rows_o, &PyList_Type, &bs_o, &PyList_Type, &ks_o, &PyList_Type, &counts_o))
        return NULL;
    PyObject *result = NULL;
    int64_t *rows = NULL, *bs = NULL;
    int32_t *vecs = NULL;
    char *stale = NULL;
    Py_ssize_t k = PyList_GET_SIZE(rows_o), nk = PyList_GET_SIZE(counts_o);
    if (NI == 0) { PyErr_SetString(PyExc_RuntimeError, "setup() was not called"); goto done; }
    if (per <= 0 || cn <= 0) { PyErr_SetString(PyExc_ValueError, "scatter: bad ring layout"); goto done; }
    if (PyList_GET_SIZE(bs_o) != k || PyList_GET_SIZE(ks_o) != k) {
        PyErr_SetString(PyExc_ValueError, "scatter: rows, bs and ks differ in length");
        goto done;
    }
    if (!need(&fine, cap * FN * NC, 4, "fine") || !need(&fids, cap * FN, 4, "fine_ids")
        || !need(&coarse, cap * cn * NC, 4, "coarse") || !need(&cids, cap * cn, 4, "coarse_ids")
        || !need(&lastb, cap, 8, "last_b"))
        goto done;
    rows = PyMem_Malloc((k + 1) * sizeof(int64_t));
    bs = PyMem_Malloc((k + 1) * sizeof(int64_t));
    vecs = PyMem_Malloc((k * NC + 1) * sizeof(int32_t));
    stale = PyMem_Malloc(k + 1);
    if (!rows || !bs || !vecs || !stale) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t j = 0; j < k; j++) {
        long long r = PyLong_AsLongLong(PyList_GET_ITEM(rows_o, j));
        long long b = PyLong_AsLongLong(PyList_GET_ITEM(bs_o, j));
        Py_ssize_t kk = PyLong_AsSsize_t(PyList_GET_ITEM(ks_o, j));
        if (PyErr_Occurred()) goto done;
        if (r < 0 || r >= cap || kk < 0 || kk >= nk) {
            PyErr_SetString(PyExc_IndexError, "scatter: row or count index out of range");
            goto done;
        }
        rows[j] = r;
        bs[j] = b;
        PyObject *vec = PyList_GET_ITEM(counts_o, kk);
        if (!PyList_Check(vec) || PyList_GET_SIZE(vec) != NC) {
            PyErr_SetString(PyExc_ValueError, "scatter: a count vector is not a list of NC ints");
            goto done;
        }
        for (Py_ssize_t c = 0; c < NC; c++) {
            long v = PyLong_AsLong(PyList_GET_ITEM(vec, c));
            if (v == -1 && PyErr_Occurred()) goto done;
            if (v < INT32_MIN || v > INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "scatter: a count does not fit int32");
                goto done;
            }
            vecs[j * NC + c] = (int32_t)v;
        }
    }
    scatter_ring(fine.buf, fids.buf, FN, 1, k, rows, bs, vecs, stale);
    scatter_ring(coarse.buf, cids.buf, cn, per, k, rows, bs, vecs, stale);
    {
        int64_t *LB = lastb.buf;
        for (Py_ssize_t j = 0; j < k; j++)
            if (bs[j] > LB[rows[j]]) LB[rows[j]] = bs[j];
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_Free(rows); PyMem_Free(bs); PyMem_Free(vecs); PyMem_Free(stale);
    PyBuffer_Release(&fine); PyBuffer_Release(&fids); PyBuffer_Release(&coarse); PyBuffer_Release(&cids);
    PyBuffer_Release(&lastb);
    return result;
}

/* ----- detect._binom_sf_below -------------------------------------------------------------------------------
 *
 * binom_sf_below(x, n, p, limit): the same floating-point operations in the same order as the Python function
 * (its scalar loop and its chunked numpy tail are one sequence of IEEE operations: each term the previous one
 * times (n - k) / (k + 1) * odds, each total the previous one plus the term). The log-gamma values come from
 * Python's own math.lgamma, called here, so the first term is the very double the Python code computes; exp,
 * log and log1p are the C library's, which math.exp, math.log and math.log1p call. */

static PyObject *M_lgamma;

static int py_lgamma(double v, double *out) {
    if (M_lgamma == NULL) {
        PyObject *math = PyImport_ImportModule("math");
        if (math == NULL) return -1;
        M_lgamma = PyObject_GetAttrString(math, "lgamma");
        Py_DECREF(math);
        if (M_lgamma == NULL) return -1;
    }
    PyObject *arg = PyFloat_FromDouble(v);
    if (arg == NULL) return -1;
    PyObject *r = PyObject_CallOneArg(M_lgamma, arg);
    Py_DECREF(arg);
    if (r == NULL) return -1;
    *out = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *binom_sf_below(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) { PyErr_SetString(PyExc_TypeError, "binom_sf_below(x: int, n: int, p: float, limit: float)"); return NULL; }
    long long x = PyLong_AsLongLong(args[0]), n = PyLong_AsLongLong(args[1]);
    double p = PyFloat_AsDouble(args[2]), limit = PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (n > (1LL << 52) || x > (1LL << 52)) { PyErr_SetString(PyExc_ValueError, "binom_sf_below: n beyond 2**52"); return NULL; }
    if (x <= 0) return PyFloat_FromDouble(limit > 1.0 ? 1.0 : Py_HUGE_VAL);
    if (x > n || p <= 0.0) return PyFloat_FromDouble(0.0);
    if (p >= 1.0) return PyFloat_FromDouble(limit > 1.0 ? 1.0 : Py_HUGE_VAL);
    double odds = p / (1.0 - p);
    double g1, g2, g3;
    if (py_lgamma((double)(n + 1), &g1) < 0 || py_lgamma((double)(x + 1), &g2) < 0
        || py_lgamma((double)(n - x + 1), &g3) < 0)
        return NULL;
    double term = exp(g1 - g2 - g3 + (double)x * log(p) + (double)(n - x) * log1p(-p));
    if (term >= limit && limit != Py_HUGE_VAL) return PyFloat_FromDouble(Py_HUGE_VAL);
    if (term == 0.0) return PyFloat_FromDouble(0.0);
    double total = term;
    double mode = (double)(n + 1) * p;
    long long stop = n < x + 5000 ? n : x + 5000;
    for (long long k = x; k < stop; k++) {
        term *= (double)(n - k) / (double)(k + 1) * odds;
        total += term;
        if (term < total * 1e-12 && (double)(k + 1) > mode) return PyFloat_FromDouble(total < 1.0 ? total : 1.0);
    }
    return PyFloat_FromDouble(total < 1.0 ? total : 1.0);
}

/* ----- replay's line path: decode.decode_line and Pipeline._add_wire in one call ---------------------------------
 *
 * setup_lines(decode, errors, object_or_null, versions_key, empty, acc_type, fine_s, bits) takes the Python
 * pieces of decode.py and pipeline.py it calls (the msgspec decoder, the exceptions that mean "not this path",
 * the checks of raw `arguments` / `attributes` / `versions` texts) and the indicator bits. feed() is
 * decode_line followed by _add_wire: the same tests in the same order, the same objects appended (the tests
 * compare both on every line of the scenario streams and on malformed ones). */

static PyObject *L_decode, *L_errors, *L_obj_or_null, *L_versions_key, *L_empty, *L_acc_type, *L_fine_s;
static PyObject *L_by_len;  /* versions text length -> [(bytes, key or None), ...], at most 4 per length */
static long B_ERR, B_REF, B_GFAIL, B_TOOL, B_WRONG, B_COMPL;
static PyObject *S_time, *S_workflow, *S_kind, *S_segment, *S_fallback, *S_status, *S_refusal, *S_grounded,
    *S_latency, *S_subject, *S_rage, *S_args_valid, *S_target, *S_authorized, *S_text, *S_arguments, *S_attributes,
    *S_versions, *S_c, *S_lat, *S_lat_subj, *S_rage_l, *S_rage_subj, *S_bad;
static PyObject *I_500, *I_1;

/* Slot offsets of the struct's and the accumulator's fields (both are __slots__-style types: their fields are
 * member descriptors), read straight from the object as CPython's own descriptor does; any other type, or an
 * empty slot, goes through PyObject_GetAttr. */
enum { F_TIME, F_WORKFLOW, F_KIND, F_SEGMENT, F_FALLBACK, F_STATUS, F_REFUSAL, F_GROUNDED, F_LATENCY, F_SUBJECT,
       F_RAGE, F_ARGS_VALID, F_TARGET, F_AUTHORIZED, F_TEXT, F_ARGUMENTS, F_ATTRIBUTES, F_VERSIONS, NF };
enum { A_C, A_LAT, A_LAT_SUBJ, A_RAGE, A_RAGE_SUBJ, A_BAD, NA };
static PyObject *F_NAME[NF], *A_NAME[NA];
static Py_ssize_t F_OFF[NF], A_OFF[NA];
static PyTypeObject *W_TYPE, *A_TYPE;

static void offsets(PyTypeObject *tp, PyObject **names, Py_ssize_t *off, int k) {
    for (int j = 0; j < k; j++) {
        off[j] = 0;
        PyObject *d = _PyType_Lookup(tp, names[j]);  /* borrowed */
        if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if ((m->type == T_OBJECT_EX || m->type == T_OBJECT) && !(m->flags & READ_RESTRICTED)) off[j] = m->offset;
        }
    }
}

static inline PyObject *slot_get(PyObject *o, PyTypeObject *tp, Py_ssize_t off, PyObject *name) {
    if (off > 0 && Py_TYPE(o) == tp) {
        PyObject *v = *(PyObject **)((char *)o + off);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
    }
    return PyObject_GetAttr(o, name);
}
#define FIELD(e, f) slot_get((e), W_TYPE, F_OFF[f], F_NAME[f])
#define ACC(a, f) slot_get((a), A_TYPE, A_OFF[f], A_NAME[f])

static PyObject *setup_lines(PyObject *self, PyObject *args) {
    PyObject *dec, *errs, *oon, *vkf, *empty, *acc_type, *fine_s, *bits, *wire_type;
    if (!PyArg_ParseTuple(args, "OO!OOO!O!O!O!O!", &dec, &PyTuple_Type, &errs, &oon, &vkf, &PyTuple_Type, &empty,
                          &PyType_Type, &acc_type, &PyFloat_Type, &fine_s, &PyTuple_Type, &bits, &PyType_Type,
                          &wire_type))
        return NULL;
    if (PyTuple_GET_SIZE(bits) != 6) { PyErr_SetString(PyExc_ValueError, "setup_lines: six bits"); return NULL; }
    long b[6];
    for (int j = 0; j < 6; j++) {
        b[j] = PyLong_AsLong(PyTuple_GET_ITEM(bits, j));
        if (b[j] == -1 && PyErr_Occurred()) return NULL;
    }
    B_ERR = b[0]; B_REF = b[1]; B_GFAIL = b[2]; B_TOOL = b[3]; B_WRONG = b[4]; B_COMPL = b[5];
#define KEEP(dst, src) do { Py_INCREF(src); Py_XSETREF(dst, src); } while (0)
    KEEP(L_decode, dec); KEEP(L_errors, errs); KEEP(L_obj_or_null, oon); KEEP(L_versions_key, vkf);
    KEEP(L_empty, empty); KEEP(L_acc_type, acc_type); KEEP(L_fine_s, fine_s);
#undef KEEP
    if (L_by_len == NULL && (L_by_len = PyDict_New()) == NULL) return NULL;
#define NAME(var, str) if (var == NULL && (var = PyUnicode_InternFromString(str)) == NULL) return NULL
    NAME(S_time, "time"); NAME(S_workflow, "workflow"); NAME(S_kind, "kind"); NAME(S_segment, "segment");
    NAME(S_fallback, "fallback"); NAME(S_status, "status"); NAME(S_refusal, "refusal"); NAME(S_grounded, "grounded");
    NAME(S_latency, "latency_ms"); NAME(S_subject, "subject"); NAME(S_rage, "retrieval_age_s");
    NAME(S_args_valid, "args_valid"); NAME(S_target, "target"); NAME(S_authorized, "authorized_targets");
    NAME(S_text, "text"); NAME(S_arguments, "arguments"); NAME(S_attributes, "attributes");
    NAME(S_versions, "versions"); NAME(S_c, "c"); NAME(S_lat, "lat"); NAME(S_lat_subj, "lat_subj");
    NAME(S_rage_l, "rage"); NAME(S_rage_subj, "rage_subj"); NAME(S_bad, "bad");
#undef NAME
    PyObject *fn[NF] = {S_time, S_workflow, S_kind, S_segment, S_fallback, S_status, S_refusal, S_grounded,
                        S_latency, S_subject, S_rage, S_args_valid, S_target, S_authorized, S_text, S_arguments,
                        S_attributes, S_versions};
    PyObject *an[NA] = {S_c, S_lat, S_lat_subj, S_rage_l, S_rage_subj, S_bad};
    memcpy(F_NAME, fn, sizeof(fn));
    memcpy(A_NAME, an, sizeof(an));
    Py_INCREF(wire_type); Py_XSETREF(W_TYPE, (PyTypeObject *)wire_type);
    Py_INCREF(acc_type); Py_XSETREF(A_TYPE, (PyTypeObject *)acc_type);
    offsets(W_TYPE, F_NAME, F_OFF, NF);
    offsets(A_TYPE, A_NAME, A_OFF, NA);
    if (I_500 == NULL && (I_500 = PyLong_FromLong(500)) == NULL) return NULL;
    if (I_1 == NULL && (I_1 = PyLong_FromLong(1)) == NULL) return NULL;
    Py_RETURN_NONE;
}

/* 1 when `raw` holds the six bytes \u0000 (JSON's only spelling of NUL), else 0. */
static int has_nul_escape(const char *p, Py_ssize_t len) {
    const char *end = p + len;
    while (p < end) {
        const char *q = memchr(p, '\\', (size_t)(end - p));
        if (q == NULL) return 0;
        if (end - q >= 6 && memcmp(q, "\\u0000", 6) == 0) return 1;
        p = q + 1;
    }
    return 0;
}

/* `raw` (a msgspec.Raw or None) is empty, or the Python check accepts it: 1; refused: 0; error: -1. */
static int raw_ok(PyObject *raw) {
    int t = PyObject_IsTrue(raw);
    if (t <= 0) return t < 0 ? -1 : 1;
    PyObject *r = PyObject_CallOneArg(L_obj_or_null, raw);
    if (r == NULL) return -1;
    int ok = PyObject_IsTrue(r);
    Py_DECREF(r);
    return ok;
}

/* decode_line(raw): the struct and its versions key (a new reference to a 2-tuple); Py_None (new reference)
 * when only the full parser can judge the line; NULL on an unexpected error. */
static PyObject *decode_line_c(PyObject *raw) {
    if (!PyBytes_Check(raw)) { PyErr_SetString(PyExc_TypeError, "feed: a bytes line"); return NULL; }
    if (has_nul_escape(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))) Py_RETURN_NONE;
    PyObject *e = PyObject_CallOneArg(L_decode, raw);
    if (e == NULL) {
        if (PyErr_ExceptionMatches(L_errors)) { PyErr_Clear(); Py_RETURN_NONE; }
        return NULL;
    }
    PyObject *vk = NULL, *v = NULL, *result = NULL;
    for (int j = 0; j < 2; j++) {
        PyObject *a = FIELD(e, j == 0 ? F_ARGUMENTS : F_ATTRIBUTES);
        if (a == NULL) goto done;
        int ok = raw_ok(a);
        Py_DECREF(a);
        if (ok < 0) goto done;
        if (!ok) { result = Py_None; Py_INCREF(result); goto done; }
    }
    v = FIELD(e, F_VERSIONS);
    if (v == NULL) goto done;
    int nonempty = PyObject_IsTrue(v);
    if (nonempty < 0) goto done;
    if (!nonempty) { result = PyTuple_Pack(2, e, L_empty); goto done; }
    {
        Py_buffer vb;
        if (PyObject_GetBuffer(v, &vb, PyBUF_SIMPLE) < 0) goto done;
        PyObject *len = PyLong_FromSsize_t(vb.len);
        if (len == NULL) { PyBuffer_Release(&vb); goto done; }
        PyObject *seen = PyDict_GetItemWithError(L_by_len, len);  /* borrowed */
        if (seen == NULL && PyErr_Occurred()) { Py_DECREF(len); PyBuffer_Release(&vb); goto done; }
        if (seen != NULL) {
            for (Py_ssize_t j = 0; j < PyList_GET_SIZE(seen); j++) {
                PyObject *entry = PyList_GET_ITEM(seen, j);
                PyObject *text = PyTuple_GET_ITEM(entry, 0);
                if (memcmp(PyBytes_AS_STRING(text), vb.buf, (size_t)vb.len) == 0) {
                    vk = PyTuple_GET_ITEM(entry, 1);
                    Py_INCREF(vk);
                    break;
                }
            }
        }
        if (vk == NULL) {
            vk = PyObject_CallOneArg(L_versions_key, e);
            if (vk == NULL) { Py_DECREF(len); PyBuffer_Release(&vb); goto done; }
            int store = 1;
            if (seen == NULL) {
                if (PyDict_GET_SIZE(L_by_len) >= 4096) store = 0;
                else {
                    PyObject *lst = PyList_New(0);
                    if (lst == NULL || PyDict_SetItem(L_by_len, len, lst) < 0) {
                        Py_XDECREF(lst); Py_DECREF(len); PyBuffer_Release(&vb); goto done;
                    }
                    seen = lst;
                    Py_DECREF(lst);  /* the dict holds it */
                }
            } else if (PyList_GET_SIZE(seen) >= 4) {
                store = 0;
            }
            if (store) {
                PyObject *text = PyBytes_FromStringAndSize(vb.buf, vb.len);
                PyObject *entry = text ? PyTuple_Pack(2, text, vk) : NULL;
                Py_XDECREF(text);
                if (entry == NULL || PyList_Append(seen, entry) < 0) {
                    Py_XDECREF(entry); Py_DECREF(len); PyBuffer_Release(&vb); goto done;
                }
                Py_DECREF(entry);
            }
        }
        Py_DECREF(len);
        PyBuffer_Release(&vb);
    }
    if (vk == Py_None) { result = Py_None; Py_INCREF(result); }
    else result = PyTuple_Pack(2, e, vk);
done:
    Py_XDECREF(vk);
    Py_XDECREF(v);
    Py_DECREF(e);
    return result;
}

/* list[k] += 1 for a list of ints. */
static int bump(PyObject *lst, Py_ssize_t k) {
    PyObject *old = PyList_GET_ITEM(lst, k);
    PyObject *nv = PyNumber_Add(old, I_1);
    if (nv == NULL) return -1;
    PyList_SET_ITEM(lst, k, nv);
    Py_DECREF(old);
    return 0;
}

static int append_attr(PyObject *obj, int field, PyObject *item) {
    PyObject *lst = ACC(obj, field);
    if (lst == NULL) return -1;
    int r = PyList_Append(lst, item);
    Py_DECREF(lst);
    return r;
}

/* Pipeline._add_wire on the given accumulators, from the event's fields f[F_...] (borrowed references, Py_None
 * where the event has none): 0, or -1 with an exception set. The one compiled copy of the counting rules: the
 * struct path (count_c) and the scanner (feed) both come here. */
static int count_ev(PyObject *accs, PyObject *complaints, PyObject *const *f, PyObject *vk) {
    int rc = -1;
    PyObject *key = NULL, *acc = NULL, *c = NULL, *x, *y, *subject;
    PyObject *t = f[F_TIME], *wf = f[F_WORKFLOW], *kind = f[F_KIND];
    long bits = 0;
    {
        PyObject *q = PyNumber_FloorDivide(t, L_fine_s);
        if (q == NULL) goto done;
        PyObject *b = PyNumber_Long(q);
        Py_DECREF(q);
        if (b == NULL) goto done;
        key = PyTuple_Pack(5, b, wf, vk, f[F_SEGMENT], f[F_FALLBACK]);
        Py_DECREF(b);
        if (key == NULL) goto done;
    }
    acc = PyDict_GetItemWithError(accs, key);
    if (acc != NULL) Py_INCREF(acc);
    else {
        if (PyErr_Occurred()) goto done;
        if ((acc = PyObject_CallNoArgs(L_acc_type)) == NULL || PyDict_SetItem(accs, key, acc) < 0) goto done;
    }
    if ((c = ACC(acc, A_C)) == NULL || !PyList_Check(c) || PyList_GET_SIZE(c) < 11) {
        if (c != NULL) PyErr_SetString(PyExc_TypeError, "count: an accumulator's c is not a list of counts");
        goto done;
    }
    if (!PyUnicode_Check(kind)) { PyErr_SetString(PyExc_TypeError, "count: kind is not a str"); goto done; }
    if (PyUnicode_CompareWithASCIIString(kind, "response") == 0) {
        if (bump(c, 0) < 0) goto done;
        x = f[F_STATUS];
        int err = 0;
        if (x != Py_None && (err = PyObject_RichCompareBool(x, I_500, Py_GE)) < 0) goto done;
        if (err) {
            if (bump(c, 1) < 0) goto done;
            bits = B_ERR;
        } else {
            if (bump(c, 2) < 0) goto done;
            int ref = PyObject_IsTrue(f[F_REFUSAL]);
            if (ref < 0) goto done;
            if (ref) {
                if (bump(c, 3) < 0) goto done;
                bits = B_REF;
            }
        }
        x = f[F_GROUNDED];
        if (x != Py_None) {
            if (bump(c, 4) < 0) goto done;
            int g = PyObject_IsTrue(x);
            if (g < 0) goto done;
            if (!g) {
                if (bump(c, 5) < 0) goto done;
                bits |= B_GFAIL;
            }
        }
        x = f[F_LATENCY];
        if (x != Py_None && (append_attr(acc, A_LAT, x) < 0 || append_attr(acc, A_LAT_SUBJ, f[F_SUBJECT]) < 0))
            goto done;
        x = f[F_RAGE];
        if (x != Py_None && (append_attr(acc, A_RAGE, x) < 0 || append_attr(acc, A_RAGE_SUBJ, f[F_SUBJECT]) < 0))
            goto done;
    } else if (PyUnicode_CompareWithASCIIString(kind, "tool_call") == 0) {
        if (bump(c, 6) < 0) goto done;
        if (f[F_ARGS_VALID] == Py_False) {
            if (bump(c, 7) < 0) goto done;
            bits = B_TOOL;
        }
    } else if (PyUnicode_CompareWithASCIIString(kind, "action") == 0) {
        if (bump(c, 8) < 0) goto done;
        x = f[F_TARGET];
        int wrong = PyObject_IsTrue(x);
        if (wrong < 0) goto done;
        if (wrong && (wrong = PyObject_RichCompareBool(x, f[F_SUBJECT], Py_NE)) < 0) goto done;
        if (wrong) {
            y = f[F_AUTHORIZED];
            int listed = PyObject_IsTrue(y);
            if (listed < 0) goto done;
            if (listed && (listed = PySequence_Contains(y, x)) < 0) goto done;
            wrong = !listed;
        }
        if (wrong) {
            if (bump(c, 9) < 0) goto done;
            bits = B_WRONG;
        }
    } else {
        x = f[F_TEXT];
        int has = PyObject_IsTrue(x);
        if (has < 0) goto done;
        if (has) {
            PyObject *item = PyTuple_Pack(3, wf, x, t);
            if (item == NULL || PyList_Append(complaints, item) < 0) { Py_XDECREF(item); goto done; }
            Py_DECREF(item);
        }
        if (bump(c, 10) < 0) goto done;
        bits = B_COMPL;
    }
    if (bits) {
        subject = f[F_SUBJECT];
        PyObject *bo = PyLong_FromLong(bits);
        PyObject *item = bo ? PyTuple_Pack(3, t, subject, bo) : NULL;
        Py_XDECREF(bo);
        if (item == NULL || append_attr(acc, A_BAD, item) < 0) { Py_XDECREF(item); goto done; }
        Py_DECREF(item);
    }
    rc = 0;
done:
    Py_XDECREF(key); Py_XDECREF(acc); Py_XDECREF(c);
    return rc;
}

/* The fields count_ev reads. */
static const int COUNTED[] = {F_TIME, F_WORKFLOW, F_KIND, F_SEGMENT, F_FALLBACK, F_STATUS, F_REFUSAL, F_GROUNDED,
                              F_LATENCY, F_SUBJECT, F_RAGE, F_ARGS_VALID, F_TARGET, F_AUTHORIZED, F_TEXT};
#define N_COUNTED ((int)(sizeof(COUNTED) / sizeof(COUNTED[0])))

static void clear_fields(PyObject **f) {
    for (int j = 0; j < NF; j++) Py_CLEAR(f[j]);
}

/* Pipeline._add_wire(e, vk) on the given accumulators, from a decoded struct: 0, or -1 with an exception set. */
static int count_c(PyObject *accs, PyObject *complaints, PyObject *e, PyObject *vk) {
    PyObject *f[NF] = {NULL};
    int rc = -1;
    for (int j = 0; j < N_COUNTED; j++)
        if ((f[COUNTED[j]] = FIELD(e, COUNTED[j])) == NULL) goto done;
    rc = count_ev(accs, complaints, f, vk);
done:
    clear_fields(f);
    return rc;
}

/* ----- the line scanner: the common line without msgspec ---------------------------------------------------------
 *
 * scan_line reads the plainest Event v1 lines itself and builds only the objects count_ev reads. It accepts a
 * strict subset of what the struct decoder accepts, and for it produces the same values:
 *   - one JSON object, each key at most once and a WireEvent field, `time`, `workflow` and `kind` present;
 *   - strings of printable ASCII without escapes (anything else: a backslash, a control character, a byte of
 *     UTF-8 beyond ASCII);
 *   - numbers without a sign: integers of at most 18 digits without a leading zero, and decimals of at most 15
 *     significant digits and a power of ten within 1e±22, where every correctly rounded parser gives the same
 *     double (msgspec's and strtod both round correctly);
 *   - each field's type and range as the struct declares them (decode.py);
 *   - `versions` as an object of plain strings whose text is already in the versions cache (the struct path
 *     filled it; the key is the one it computed for the same bytes);
 *   - `arguments` and `attributes` as null or an object of such strings and numbers (a minus sign allowed),
 *     true, false, null, and objects and arrays of those (decode_line's rule: an object or null).
 * Anything else returns 0 and the line takes the struct path, which judges it as before. */

static PyObject *S_response, *S_tool_call, *S_action, *S_complaint;

/* A str of printable ASCII bytes (what scan_str accepts). */
static inline PyObject *ascii_str(const char *s, Py_ssize_t n) {
    PyObject *o = PyUnicode_New(n, 127);
    if (o != NULL) memcpy(PyUnicode_DATA(o), s, (size_t)n);
    return o;
}
static Py_ssize_t MAX_WF = 0;

enum { K_SKIP = 32, K_DEFER = 64 };  /* K_SKIP + i: the i-th string field nothing counts */

typedef struct { const char *p, *end; } Cur;

static inline void skip_ws(Cur *c) {
    if (c->p < c->end && (unsigned char)*c->p > ' ') return;  /* (compact JSON: no whitespace between tokens) */
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static inline int eat(Cur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return 1; }
    return 0;
}

static inline int peek(Cur *c, char ch) {
    skip_ws(c);
    return c->p < c->end && *c->p == ch;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* The bytes of w below n (n <= 128), or equal to 0 after w ^ k: the lowest flagged byte is always a true one
 * (a borrow can only flag bytes above it). */
#define BELOW(w, n) (((w) - ONES * (n)) & ~(w) & HIGHS)
#define ZERO(w) BELOW((w), 1)

/* A plain string at the cursor: its bytes in [*s, *s + *n). 0 if it is not one. */
static int scan_str(Cur *c, const char **s, Py_ssize_t *n) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    const char *q = c->p + 1;
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* eight bytes at a time to the first one that is not printable ASCII or is '"' or '\\' */
    while (c->end - q >= 8) {
        uint64_t w;
        memcpy(&w, q, 8);
        uint64_t hit = (w & HIGHS) | BELOW(w, 0x20) | ZERO(w ^ (ONES * '"')) | ZERO(w ^ (ONES * '\\'))
                       | ZERO(w ^ (ONES * 0x7F));
        if (hit) { q += __builtin_ctzll(hit) >> 3; break; }
        q += 8;
    }
#endif
    while (q < c->end) {
        unsigned char ch = (unsigned char)*q;
        if (ch == '"') { *s = c->p + 1; *n = q - (c->p + 1); c->p = q + 1; return 1; }
        if (ch < 0x20 || ch >= 0x7F || ch == '\\') return 0;
        q++;
    }
    return 0;
}

static inline int scan_lit(Cur *c, const char *lit, Py_ssize_t n) {
    skip_ws(c);
    if (c->end - c->p >= n && memcmp(c->p, lit, (size_t)n) == 0) { c->p += n; return 1; }
    return 0;
}

/* A number in the plain subset: 1 with *is_int and *iv (an integer literal) or *dv (a decimal); 0 if not. */
static int scan_num(Cur *c, int *is_int, long long *iv, double *dv) {
    skip_ws(c);
    const char *p = c->p;
    if (p >= c->end || *p < '0' || *p > '9') return 0;
    int digits = 0, sig = 0, frac = 0;
    long long v = 0, m = 0;  /* m: the significant digits as an integer (below 10^15 < 2^53: exact as a double) */
    if (*p == '0') {
        p++;
        digits = 1;
        if (p < c->end && *p >= '0' && *p <= '9') return 0;  /* a leading zero */
    } else {
        while (p < c->end && *p >= '0' && *p <= '9') { v = v * 10 + (*p - '0'); p++; digits++; sig++; if (digits > 18) return 0; }
    }
    m = v;
    int is_i = 1, exp = 0;
    if (p < c->end && *p == '.') {
        is_i = 0;
        p++;
        if (p >= c->end || *p < '0' || *p > '9') return 0;
        while (p < c->end && *p >= '0' && *p <= '9') {
            if (sig || *p != '0') sig++;
            if (sig > 15) return 0;
            m = m * 10 + (*p - '0');
            frac++;
            p++;
        }
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        is_i = 0;
        p++;
        int neg = 0;
        if (p < c->end && (*p == '+' || *p == '-')) { neg = *p == '-'; p++; }
        if (p >= c->end || *p < '0' || *p > '9') return 0;
        int ed = 0;
        while (p < c->end && *p >= '0' && *p <= '9') { exp = exp * 10 + (*p - '0'); p++; if (++ed > 3) return 0; }
        if (neg) exp = -exp;
    }
    if (p < c->end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-'))
        return 0;
    if (is_i) {
        *is_int = 1;
        *iv = v;
    } else {
        /* Clinger's fast path: m and 10^|e| are exact doubles, so one IEEE multiplication or division gives
         * the correctly rounded value, the one any correct parser gives (the build keeps double arithmetic
         * strict: SSE2, -ffp-contract=off) */
        static const double P10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
                                     1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        int e10 = exp - frac;
        if (sig > 15 || e10 < -22 || e10 > 22) return 0;
        double d = (double)m;
        d = e10 >= 0 ? d * P10[e10] : d / P10[-e10];
        if (!isfinite(d)) return 0;
        *is_int = 0;
        *dv = d;
    }
    c->p = p;
    return 1;
}

/* A field name: its F_ index, K_SKIP + i (a string field nothing counts), or K_DEFER (not a field: the struct
 * path decides). */
static int field_of(const char *s, Py_ssize_t n) {
#define IS(lit) (n == (Py_ssize_t)sizeof(lit) - 1 && memcmp(s, lit, sizeof(lit) - 1) == 0)
    if (IS("time")) return F_TIME;
    if (IS("workflow")) return F_WORKFLOW;
    if (IS("kind")) return F_KIND;
    if (IS("versions")) return F_VERSIONS;
    if (IS("subject")) return F_SUBJECT;
    if (IS("segment")) return F_SEGMENT;
    if (IS("fallback")) return F_FALLBACK;
    if (IS("status")) return F_STATUS;
    if (IS("latency_ms")) return F_LATENCY;
    if (IS("refusal")) return F_REFUSAL;
    if (IS("grounded")) return F_GROUNDED;
    if (IS("retrieval_age_s")) return F_RAGE;
    if (IS("args_valid")) return F_ARGS_VALID;
    if (IS("target")) return F_TARGET;
    if (IS("authorized_targets")) return F_AUTHORIZED;
    if (IS("text")) return F_TEXT;
    if (IS("trace_id")) return K_SKIP;
    if (IS("session_id")) return K_SKIP + 1;
    if (IS("service")) return K_SKIP + 2;
    if (IS("model")) return K_SKIP + 3;
    if (IS("input")) return K_SKIP + 4;
    if (IS("output")) return K_SKIP + 5;
    if (IS("tool")) return K_SKIP + 6;
    if (IS("action")) return K_SKIP + 7;
    if (IS("channel")) return K_SKIP + 8;
    if (IS("arguments")) return F_ARGUMENTS;
    if (IS("attributes")) return F_ATTRIBUTES;
    return K_DEFER;
#undef IS
}

/* A JSON value in the scanner's subset (plain strings, numbers as scan_num reads them with an optional minus
 * sign, true / false / null, objects and arrays of those to a depth of 16), skipped: 1, or 0 if it is not one.
 * Every such text is one orjson and msgspec accept. */
static int skip_value(Cur *c, int depth) {
    const char *s;
    Py_ssize_t n;
    int is_int;
    long long iv;
    double dv;
    skip_ws(c);
    if (c->p >= c->end || depth > 16) return 0;
    switch (*c->p) {
    case '"':
        return scan_str(c, &s, &n);
    case '{':
        c->p++;
        if (eat(c, '}')) return 1;
        do {
            if (!scan_str(c, &s, &n) || !eat(c, ':') || !skip_value(c, depth + 1)) return 0;
        } while (eat(c, ','));
        return eat(c, '}');
    case '[':
        c->p++;
        if (eat(c, ']')) return 1;
        do {
            if (!skip_value(c, depth + 1)) return 0;
        } while (eat(c, ','));
        return eat(c, ']');
    case 't':
        return scan_lit(c, "true", 4);
    case 'f':
        return scan_lit(c, "false", 5);
    case 'n':
        return scan_lit(c, "null", 4);
    case '-':
        c->p++;
        return scan_num(c, &is_int, &iv, &dv);
    default:
        return scan_num(c, &is_int, &iv, &dv);
    }
}

/* The versions object's text, when it is an object of plain strings: [*s, *s + *n). */
static int scan_versions(Cur *c, const char **s, Py_ssize_t *n) {
    skip_ws(c);
    const char *start = c->p, *k, *v;
    Py_ssize_t kn, vn;
    if (!eat(c, '{')) return 0;
    if (!eat(c, '}')) {
        do {
            if (!scan_str(c, &k, &kn) || !eat(c, ':') || !scan_str(c, &v, &vn)) return 0;
        } while (eat(c, ','));
        if (!eat(c, '}')) return 0;
    }
    *s = start;
    *n = c->p - start;
    return 1;
}

/* The versions key the cache holds for this text: a new reference; NULL (no exception) when it holds none, or
 * holds None (the struct path then judges the line). */
static PyObject *cached_key(const char *s, Py_ssize_t n) {
    PyObject *len = PyLong_FromSsize_t(n);
    if (len == NULL) { PyErr_Clear(); return NULL; }
    PyObject *seen = PyDict_GetItemWithError(L_by_len, len);  /* borrowed */
    Py_DECREF(len);
    if (seen == NULL) { PyErr_Clear(); return NULL; }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(seen); j++) {
        PyObject *entry = PyList_GET_ITEM(seen, j);
        PyObject *text = PyTuple_GET_ITEM(entry, 0);
        if (memcmp(PyBytes_AS_STRING(text), s, (size_t)n) == 0) {
            PyObject *vk = PyTuple_GET_ITEM(entry, 1);
            if (vk == Py_None) return NULL;
            Py_INCREF(vk);
            return vk;
        }
    }
    return NULL;
}

/* Scan one line: 1 with f[] (new references: the fields count_ev reads, Py_None where absent) and *vk (new
 * reference); 0 when the line is not in the scanner's subset (f[] cleared); -1 on a memory error. */
static int scan_line(const char *p, Py_ssize_t len, PyObject **f, PyObject **vk) {
    Cur c = {p, p + len};
    uint64_t seen = 0;
    int is_int;
    long long iv;
    double dv;
    const char *s, *vs = NULL;
    Py_ssize_t n, vn = 0;
    *vk = NULL;
    if (!eat(&c, '{')) return 0;
    if (!peek(&c, '}')) {
        do {
            if (!scan_str(&c, &s, &n) || !eat(&c, ':')) goto defer;
            int fi = field_of(s, n);
            if (fi == K_DEFER || (seen & ((uint64_t)1 << fi))) goto defer;  /* (or a repeated key) */
            seen |= (uint64_t)1 << fi;
            if (fi >= K_SKIP) {  /* a string or null, never read */
                if (!scan_lit(&c, "null", 4) && !scan_str(&c, &s, &n)) goto defer;
                continue;
            }
            PyObject *o = NULL;
            switch (fi) {
            case F_TIME:
                if (!scan_num(&c, &is_int, &iv, &dv)) goto defer;
                if (is_int) { if (iv > 100000000000LL) goto defer; o = PyLong_FromLongLong(iv); }
                else { if (!(dv >= 0.0 && dv <= 1e11)) goto defer; o = PyFloat_FromDouble(dv); }
                break;
            case F_WORKFLOW:
                if (!scan_str(&c, &s, &n) || n < 1 || n > MAX_WF) goto defer;
                o = ascii_str(s, n);
                break;
            case F_KIND:
                if (!scan_str(&c, &s, &n)) goto defer;
                if (n == 8 && memcmp(s, "response", 8) == 0) o = S_response;
                else if (n == 9 && memcmp(s, "tool_call", 9) == 0) o = S_tool_call;
                else if (n == 6 && memcmp(s, "action", 6) == 0) o = S_action;
                else if (n == 9 && memcmp(s, "complaint", 9) == 0) o = S_complaint;
                else goto defer;
                Py_INCREF(o);
                break;
            case F_VERSIONS:
                if (!scan_versions(&c, &vs, &vn)) goto defer;
                continue;
            case F_ARGUMENTS: case F_ATTRIBUTES:  /* an object or null (decode_line's rule), never read */
                if (!scan_lit(&c, "null", 4) && !(peek(&c, '{') && skip_value(&c, 0))) goto defer;
                continue;
            case F_STATUS:
                if (scan_lit(&c, "null", 4)) { o = Py_None; Py_INCREF(o); break; }
                if (!scan_num(&c, &is_int, &iv, &dv) || !is_int || iv >= 1000) goto defer;
                o = PyLong_FromLongLong(iv);
                break;
            case F_LATENCY: case F_RAGE:
                if (scan_lit(&c, "null", 4)) { o = Py_None; Py_INCREF(o); break; }
                if (!scan_num(&c, &is_int, &iv, &dv)) goto defer;
                o = is_int ? PyLong_FromLongLong(iv) : PyFloat_FromDouble(dv);  /* (no sign: never below 0) */
                break;
            case F_REFUSAL: case F_GROUNDED: case F_ARGS_VALID:
                if (scan_lit(&c, "true", 4)) o = Py_True;
                else if (scan_lit(&c, "false", 5)) o = Py_False;
                else if (scan_lit(&c, "null", 4)) o = Py_None;
                else goto defer;
                Py_INCREF(o);
                break;
            case F_AUTHORIZED:
                if (scan_lit(&c, "null", 4)) { o = Py_None; Py_INCREF(o); break; }
                if (!eat(&c, '[')) goto defer;
                if ((o = PyList_New(0)) == NULL) goto error;
                f[fi] = o;
                if (!eat(&c, ']')) {
                    do {
                        if (!scan_str(&c, &s, &n)) goto defer;
                        PyObject *item = ascii_str(s, n);
                        if (item == NULL || PyList_Append(o, item) < 0) { Py_XDECREF(item); goto error; }
                        Py_DECREF(item);
                    } while (eat(&c, ','));
                    if (!eat(&c, ']')) goto defer;
                }
                continue;
            default:  /* subject, segment, fallback, target, text: a string or null */
                if (scan_lit(&c, "null", 4)) { o = Py_None; Py_INCREF(o); break; }
                if (!scan_str(&c, &s, &n)) goto defer;
                o = ascii_str(s, n);
                break;
            }
            if (o == NULL) goto error;
            f[fi] = o;
        } while (eat(&c, ','));
    }
    if (!eat(&c, '}')) goto defer;
    skip_ws(&c);
    if (c.p != c.end) goto defer;
    if (!(seen & ((uint64_t)1 << F_TIME)) || !(seen & ((uint64_t)1 << F_WORKFLOW)) || !(seen & ((uint64_t)1 << F_KIND)))
        goto defer;
    if (vs != NULL) {
        if ((*vk = cached_key(vs, vn)) == NULL) goto defer;
    } else {
        *vk = L_empty;
        Py_INCREF(*vk);
    }
    for (int j = 0; j < N_COUNTED; j++)
        if (f[COUNTED[j]] == NULL) { f[COUNTED[j]] = Py_None; Py_INCREF(Py_None); }
    return 1;
defer:
    clear_fields(f);
    return 0;
error:
    clear_fields(f);
    return -1;
}

static PyObject *setup_scan(PyObject *self, PyObject *arg) {
    Py_ssize_t m = PyLong_AsSsize_t(arg);
    if (m == -1 && PyErr_Occurred()) return NULL;
#define NAME(var, str) if (var == NULL && (var = PyUnicode_InternFromString(str)) == NULL) return NULL
    NAME(S_response, "response"); NAME(S_tool_call, "tool_call"); NAME(S_action, "action");
    NAME(S_complaint, "complaint");
#undef NAME
    MAX_WF = m;
    Py_RETURN_NONE;
}

/* scan(raw): the fields the scanner read, as a dict, and the versions key; None when the line is not in its
 * subset (for the tests, which compare it with the struct decoder). */
static PyObject *scan_py(PyObject *self, PyObject *raw) {
    if (L_decode == NULL || MAX_WF == 0) { PyErr_SetString(PyExc_RuntimeError, "setup_lines() and setup_scan() were not called"); return NULL; }
    if (!PyBytes_Check(raw)) { PyErr_SetString(PyExc_TypeError, "scan: a bytes line"); return NULL; }
    PyObject *f[NF] = {NULL}, *vk = NULL;
    int r = scan_line(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), f, &vk);
    if (r < 0) return NULL;
    if (r == 0) Py_RETURN_NONE;
    PyObject *d = PyDict_New(), *out = NULL;
    if (d == NULL) goto done;
    for (int j = 0; j < N_COUNTED; j++)
        if (PyDict_SetItem(d, F_NAME[COUNTED[j]], f[COUNTED[j]]) < 0) goto done;
    out = PyTuple_Pack(2, d, vk);
done:
    Py_XDECREF(d);
    Py_XDECREF(vk);
    clear_fields(f);
    return out;
}

/* feed(raw, accs, complaints, next_tick): decode_line(raw), then, when the event's time is before next_tick,
 * count it (_add_wire) and return its time; when it is at or past next_tick, return (event, key) uncounted
 * (the caller ticks first, then calls count()); None when only the full parser can judge the line. */
static PyObject *feed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "feed(raw, accs: dict, complaints: list, next_tick)");
        return NULL;
    }
    if (L_decode == NULL) { PyErr_SetString(PyExc_RuntimeError, "setup_lines() was not called"); return NULL; }
    if (MAX_WF > 0 && PyBytes_Check(args[0])) {
        PyObject *f[NF] = {NULL}, *vk = NULL;
        int r = scan_line(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), f, &vk);
        if (r < 0) return NULL;
        if (r > 0) {
            PyObject *t = f[F_TIME];
            int later = PyObject_RichCompareBool(t, args[3], Py_GE);
            /* (a line at or past the next tick takes the struct path: the caller counts that event later) */
            if (later == 0 && count_ev(args[1], args[2], f, vk) == 0) {
                Py_INCREF(t);
                Py_DECREF(vk);
                clear_fields(f);
                return t;
            }
            Py_DECREF(vk);
            clear_fields(f);
            if (later != 1) return NULL;
        }
    }
    PyObject *got = decode_line_c(args[0]);
    if (got == NULL || got == Py_None) return got;
    PyObject *e = PyTuple_GET_ITEM(got, 0), *vk = PyTuple_GET_ITEM(got, 1);
    PyObject *t = FIELD(e, F_TIME);
    if (t == NULL) { Py_DECREF(got); return NULL; }
    int later = PyObject_RichCompareBool(t, args[3], Py_GE);
    if (later != 0) {
        Py_DECREF(t);
        if (later < 0) { Py_DECREF(got); return NULL; }
        return got;
    }
    if (count_c(args[1], args[2], e, vk) < 0) { Py_DECREF(t); Py_DECREF(got); return NULL; }
    Py_DECREF(got);
    return t;
}

/* ----- Pipeline._flush's loop over the accumulators --------------------------------------------------------
 *
 * flush(acc, routes, route, fine_s, (C_LATX, C_LATN, C_RX, C_RSET), bit_lat, bit_rage) is the loop of
 * Pipeline._flush (pipeline.py, `_flush_accs`, the reference): the same updates of the workflow states, in the
 * same order, and the same (counts, targets, lat_by_ws, rage_by_ws) for the scatter and the histograms. */

static PyObject *S_lat_thr, *S_rage_thr, *S_bad_total, *S_last_b, *S_all, *S_block, *S_hold, *S_row, *S_no,
    *S_append, *S_extend;

/* ws.<total> += n */
static int add_attr(PyObject *ws, PyObject *name, Py_ssize_t n) {
    PyObject *old = PyObject_GetAttr(ws, name);
    if (old == NULL) return -1;
    PyObject *k = PyLong_FromSsize_t(n);
    PyObject *nv = k ? PyNumber_Add(old, k) : NULL;
    Py_XDECREF(k);
    Py_DECREF(old);
    if (nv == NULL) return -1;
    int r = PyObject_SetAttr(ws, name, nv);
    Py_DECREF(nv);
    return r;
}

static int set_count(PyObject *c, Py_ssize_t k, Py_ssize_t n) {
    if (k < 0 || k >= PyList_GET_SIZE(c)) { PyErr_SetString(PyExc_IndexError, "flush: counter index"); return -1; }
    PyObject *v = PyLong_FromSsize_t(n);
    if (v == NULL) return -1;
    return PyList_SetItem(c, k, v);  /* steals v */
}

/* The latency (or retrieval-age) half of one accumulator: exceedances over the workflow's threshold become bad
 * entries, and the sample goes to the workflow's pending histogram values unless its indicator is held. */
static int flush_side(PyObject *ws, PyObject *vals, PyObject *subj, PyObject *c, PyObject *thr_name, Py_ssize_t ix,
                      Py_ssize_t in, long col, PyObject *bit, PyObject *by, PyObject *b, PyObject **bucket_t,
                      PyObject *fine_s, PyObject *wsbad) {
    int rc = -1;
    PyObject *thr = NULL, *over = NULL, *all = NULL, *blk = NULL, *hold = NULL, *row = NULL, *idx = NULL,
             *flag = NULL, *no = NULL;
    Py_ssize_t n = PyList_GET_SIZE(vals);
    if ((thr = PyObject_GetAttr(ws, thr_name)) == NULL) goto done;
    int is_inf;
    if (PyFloat_CheckExact(thr)) is_inf = PyFloat_AS_DOUBLE(thr) == Py_HUGE_VAL;
    else {  /* (a numpy float: compared as Python compares it) */
        PyObject *inf = PyFloat_FromDouble(Py_HUGE_VAL);
        if (inf == NULL) goto done;
        is_inf = PyObject_RichCompareBool(thr, inf, Py_EQ);
        Py_DECREF(inf);
        if (is_inf < 0) goto done;
    }
    if ((over = PyList_New(0)) == NULL) goto done;
    if (!is_inf) {
        for (Py_ssize_t j = 0; j < n; j++) {
            PyObject *x = PyList_GET_ITEM(vals, j);
            int gt;
            if (PyFloat_CheckExact(x) && PyFloat_CheckExact(thr)) gt = PyFloat_AS_DOUBLE(thr) < PyFloat_AS_DOUBLE(x);
            else if ((gt = PyObject_RichCompareBool(thr, x, Py_LT)) < 0) goto done;
            if (gt) {
                PyObject *jj = PyLong_FromSsize_t(j);
                if (jj == NULL || PyList_Append(over, jj) < 0) { Py_XDECREF(jj); goto done; }
                Py_DECREF(jj);
            }
        }
    }
    Py_ssize_t nover = PyList_GET_SIZE(over);
    if (set_count(c, ix, nover) < 0) goto done;
    if (!is_inf && set_count(c, in, n) < 0) goto done;
    if (nover) {
        if (*bucket_t == NULL && (*bucket_t = PyNumber_Multiply(b, fine_s)) == NULL) goto done;
        if (PyList_GET_SIZE(subj) < n) { PyErr_SetString(PyExc_ValueError, "flush: fewer subjects than values"); goto done; }
        for (Py_ssize_t q = 0; q < nover; q++) {
            Py_ssize_t j = PyLong_AsSsize_t(PyList_GET_ITEM(over, q));
            PyObject *item = PyTuple_Pack(3, *bucket_t, PyList_GET_ITEM(subj, j), bit);
            if (item == NULL) goto done;
            PyObject *r = PyObject_CallMethodOneArg(wsbad, S_append, item);
            Py_DECREF(item);
            if (r == NULL) goto done;
            Py_DECREF(r);
        }
    }
    if (add_attr(ws, S_bad_total, nover) < 0) goto done;
    if ((all = PyObject_GetAttr(ws, S_all)) == NULL || (blk = PyObject_GetAttr(all, S_block)) == NULL
        || (hold = PyObject_GetAttr(blk, S_hold)) == NULL || (row = PyObject_GetAttr(all, S_row)) == NULL)
        goto done;
    if ((idx = Py_BuildValue("(Ol)", row, col)) == NULL || (flag = PyObject_GetItem(hold, idx)) == NULL) goto done;
    int held = PyObject_IsTrue(flag);
    if (held < 0) goto done;
    if (!held) {
        if ((no = PyObject_GetAttr(ws, S_no)) == NULL) goto done;
        PyObject *prev = PyDict_GetItemWithError(by, no);  /* borrowed */
        PyObject *entry;
        if (prev == NULL) {
            if (PyErr_Occurred()) goto done;
            PyObject *copy = PyList_GetSlice(vals, 0, n);
            entry = copy ? PyTuple_Pack(3, ws, copy, b) : NULL;
            Py_XDECREF(copy);
        } else {
            PyObject *pv = PyTuple_GET_ITEM(prev, 1), *pb = PyTuple_GET_ITEM(prev, 2);
            if (PyList_SetSlice(pv, PyList_GET_SIZE(pv), PyList_GET_SIZE(pv), vals) < 0) goto done;
            int later = PyObject_RichCompareBool(pb, b, Py_GT);  /* max(b, pb): b unless pb > b */
            if (later < 0) goto done;
            entry = PyTuple_Pack(3, ws, pv, later ? pb : b);
        }
        if (entry == NULL) goto done;
        int r = PyDict_SetItem(by, no, entry);
        Py_DECREF(entry);
        if (r < 0) goto done;
    }
    rc = 0;
done:
    Py_XDECREF(thr); Py_XDECREF(over); Py_XDECREF(all); Py_XDECREF(blk); Py_XDECREF(hold); Py_XDECREF(row);
    Py_XDECREF(idx); Py_XDECREF(flag); Py_XDECREF(no);
    return rc;
}

static int extend_repeat(PyObject *lst, PyObject *item, Py_ssize_t n) {
    for (Py_ssize_t j = 0; j < n; j++)
        if (PyList_Append(lst, item) < 0) return -1;
    return 0;
}

static PyObject *flush(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyTuple_Check(args[4])
        || PyTuple_GET_SIZE(args[4]) != 4) {
        PyErr_SetString(PyExc_TypeError, "flush(acc: dict, routes: dict, route, fine_s, (latx, latn, rx, rset), "
                                         "bit_lat, bit_rage)");
        return NULL;
    }
    if (A_TYPE == NULL) { PyErr_SetString(PyExc_RuntimeError, "setup_lines() was not called"); return NULL; }
#define NAME(var, str) if (var == NULL && (var = PyUnicode_InternFromString(str)) == NULL) return NULL
    NAME(S_lat_thr, "lat_thr"); NAME(S_rage_thr, "rage_thr"); NAME(S_bad_total, "bad_total"); NAME(S_last_b, "last_b");
    NAME(S_all, "all"); NAME(S_block, "block"); NAME(S_hold, "hold"); NAME(S_row, "row"); NAME(S_no, "no");
    NAME(S_append, "append"); NAME(S_extend, "extend");
#undef NAME
    PyObject *acc = args[0], *routes = args[1], *route_fn = args[2], *fine_s = args[3];
    PyObject *bit_lat = args[5], *bit_rage = args[6];
    Py_ssize_t ix[4];
    for (int j = 0; j < 4; j++)
        if ((ix[j] = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[4], j))) == -1 && PyErr_Occurred()) return NULL;
    PyObject *counts = PyList_New(0), *targets = PyDict_New(), *lat_by = PyDict_New(), *rage_by = PyDict_New();
    PyObject *result = NULL;
    if (counts == NULL || targets == NULL || lat_by == NULL || rage_by == NULL) goto out;
    PyObject *key, *a;
    Py_ssize_t pos = 0;
    while (PyDict_Next(acc, &pos, &key, &a)) {
        PyObject *route = NULL, *c = NULL, *vals = NULL, *subj = NULL, *bad = NULL, *wsbad = NULL, *bucket_t = NULL,
                 *last_b = NULL, *kk = NULL;
        int ok = 0;
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 5) {
            PyErr_SetString(PyExc_TypeError, "flush: an accumulator key is not (b, wf, vk, seg, fb)");
            goto next;
        }
        PyObject *b = PyTuple_GET_ITEM(key, 0);
        {
            PyObject *rkey = PyTuple_GetSlice(key, 1, 5);
            if (rkey == NULL) goto next;
            route = PyDict_GetItemWithError(routes, rkey);  /* borrowed */
            Py_DECREF(rkey);
            if (route != NULL) Py_INCREF(route);
            else if (PyErr_Occurred()) goto next;
            else {
                PyObject *rargs[5] = {PyTuple_GET_ITEM(key, 1), PyTuple_GET_ITEM(key, 2), PyTuple_GET_ITEM(key, 3),
                                      PyTuple_GET_ITEM(key, 4), b};  /* route(wf, vk, seg, fb, b) */
                if ((route = PyObject_Vectorcall(route_fn, rargs, 5, NULL)) == NULL) goto next;
            }
        }
        if (!PyTuple_Check(route) || PyTuple_GET_SIZE(route) != 4 || !PyTuple_Check(PyTuple_GET_ITEM(route, 3))) {
            PyErr_SetString(PyExc_TypeError, "flush: a route is not (ws, block, rows, more)");
            goto next;
        }
        PyObject *ws = PyTuple_GET_ITEM(route, 0);
        if ((c = ACC(a, A_C)) == NULL) goto next;
        if (!PyList_Check(c)) { PyErr_SetString(PyExc_TypeError, "flush: an accumulator's c is not a list"); goto next; }
        if ((wsbad = PyObject_GetAttr(ws, S_bad)) == NULL) goto next;
        for (int side = 0; side < 2; side++) {
            if ((vals = ACC(a, side ? A_RAGE : A_LAT)) == NULL) goto next;
            if (!PyList_Check(vals)) { PyErr_SetString(PyExc_TypeError, "flush: samples are not a list"); goto next; }
            if (PyList_GET_SIZE(vals)) {
                if ((subj = ACC(a, side ? A_RAGE_SUBJ : A_LAT_SUBJ)) == NULL) goto next;
                if (!PyList_Check(subj)) { PyErr_SetString(PyExc_TypeError, "flush: subjects are not a list"); goto next; }
                if (flush_side(ws, vals, subj, c, side ? S_rage_thr : S_lat_thr, ix[side ? 2 : 0], ix[side ? 3 : 1],
                               side ? 7 : 1, side ? bit_rage : bit_lat, side ? rage_by : lat_by, b, &bucket_t,
                               fine_s, wsbad) < 0)
                    goto next;
                Py_CLEAR(subj);
            }
            Py_CLEAR(vals);
        }
        if ((bad = ACC(a, A_BAD)) == NULL) goto next;
        {
            Py_ssize_t nb = PyObject_Length(bad);
            if (nb < 0) goto next;
            if (nb) {
                PyObject *r = PyObject_CallMethodOneArg(wsbad, S_extend, bad);
                if (r == NULL) goto next;
                Py_DECREF(r);
                if (add_attr(ws, S_bad_total, nb) < 0) goto next;
            }
        }
        if ((last_b = PyObject_GetAttr(ws, S_last_b)) == NULL) goto next;
        {
            int later = PyObject_RichCompareBool(b, last_b, Py_GT);
            if (later < 0 || (later && PyObject_SetAttr(ws, S_last_b, b) < 0)) goto next;
        }
        if ((kk = PyLong_FromSsize_t(PyList_GET_SIZE(counts))) == NULL || PyList_Append(counts, c) < 0) goto next;
        {
            PyObject *more = PyTuple_GET_ITEM(route, 3);
            for (Py_ssize_t g = -1; g < PyTuple_GET_SIZE(more); g++) {
                PyObject *blk, *rr;
                if (g < 0) { blk = PyTuple_GET_ITEM(route, 1); rr = PyTuple_GET_ITEM(route, 2); }
                else {
                    PyObject *pair = PyTuple_GET_ITEM(more, g);
                    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                        PyErr_SetString(PyExc_TypeError, "flush: a route's other blocks are not (block, rows)");
                        goto next;
                    }
                    blk = PyTuple_GET_ITEM(pair, 0); rr = PyTuple_GET_ITEM(pair, 1);
                }
                PyObject *id = PyLong_FromVoidPtr(blk);
                if (id == NULL) goto next;
                PyObject *t = PyDict_GetItemWithError(targets, id);  /* borrowed */
                if (t == NULL) {
                    if (PyErr_Occurred()) { Py_DECREF(id); goto next; }
                    PyObject *l1 = PyList_New(0), *l2 = PyList_New(0), *l3 = PyList_New(0);
                    PyObject *nt = (l1 && l2 && l3) ? PyTuple_Pack(4, blk, l1, l2, l3) : NULL;
                    Py_XDECREF(l1); Py_XDECREF(l2); Py_XDECREF(l3);
                    int r = nt ? PyDict_SetItem(targets, id, nt) : -1;
                    Py_XDECREF(nt);
                    if (r < 0) { Py_DECREF(id); goto next; }
                    t = nt;  /* the dict holds it */
                }
                Py_DECREF(id);
                Py_ssize_t nr = PyObject_Length(rr);
                if (nr < 0) goto next;
                PyObject *trows = PyTuple_GET_ITEM(t, 1);
                if (PyList_SetSlice(trows, PyList_GET_SIZE(trows), PyList_GET_SIZE(trows), rr) < 0) goto next;
                if (extend_repeat(PyTuple_GET_ITEM(t, 2), b, nr) < 0 || extend_repeat(PyTuple_GET_ITEM(t, 3), kk, nr) < 0)
                    goto next;
            }
        }
        ok = 1;
    next:
        Py_XDECREF(route); Py_XDECREF(c); Py_XDECREF(vals); Py_XDECREF(subj); Py_XDECREF(bad); Py_XDECREF(wsbad);
        Py_XDECREF(bucket_t); Py_XDECREF(last_b); Py_XDECREF(kk);
        if (!ok) goto out;
    }
    result = PyTuple_Pack(4, counts, targets, lat_by, rage_by);
out:
    Py_XDECREF(counts); Py_XDECREF(targets); Py_XDECREF(lat_by); Py_XDECREF(rage_by);
    return result;
}

static PyObject *count(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "count(accs: dict, complaints: list, event, key)");
        return NULL;
    }
    if (L_decode == NULL) { PyErr_SetString(PyExc_RuntimeError, "setup_lines() was not called"); return NULL; }
    if (count_c(args[0], args[1], args[2], args[3]) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *decode_line_py(PyObject *self, PyObject *raw) {
    if (L_decode == NULL) { PyErr_SetString(PyExc_RuntimeError, "setup_lines() was not called"); return NULL; }
    return decode_line_c(raw);
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "Set the ring and indicator layout."},
    {"binom_sf_below", (PyCFunction)(void (*)(void))binom_sf_below, METH_FASTCALL, "detect._binom_sf_below, compiled."},
    {"close_block", close_block, METH_VARARGS, "Fold closed buckets into baselines and step the CUSUMs."},
    {"screen", screen, METH_VARARGS, "Window sums, candidate cells past the Chernoff screen, CUSUM crossings."},
    {"scatter", scatter, METH_VARARGS, "Add count vectors to the fine and coarse rings."},
    {"setup_lines", setup_lines, METH_VARARGS, "Set the Python pieces of the line path."},
    {"decode_line", (PyCFunction)decode_line_py, METH_O, "decode.decode_line, compiled."},
    {"setup_scan", (PyCFunction)setup_scan, METH_O, "Enable the line scanner (the longest workflow name)."},
    {"scan", (PyCFunction)scan_py, METH_O, "The line scanner's reading of a line, or None."},
    {"feed", (PyCFunction)(void (*)(void))feed, METH_FASTCALL, "decode_line and _add_wire of one line."},
    {"count", (PyCFunction)(void (*)(void))count, METH_FASTCALL, "Pipeline._add_wire on the given accumulators."},
    {"flush", (PyCFunction)(void (*)(void))flush, METH_FASTCALL, "Pipeline._flush's loop over the accumulators."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Compiled kernels of the vitals monitor's tick.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
