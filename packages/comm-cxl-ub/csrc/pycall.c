/* _sgshm: the CPython entries to the engine's blocking calls (all_reduce, sync, wait).
 *
 * For the one call a small all_reduce makes, ctypes spends about 1 us converting seven arguments; this spends a
 * tenth of that. And a wait that sleeps polls Python's signal handlers (sg_group.interrupted = check_signals), so
 * Ctrl-C stops a collective stuck on a peer at once instead of at the group timeout: the call raises what the
 * handler raised (KeyboardInterrupt), and the group, left mid-collective, must be destroyed. Stable ABI (abi3,
 * Python >= 3.11), so one build serves every later Python. The non-blocking calls go through ctypes. */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "sgshm.h"

/* Runs Python's pending signal handlers (main thread only; elsewhere nothing is pending): non-zero when one raised.
 * Called from inside a wait, without the GIL: takes it for the check. */
static int check_signals(void) {
    PyGILState_STATE state = PyGILState_Ensure();
    int raised = PyErr_CheckSignals() != 0;
    PyGILState_Release(state);
    return raised;
}

/* the status as an int, or NULL with the handler's exception when a signal handler raised during the wait */
static PyObject *finish(int st) {
    if (st == SG_INTERRUPTED && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(st);
}

static int arity(Py_ssize_t nargs, Py_ssize_t want, const char *name) {
    if (nargs == want) return 1;
    PyErr_Format(PyExc_TypeError, "%s takes %zd arguments (%zd given)", name, want, nargs);
    return 0;
}

/* all_reduce(group_address, data_address, numel, dtype, op, tag: bytes, algo) -> status */
static PyObject *py_all_reduce(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (!arity(nargs, 7, "all_reduce")) return NULL;
    void *g = PyLong_AsVoidPtr(args[0]);
    void *data = PyLong_AsVoidPtr(args[1]);
    long long numel = PyLong_AsLongLong(args[2]);
    long dtype = PyLong_AsLong(args[3]), op = PyLong_AsLong(args[4]), algo = PyLong_AsLong(args[6]);
    if (PyErr_Occurred()) return NULL;
    char *tag = PyBytes_AsString(args[5]);
    if (tag == NULL) return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = sg_all_reduce((sg_group *)g, data, (int64_t)numel, (int)dtype, (int)op, (const uint8_t *)tag, (int)algo);
    Py_END_ALLOW_THREADS
    return finish(st);
}

/* sync(group_address, step, tag: bytes, timeout_s) -> status */
static PyObject *py_sync(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (!arity(nargs, 4, "sync")) return NULL;
    void *g = PyLong_AsVoidPtr(args[0]);
    long long step = PyLong_AsLongLong(args[1]);
    double timeout = PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred()) return NULL;
    char *tag = PyBytes_AsString(args[2]);
    if (tag == NULL) return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = sg_sync((sg_group *)g, (int64_t)step, (const uint8_t *)tag, timeout);
    Py_END_ALLOW_THREADS
    return finish(st);
}

/* wait(group_address, step, timeout_s, only) -> status */
static PyObject *py_wait(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (!arity(nargs, 4, "wait")) return NULL;
    void *g = PyLong_AsVoidPtr(args[0]);
    long long step = PyLong_AsLongLong(args[1]);
    double timeout = PyFloat_AsDouble(args[2]);
    long only = PyLong_AsLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = sg_wait((sg_group *)g, (int64_t)step, timeout, (int32_t)only);
    Py_END_ALLOW_THREADS
    return finish(st);
}

/* the address of check_signals, for sg_group.interrupted */
static PyObject *py_signal_check(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromVoidPtr((void *)check_signals);
}

static PyMethodDef methods[] = {
    {"all_reduce", (PyCFunction)(void (*)(void))py_all_reduce, METH_FASTCALL, "sg_all_reduce; returns the status"},
    {"sync", (PyCFunction)(void (*)(void))py_sync, METH_FASTCALL, "sg_sync; returns the status"},
    {"wait", (PyCFunction)(void (*)(void))py_wait, METH_FASTCALL, "sg_wait; returns the status"},
    {"signal_check", py_signal_check, METH_NOARGS, "address of the function sg_group.interrupted should hold"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sgshm", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sgshm(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "ABI_VERSION", SG_ABI_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
