/* The compiled fast path of ingest/parse.py: one block of CSV bytes -> the block's typed columns, in one pass.
 *
 * It takes only what it can give exactly as pandas.read_csv (C engine) would, and says so when it cannot:
 *
 * - records end with "\n" or "\r\n"; fields are separated by one byte; a field may be quoted (RFC 4180: "" inside
 *   quotes is one quote; separators and newlines inside quotes are data). Every record has the header's number of
 *   fields.
 * - no record starts with a blank (pandas' blank-line state loses such blanks at its reading chunks' edges).
 * - float fields of the form -?d*(.d*)?([eE][+-]?d+)? with at most 15 digits and a decimal exponent within
 *   +-22 convert here: the digits make an integer below 2^53 and one IEEE multiplication or division by an exact
 *   power of ten rounds it correctly, which is what every pandas float parser gives for them (fast_float, and the
 *   older precise_xstrtod, which accumulates the same integer exactly). An empty field is missing (NaN). Any other
 *   float field of printable ASCII not starting with a space ("nan", "1e999", 17 digits) is left to pandas: its
 *   position and bytes are returned, and the caller converts them with pandas itself.
 * - int fields of the form -?d{1,19} within +-(2^63 - 1) convert here; an empty field is missing (INT64_MIN,
 *   which a value cannot be).
 * - category fields: the (unquoted) bytes; one of pandas' missing-value strings (passed in) is missing (-1). Codes
 *   are local to the block, in order of first appearance; the values are returned as bytes for the caller to
 *   decode.
 *
 * Anything else (a quote inside an unquoted field, a lone "\r", a NUL byte, a field count that differs, a quoted
 * number, an int outside the form) returns None: the caller parses the block with pandas, whose slow path finds and
 * diagnoses the bad rows. The scan runs without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define INT_MISSING INT64_MIN

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* ---- growable byte arena and the per-column table of distinct values ---- */

typedef struct {
    char *bytes;
    Py_ssize_t size, cap;
} Arena;

static int arena_add(Arena *a, const char *src, Py_ssize_t n, Py_ssize_t *at) {
    if (n && a->size + n > a->cap) {
        Py_ssize_t cap = a->cap ? a->cap : 4096;
        while (cap < a->size + n) cap *= 2;
        char *grown = realloc(a->bytes, (size_t)cap);
        if (!grown) return -1;
        a->bytes = grown;
        a->cap = cap;
    }
    if (n) memcpy(a->bytes + a->size, src, (size_t)n);
    *at = a->size;
    a->size += n;
    return 0;
}

typedef struct {
    Py_ssize_t start, len; /* in the arena */
    uint64_t hash;
    int32_t code; /* the value's code, or -1 for one of pandas' missing-value strings */
} Value;

typedef struct {
    int32_t *slots; /* value index + 1; 0 = empty */
    Py_ssize_t mask;
    Value *values; /* every distinct field seen, missing-value strings included */
    Py_ssize_t n, cap;
    int32_t codes; /* values that are not missing */
    Arena arena;
} Table;

typedef struct {
    const char **values;
    Py_ssize_t *lens;
    Py_ssize_t n;
} Missing;

static int is_missing(const Missing *m, const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < m->n; i++)
        if (m->lens[i] == n && (n == 0 || memcmp(m->values[i], s, (size_t)n) == 0)) return 1;
    return 0;
}

static uint64_t hash_bytes(const char *s, Py_ssize_t n) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

static int table_grow(Table *t) {
    Py_ssize_t size = t->mask ? 2 * (t->mask + 1) : 64;
    int32_t *slots = calloc((size_t)size, sizeof(int32_t));
    if (!slots) return -1;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        Py_ssize_t k = (Py_ssize_t)(t->values[i].hash & (uint64_t)(size - 1));
        while (slots[k]) k = (k + 1) & (size - 1);
        slots[k] = (int32_t)(i + 1);
    }
    free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    return 0;
}

/* The code of value s[0:n] (added if new; -1 if it is a missing-value string), or -2 when out of memory. */
static int32_t table_code(Table *t, const char *s, Py_ssize_t n, const Missing *missing) {
    if (2 * (t->n + 1) > t->mask + 1 && table_grow(t) < 0) return -2;
    uint64_t h = hash_bytes(s, n);
    Py_ssize_t k = (Py_ssize_t)(h & (uint64_t)t->mask);
    for (int32_t slot; (slot = t->slots[k]); k = (k + 1) & t->mask) {
        Value *v = &t->values[slot - 1];
        if (v->hash == h && v->len == n && (n == 0 || memcmp(t->arena.bytes + v->start, s, (size_t)n) == 0))
            return v->code;
    }
    if (t->n == t->cap) {
        Py_ssize_t cap = t->cap ? 2 * t->cap : 64;
        Value *grown = realloc(t->values, (size_t)cap * sizeof(Value));
        if (!grown) return -2;
        t->values = grown;
        t->cap = cap;
    }
    Value *v = &t->values[t->n];
    if (arena_add(&t->arena, s, n, &v->start) < 0) return -2;
    v->len = n;
    v->hash = h;
    v->code = is_missing(missing, s, n) ? -1 : t->codes++;
    t->slots[k] = (int32_t)(++t->n);
    return v->code;
}

