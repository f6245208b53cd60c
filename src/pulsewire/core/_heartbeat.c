/* The session's two heartbeat fast paths, compiled: pulsewire.core._heartbeat.
 *
 * Why C: at 10,000 idle connections the heartbeat is the only work there is, and in
 * bytecode these two methods cost more than the rest of a PING/PONG exchange together
 * (benchmarks/RESULTS.md, "## bench_idle"). This file is a line-for-line translation of
 * pulsewire/core/heartbeat.py, which stays the reference: the tests run both on the same
 * inputs and compare every result and every field they leave behind.
 *
 * The constants (the two heads, the float tag, the largest fixed seq, the record's indexes)
 * are not written here: configure(), called once by heartbeat.py at import, passes them in
 * from the Python modules that own them, and checks the one thing this file assumes, the
 * fixed layout's shape (an 8-byte head, a 32-bit seq, the tag, a float64: 21 bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------ constants (configure) */

static int configured = 0;
static uint64_t ping_head, pong_head;
static int float_tag;
static long long max_fixed_seq;
static double epsilon, no_time, no_sample;
static Py_ssize_t frame_size; /* 21: head (8), seq (4), float tag (1), sent_at (8) */
static Py_ssize_t i_evidence, i_sent, i_ping, i_delay, i_first_ping, i_full_at,
    i_pings_received, i_staged, record_size;

static PyObject *no_reply;        /* (b"", None): a PONG taken, the deadline only moved later */
static PyObject *str_add;         /* "add" */
static PyObject *str_next_deadline;

/* ------------------------------------------------------------ the object */

/* The four fields an idle heartbeat touches, right after the object header (heartbeat.py's
 * module docstring explains why they are a base class of their own). */
typedef struct {
    PyObject_HEAD
    long long ping_seq;  /* _ping_seq: also the count of PINGs sent */
    PyObject *record;    /* _record: array('d'), see pulsewire/core/record.py */
    PyObject *rtt;       /* _rtt: the RttEstimator */
    PyObject *steady;    /* _steady: the shared steady-state tuple, or None */
} Fields;

static int
fields_traverse(Fields *self, visitproc visit, void *arg)
{
    Py_VISIT(self->record);
    Py_VISIT(self->rtt);
    Py_VISIT(self->steady);
    return 0;
}

static int
fields_clear(Fields *self)
{
    Py_CLEAR(self->record);
    Py_CLEAR(self->rtt);
    Py_CLEAR(self->steady);
    return 0;
}

static void
fields_dealloc(Fields *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fields_clear(self);
    type->tp_free((PyObject *)self);
}

/* ------------------------------------------------------------ helpers */

static inline uint64_t
load_be64(const unsigned char *p)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) {
        value = (value << 8) | p[i];
    }
    return value;
}

static inline void
store_be64(unsigned char *p, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(value & 0xFF);
        value >>= 8;
    }
}

static inline uint32_t
load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void
store_be32(unsigned char *p, uint32_t value)
{
    p[0] = (unsigned char)(value >> 24);
    p[1] = (unsigned char)(value >> 16);
    p[2] = (unsigned char)(value >> 8);
    p[3] = (unsigned char)value;
}

/* The steady tuple's fields: (gap, depth, interval, delay_span, timeout, suspect_after,
 * cap, any_evidence, draw). */
typedef struct {
    double gap, depth, interval, delay_span, timeout, suspect_after, cap;
    int any_evidence;
    PyObject *draw; /* borrowed */
} Steady;