static void table_free(Table *t) {
    free(t->slots);
    free(t->values);
    free(t->arena.bytes);
}

/* ---- fields ---- */

/* The end of the number of the exact form (see the top) that starts at p, and *out its value; NULL if the bytes
 * from p do not start with one. */
static const char *scan_float(const char *p, const char *end, float *out) {
    int negative = 0, digits = 0, decimals = 0;
    uint64_t mantissa = 0;
    if (p < end && *p == '-') negative = 1, p++;
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) mantissa = mantissa * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, digits++, decimals++)
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
    }
    if (digits == 0 || digits > 15) return NULL;
    long exponent = -decimals;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0, edigits = 0;
        long e = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p == '-', p++;
        for (; p < end && *p >= '0' && *p <= '9' && edigits < 4; p++, edigits++) e = e * 10 + (*p - '0');
        if (edigits == 0) return NULL;
        exponent += eneg ? -e : e;
    }
    if (exponent > 22 || exponent < -22) return NULL;
    double value = (double)mantissa;
    value = exponent >= 0 ? value * POW10[exponent] : value / POW10[-exponent];
    *out = (float)(negative ? -value : value);
    return p;
}

/* The same for ints: -?d{1,19} within +-(2^63 - 1). */
static const char *scan_int(const char *p, const char *end, int64_t *out) {
    int negative = 0, digits = 0;
    uint64_t value = 0; /* 19 digits stay below 2^64 */
    if (p < end && *p == '-') negative = 1, p++;
    for (; p < end && *p >= '0' && *p <= '9' && digits < 20; p++, digits++) value = value * 10 + (uint64_t)(*p - '0');
    /* -2^63 is the missing value: the pandas path refuses it too */
    if (digits == 0 || digits > 19 || value > (uint64_t)INT64_MAX) return NULL;
    *out = negative ? -(int64_t)value : (int64_t)value;
    return p;
}

typedef struct {
    int64_t *at;  /* float index * rows capacity + row, per field left to pandas */
    Py_ssize_t n, cap;
    Arena text;   /* their bytes, each followed by "\n" */
} Hard;

enum { OK = 0, REJECT = 1, NO_MEMORY = 2 };

/* Bytes that end or interrupt an unquoted field: the separator, "\n", "\r", the quote and NUL. */
static void byte_classes(unsigned char special[256], char sep) {
    memset(special, 0, 256);
    special[(unsigned char)sep] = special['\n'] = special['\r'] = special['"'] = special[0] = 1;
}

typedef struct {
    const char *data;
    Py_ssize_t size, capacity, rows;
    const char *kinds;
    int columns;
    char sep;
    float *floats;
    int64_t *ints;
    int32_t *codes;
    Table *tables;
    const Missing *missing;
    Hard hard;
    Arena scratch; /* a quoted field's unescaped bytes */
} Scan;

/* Whether a float field may be left to pandas' own conversion (a one-column read_csv of such fields): printable
 * ASCII not starting with a space. pandas would strip a byte-order mark at the start of that text, and drops a
 * record's leading blanks where they straddle its 256 KiB reading chunks: such fields give the block back. */
static int plain_ascii(const char *s, const char *end) {
    if (s == end || (unsigned char)*s <= ' ') return 0;
    for (; s < end; s++)
        if ((unsigned char)*s < ' ' || (unsigned char)*s > '~') return 0;
    return 1;
}

static int hard_add(Scan *sc, int64_t at, const char *s, Py_ssize_t n) {
    Hard *h = &sc->hard;
    Py_ssize_t ignored;
    if (h->n == h->cap) {
        Py_ssize_t cap = h->cap ? 2 * h->cap : 1024;
        int64_t *grown = realloc(h->at, (size_t)cap * sizeof(int64_t));
        if (!grown) return NO_MEMORY;
        h->at = grown;
        h->cap = cap;
    }
    h->at[h->n++] = at;
    if (arena_add(&h->text, s, n, &ignored) < 0 || arena_add(&h->text, "\n", 1, &ignored) < 0) return NO_MEMORY;
    return OK;
}

static int scan(Scan *sc) {
    const char *p = sc->data, *end = sc->data + sc->size;
    const char sep = sc->sep;
    unsigned char special[256];
    byte_classes(special, sep);
    Py_ssize_t row = 0;
    while (p < end) {
        if (row == sc->capacity) return REJECT;
        /* pandas reads a record that starts with blanks through its blank-line state, which loses them where they
         * straddle its reading chunks: such blocks are pandas' alone */
        if ((*p == ' ' || *p == '\t' || *p == '\v' || *p == '\f') && *p != sep) return REJECT;
        Py_ssize_t fi = 0, ii = 0, ci = 0;
        for (int col = 0; col < sc->columns; col++) {
            const char *f, *fe;
            int quoted = 0, converted = 0;
            char kind = sc->kinds[col];
            float fvalue = 0;
            int64_t ivalue = 0;
            if (p < end && *p == '"') {
                /* quoted: up to the closing quote, "" being one quote */
                quoted = 1;
                sc->scratch.size = 0;
                const char *q = ++p;
                for (;;) {
                    const char *close = memchr(q, '"', (size_t)(end - q));
                    if (!close) return REJECT;
                    Py_ssize_t ignored;
                    if (arena_add(&sc->scratch, q, close - q, &ignored) < 0) return NO_MEMORY;
                    if (close + 1 < end && close[1] == '"') {
                        if (arena_add(&sc->scratch, "\"", 1, &ignored) < 0) return NO_MEMORY;
                        q = close + 2;
                        continue;
                    }
                    p = close + 1;
                    break;
                }
                f = sc->scratch.bytes ? sc->scratch.bytes : "";
                fe = f + sc->scratch.size;
            } else {
                f = p;
                /* a number of the exact form that ends the field is converted where it stands (no second pass) */
                const char *q = kind == 'f' ? scan_float(p, end, &fvalue) : kind == 'i' ? scan_int(p, end, &ivalue)
                                                                                      : NULL;
                if (q && (q == end || *q == sep || *q == '\n' || *q == '\r')) p = q, converted = 1;
                while (p < end && !special[(unsigned char)*p]) p++;
                if (p < end && (*p == '"' || *p == '\0' || (*p == '\r' && (p + 1 == end || p[1] != '\n'))))
                    return REJECT;
                fe = p;
            }
            /* the field's end: a separator before the last column, the record's end after it */
            int last = col == sc->columns - 1;
            if (!last) {
                if (p >= end || *p != sep) return REJECT;
                p++;
            } else if (p < end) {
                if (*p == '\r') p++;
                if (p >= end || *p != '\n') return REJECT;
                p++;
            }
            if (kind == 'f') {
                float *out = &sc->floats[fi * sc->capacity + row];
                const char *q;
                if (quoted) return REJECT;
                if (converted) {
                    *out = fvalue;
                } else if (fe == f) {
                    *out = NAN;
                } else if (!(q = scan_float(f, fe, out)) || q != fe) {
                    if (!plain_ascii(f, fe)) return REJECT;
                    *out = 0.0f;
                    int status = hard_add(sc, (int64_t)(fi * sc->capacity + row), f, fe - f);
                    if (status != OK) return status;
                }
                fi++;
            } else if (kind == 'i') {
                int64_t *out = &sc->ints[ii * sc->capacity + row];
                if (quoted) return REJECT;
                const char *q;
                if (converted) *out = ivalue;
                else if (fe == f) *out = INT_MISSING;
                else if (!(q = scan_int(f, fe, out)) || q != fe) return REJECT;
                ii++;
            } else {
                int32_t code = table_code(&sc->tables[ci], f, fe - f, sc->missing);
                if (code < -1) return NO_MEMORY;
                sc->codes[ci * sc->capacity + row] = code;
                ci++;
            }
        }
        row++;
    }
    sc->rows = row;
    return OK;
}

/* parse(data, kinds, sep, missing, floats, ints, codes, capacity)
 *   -> None (not for the fast path) or (rows, hard positions (int64 bytes), hard text, [values per category column])
 * floats/ints/codes: writable column-major buffers of (columns of that kind) x capacity. */