static int
read_steady(PyObject *tuple, Steady *s)
{
    if (!PyTuple_CheckExact(tuple) || PyTuple_GET_SIZE(tuple) != 9) {
        PyErr_SetString(PyExc_TypeError, "_steady must be a 9-tuple or None");
        return -1;
    }
    double *numbers[7] = {&s->gap, &s->depth, &s->interval, &s->delay_span,
                          &s->timeout, &s->suspect_after, &s->cap};
    for (int i = 0; i < 7; i++) {
        double value = PyFloat_AsDouble(PyTuple_GET_ITEM(tuple, i));
        if (value == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        *numbers[i] = value;
    }
    s->any_evidence = PyObject_IsTrue(PyTuple_GET_ITEM(tuple, 7));
    if (s->any_evidence < 0) {
        return -1;
    }
    s->draw = PyTuple_GET_ITEM(tuple, 8);
    return 0;
}

/* No later than the liveness deadlines: dead at evidence + timeout, suspect at evidence +
 * suspect_after (the tracker's deadline() when not suspected and no close is under way). */
static inline double
liveness_bound(double deadline, double evidence, const Steady *s)
{
    double dead_at = evidence + s->timeout;
    double suspect_at = evidence + s->suspect_after;
    if (dead_at < deadline) {
        deadline = dead_at;
    }
    return suspect_at < deadline ? suspect_at : deadline;
}

/* interval + delay_span * draw(): the next PING delay. */
static int
draw_delay(const Steady *s, double *delay)
{
    PyObject *draw = Py_NewRef(s->draw); /* the session's tuple may change while it runs */
    PyObject *drawn = PyObject_CallNoArgs(draw);
    Py_DECREF(draw);
    if (drawn == NULL) {
        return -1;
    }
    double value = PyFloat_AsDouble(drawn);
    Py_DECREF(drawn);
    if (value == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *delay = s->interval + s->delay_span * value;
    return 0;
}

static int
get_record(Fields *self, Py_buffer *view)
{
    if (self->record == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_record");
        return -1;
    }
    if (PyObject_GetBuffer(self->record, view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        return -1;
    }
    if (view->itemsize != sizeof(double) || view->format == NULL
        || strcmp(view->format, "d") != 0 || view->len < record_size * (Py_ssize_t)sizeof(double)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "_record must be a whole array('d') record");
        return -1;
    }
    return 0;
}

/* The steady constants and the record, for a PING either way; NULL with an error set. */
static double *
open_steady(Fields *self, PyObject *steady_tuple, Steady *s, Py_buffer *view)
{
    if (read_steady(steady_tuple, s) < 0 || get_record(self, view) < 0) {
        return NULL;
    }
    return (double *)view->buf;
}

static int
add_rtt(Fields *self, double sample)
{
    PyObject *value = PyFloat_FromDouble(sample);
    if (value == NULL) {
        return -1;
    }
    PyObject *done = PyObject_CallMethodOneArg(self->rtt, str_add, value);
    Py_DECREF(value);
    if (done == NULL) {
        return -1;
    }
    Py_DECREF(done);
    return 0;
}

/* A heartbeat frame in the fixed layout: head, seq, the float tag, then sent_at's eight
 * big-endian bytes (a PONG copies the PING's, so the time it echoes is equal to the bit). */
static PyObject *
heartbeat_frame(uint64_t head, uint32_t seq, const unsigned char *sent_at)
{
    PyObject *frame = PyBytes_FromStringAndSize(NULL, frame_size);
    if (frame == NULL) {
        return NULL;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(frame);
    store_be64(p, head);
    store_be32(p + 8, seq);
    p[12] = (unsigned char)float_tag;
    memcpy(p + 13, sent_at, 8);
    return frame;
}

#define NOT_TAKEN Py_RETURN_NONE

/* (frame, deadline), taking the reference to frame. */
static PyObject *
reply_pair(PyObject *frame, double deadline)
{
    PyObject *when = PyFloat_FromDouble(deadline);
    PyObject *pair = when == NULL ? NULL : PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(frame);
        Py_XDECREF(when);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, frame);
    PyTuple_SET_ITEM(pair, 1, when);
    return pair;
}

/* ------------------------------------------------------------ receive_heartbeat */

/* Both fast paths start alike: check the call, read ``now`` (the last argument), and see
 * whether the session is in the steady state. Returns the steady tuple (borrowed), or NULL:
 * with an error set, or without one when the fast path is not taken. */
static PyObject *
begin(Fields *self, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected,
      const char *usage, double *now)
{
    if (nargs != expected) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    *now = PyFloat_AsDouble(args[nargs - 1]);
    if (*now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!configured || self->steady == NULL || self->steady == Py_None) {
        return NULL;
    }
    return self->steady;
}

#define NOT_BEGUN (PyErr_Occurred() ? NULL : Py_NewRef(Py_None))

static PyObject *
receive_heartbeat(Fields *self, PyObject *const *args, Py_ssize_t nargs)
{
    double now;
    PyObject *steady_tuple = begin(self, args, nargs, 2, "receive_heartbeat(frame, now)", &now);
    if (steady_tuple == NULL) {
        return NOT_BEGUN;
    }
    unsigned char frame[32];
    Py_buffer in;
    if (PyObject_GetBuffer(args[0], &in, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (in.len != frame_size) {
        PyBuffer_Release(&in);
        NOT_TAKEN;
    }
    memcpy(frame, in.buf, (size_t)frame_size);
    PyBuffer_Release(&in);
    if (frame[12] != float_tag) {
        NOT_TAKEN;
    }
    uint64_t head = load_be64(frame);
    uint32_t seq = load_be32(frame + 8);
    double sent_at = PyFloat_Unpack8((const char *)(frame + 13), 0);
    if (sent_at == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (head == pong_head) {
        Py_buffer view;
        if (get_record(self, &view) < 0) {
            return NULL;
        }
        double *r = (double *)view.buf;
        /* The answer to our latest PING, echoing its time to the bit. */
        if (!seq || (long long)seq != self->ping_seq || sent_at != r[i_ping]) {
            PyBuffer_Release(&view);
            NOT_TAKEN;
        }
        if (now > r[i_evidence]) {
            r[i_evidence] = now;
        }
        r[i_first_ping] = no_time;
        /* Every other sample waits in the record for the next one. */
        double staged = r[i_staged];
        if (staged == no_sample) {
            r[i_staged] = now - sent_at;
            PyBuffer_Release(&view);
        }
        else {
            r[i_staged] = no_sample;
            PyBuffer_Release(&view);
            if (add_rtt(self, staged) < 0 || add_rtt(self, now - sent_at) < 0) {
                return NULL;
            }
        }
        Py_INCREF(no_reply);
        return no_reply;
    }
    if (head != ping_head) {
        NOT_TAKEN;
    }
    Steady s;
    Py_buffer view;
    double *r = open_steady(self, steady_tuple, &s, &view);
    if (r == NULL) {
        return NULL;
    }
    double full_at = r[i_full_at];
    full_at = (full_at > now ? full_at : now) + s.gap;
    if (full_at - now > s.depth) {
        PyBuffer_Release(&view);
        NOT_TAKEN; /* the general path refuses it, with the close code */
    }
    r[i_full_at] = full_at;
    r[i_pings_received] += 1.0;
    double delay;
    if (draw_delay(&s, &delay) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    r[i_delay] = delay;
    double evidence = r[i_evidence];
    double sent = r[i_sent];
    double deadline;
    if (s.any_evidence && now > evidence && now > sent) {
        r[i_evidence] = r[i_sent] = now;
        r[i_first_ping] = no_time;
        deadline = now + (delay < s.cap ? delay : s.cap);
    }
    else {
        if (s.any_evidence) {
            if (now > evidence) {
                r[i_evidence] = evidence = now;
            }
            r[i_first_ping] = no_time;
        }
        if (now > sent) {
            r[i_sent] = sent = now;
        }
        double quiet_since = evidence < sent ? evidence : sent;
        double last_ping = r[i_ping];
        deadline = (last_ping > quiet_since ? last_ping : quiet_since) + delay;
        deadline = liveness_bound(deadline, evidence, &s);
    }
    PyBuffer_Release(&view);
    PyObject *pong = heartbeat_frame(pong_head, seq, frame + 13);
    if (pong == NULL) {
        return NULL;
    }
    return reply_pair(pong, deadline);
}

/* ------------------------------------------------------------ heartbeat_due */

static PyObject *
lazy_fire(Fields *self)
{
    PyObject *deadline = PyObject_CallMethodNoArgs((PyObject *)self, str_next_deadline);
    if (deadline == NULL) {
        return NULL;
    }
    if (deadline == Py_None) { /* cannot happen in the steady state: let the general path see */
        Py_DECREF(deadline);
        NOT_TAKEN;
    }
    double when = PyFloat_AsDouble(deadline);
    Py_DECREF(deadline);
    if (when == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    return empty == NULL ? NULL : reply_pair(empty, when);
}

static PyObject *
heartbeat_due(Fields *self, PyObject *const *args, Py_ssize_t nargs)
{
    double now;
    PyObject *steady_tuple = begin(self, args, nargs, 1, "heartbeat_due(now)", &now);
    if (steady_tuple == NULL) {
        return NOT_BEGUN;
    }
    Steady s;
    Py_buffer view;
    double *r = open_steady(self, steady_tuple, &s, &view);
    if (r == NULL) {
        return NULL;
    }
    double evidence = r[i_evidence];
    double suspect_at = evidence + s.suspect_after;
    if (now + epsilon >= suspect_at) {
        PyBuffer_Release(&view);
        NOT_TAKEN;
    }
    double sent = r[i_sent];
    double quiet_since = evidence < sent ? evidence : sent;
    double last_ping = r[i_ping];
    if (now + epsilon < (last_ping > quiet_since ? last_ping : quiet_since) + r[i_delay]) {
        PyBuffer_Release(&view);
        return lazy_fire(self);
    }
    long long seq = self->ping_seq + 1;
    if (seq > max_fixed_seq) { /* the general encoding: handle_timer() writes it */
        PyBuffer_Release(&view);
        NOT_TAKEN;
    }
    if (r[i_first_ping] == no_time) {
        r[i_first_ping] = now;
    }
    r[i_ping] = r[i_sent] = now;
    double delay;
    if (draw_delay(&s, &delay) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    r[i_delay] = delay;
    PyBuffer_Release(&view);
    self->ping_seq = seq;
    double deadline = now + delay;
    deadline = liveness_bound(deadline, evidence, &s);
    unsigned char sent_at[8];
    if (PyFloat_Pack8(now, (char *)sent_at, 0) < 0) {
        return NULL;
    }
    PyObject *ping = heartbeat_frame(ping_head, (uint32_t)seq, sent_at);
    if (ping == NULL) {
        return NULL;
    }
    return reply_pair(ping, deadline);
}

/* ------------------------------------------------------------ the type */

static PyMethodDef fields_methods[] = {
    {"receive_heartbeat", (PyCFunction)(void (*)(void))receive_heartbeat, METH_FASTCALL,
     "receive_heartbeat(frame, now): compiled HeartbeatFields.receive_heartbeat of "
     "pulsewire.core.heartbeat."},
    {"heartbeat_due", (PyCFunction)(void (*)(void))heartbeat_due, METH_FASTCALL,
     "heartbeat_due(now): compiled HeartbeatFields.heartbeat_due of pulsewire.core.heartbeat."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef fields_members[] = {
    {"_ping_seq", T_LONGLONG, offsetof(Fields, ping_seq), 0, NULL},
    {"_record", T_OBJECT_EX, offsetof(Fields, record), 0, NULL},
    {"_rtt", T_OBJECT_EX, offsetof(Fields, rtt), 0, NULL},
    {"_steady", T_OBJECT_EX, offsetof(Fields, steady), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FieldsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pulsewire.core._heartbeat.HeartbeatFields",
    .tp_doc = PyDoc_STR("The session's heartbeat fields and fast paths, compiled."),
    .tp_basicsize = sizeof(Fields),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)fields_dealloc,
    .tp_traverse = (traverseproc)fields_traverse,
    .tp_clear = (inquiry)fields_clear,
    .tp_methods = fields_methods,
    .tp_members = fields_members,
};

/* ------------------------------------------------------------ the module */

static PyObject *
configure(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *names[] = {
        "ping_head", "pong_head", "float_tag", "max_fixed_seq", "frame_size", "epsilon",
        "no_time", "no_sample", "last_evidence", "last_sent", "last_ping", "ping_delay",
        "first_ping", "pings_full_at", "pings_received", "rtt_staged", "record_size", NULL,
    };
    unsigned long long ping, pong;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "$KKiLndddnnnnnnnnn", names, &ping, &pong, &float_tag,
            &max_fixed_seq, &frame_size, &epsilon, &no_time, &no_sample, &i_evidence, &i_sent,
            &i_ping, &i_delay, &i_first_ping, &i_full_at, &i_pings_received, &i_staged,
            &record_size)) {
        return NULL;
    }
    Py_ssize_t indexes[] = {i_evidence, i_sent, i_ping, i_delay, i_first_ping,
                            i_full_at, i_pings_received, i_staged};
    for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++) {
        if (indexes[i] < 0 || indexes[i] >= record_size) {
            PyErr_SetString(PyExc_ValueError, "record index out of range");
            return NULL;
        }
    }
    if (frame_size != 21 || max_fixed_seq > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "the fixed heartbeat layout is 21 bytes, seq 32 bits");
        return NULL;
    }
    ping_head = ping;
    pong_head = pong;
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "Pass in the wire and record constants; heartbeat.py calls it once, at import."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pulsewire.core._heartbeat",
    .m_doc = "The heartbeat fast paths of pulsewire.core.heartbeat, compiled.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__heartbeat(void)
{
    if (PyType_Ready(&FieldsType) < 0) {
        return NULL;
    }
    /* Declared as a Python class declares them, so that copy and pickle (copyreg's
     * _slotnames) find the fields: copy.deepcopy of a session works as with the Python base. */
    PyObject *slots = Py_BuildValue("(ssss)", "_ping_seq", "_record", "_rtt", "_steady");
    if (slots == NULL || PyDict_SetItemString(FieldsType.tp_dict, "__slots__", slots) < 0) {
        Py_XDECREF(slots);
        return NULL;
    }
    Py_DECREF(slots);
    PyType_Modified(&FieldsType);
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    no_reply = empty == NULL ? NULL : PyTuple_Pack(2, empty, Py_None);
    Py_XDECREF(empty);
    str_add = PyUnicode_InternFromString("add");
    str_next_deadline = PyUnicode_InternFromString("next_deadline");
    if (no_reply == NULL || str_add == NULL || str_next_deadline == NULL
        || PyModule_AddObjectRef(module, "HeartbeatFields", (PyObject *)&FieldsType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