static PyObject *parse(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, fbuf, ibuf, cbuf;
    const char *kinds;
    Py_ssize_t nkinds, capacity;
    int sep;
    PyObject *missing_seq;
    if (!PyArg_ParseTuple(args, "y*s#iOw*w*w*n", &data, &kinds, &nkinds, &sep, &missing_seq, &fbuf, &ibuf, &cbuf,
                          &capacity))
        return NULL;
    PyObject *result = NULL;
    Scan sc;
    memset(&sc, 0, sizeof sc);
    Missing missing = {NULL, NULL, 0};
    PyObject *missing_fast = PySequence_Tuple(missing_seq); /* ours: the scan reads its items without the GIL */
    Py_ssize_t nf = 0, ni = 0, nc = 0;
    for (Py_ssize_t i = 0; i < nkinds; i++) {
        nf += kinds[i] == 'f';
        ni += kinds[i] == 'i';
        nc += kinds[i] == 'c';
    }
    if (!missing_fast) goto done;
    if (nf + ni + nc != nkinds || nkinds < 1 || nkinds > INT32_MAX || capacity < 0 || sep < 1 || sep > 127) {
        PyErr_SetString(PyExc_ValueError, "kinds must be of 'f', 'i', 'c'; sep one ASCII byte; capacity >= 0");
        goto done;
    }
    if ((nf && capacity > fbuf.len / nf / (Py_ssize_t)sizeof(float)) ||
        (ni && capacity > ibuf.len / ni / (Py_ssize_t)sizeof(int64_t)) ||
        (nc && capacity > cbuf.len / nc / (Py_ssize_t)sizeof(int32_t))) {
        PyErr_SetString(PyExc_ValueError, "an output buffer is smaller than its columns x capacity");
        goto done;
    }
    if ((uintptr_t)fbuf.buf % sizeof(float) || (uintptr_t)ibuf.buf % sizeof(int64_t) ||
        (uintptr_t)cbuf.buf % sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "an output buffer is not aligned to its item size");
        goto done;
    }
    missing.n = PyTuple_GET_SIZE(missing_fast);
    missing.values = PyMem_Calloc((size_t)missing.n + 1, sizeof(char *));
    missing.lens = PyMem_Calloc((size_t)missing.n + 1, sizeof(Py_ssize_t));
    if (!missing.values || !missing.lens) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < missing.n; i++) {
        char *s;
        if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(missing_fast, i), &s, &missing.lens[i]) < 0) goto done;
        missing.values[i] = s;
    }
    sc.tables = calloc((size_t)nc + 1, sizeof(Table));
    if (!sc.tables) {
        PyErr_NoMemory();
        goto done;
    }
    sc.data = data.buf;
    sc.size = data.len;
    sc.capacity = capacity;
    sc.kinds = kinds;
    sc.columns = (int)nkinds;
    sc.sep = (char)sep;
    sc.floats = fbuf.buf;
    sc.ints = ibuf.buf;
    sc.codes = cbuf.buf;
    sc.missing = &missing;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = scan(&sc);
    Py_END_ALLOW_THREADS
    if (status == NO_MEMORY) {
        PyErr_NoMemory();
        goto done;
    }
    if (status == REJECT) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *vocab = PyList_New(nc);
    if (!vocab) goto done;
    for (Py_ssize_t j = 0; j < nc; j++) {
        Table *t = &sc.tables[j];
        PyObject *values = PyList_New(t->codes);
        if (!values) {
            Py_DECREF(vocab);
            goto done;
        }
        PyList_SET_ITEM(vocab, j, values);
        for (Py_ssize_t k = 0; k < t->n; k++) {
            Value *value = &t->values[k];
            if (value->code < 0) continue;
            PyObject *v = PyBytes_FromStringAndSize(t->arena.bytes + value->start, value->len);
            if (!v) {
                Py_DECREF(vocab);
                goto done;
            }
            PyList_SET_ITEM(values, value->code, v);
        }
    }
    result = Py_BuildValue("(ny#y#N)", sc.rows, sc.hard.at ? (const char *)sc.hard.at : "",
                           sc.hard.n * (Py_ssize_t)sizeof(int64_t),
                           sc.hard.text.bytes ? sc.hard.text.bytes : "", sc.hard.text.size, vocab);
done:
    if (sc.tables)
        for (Py_ssize_t j = 0; j < nc; j++) table_free(&sc.tables[j]);
    free(sc.tables);
    free(sc.hard.at);
    free(sc.hard.text.bytes);
    free(sc.scratch.bytes);
    PyMem_Free(missing.values);
    PyMem_Free(missing.lens);
    Py_XDECREF(missing_fast);
    PyBuffer_Release(&data);
    PyBuffer_Release(&fbuf);
    PyBuffer_Release(&ibuf);
    PyBuffer_Release(&cbuf);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS, "Parse one CSV block into column-major buffers (see ingest/_fastcsv.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcsv", "The compiled fast path of ingest.parse.",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fastcsv(void) { return PyModule_Create(&module); }
