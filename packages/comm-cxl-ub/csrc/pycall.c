/* _sgshm: the CPython entry to sg_all_reduce, for the one call a small all_reduce makes (ctypes spends about 1 us
 * converting seven arguments; this spends a tenth of that). Stable ABI (abi3, Python >= 3.11), so one build serves
 * every later Python. Everything else the engine calls goes through ctypes on libsgshm.so. */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "sgshm.h"

/* all_reduce(group_address, data_address, numel, dtype, op, tag: bytes, algo) -> status */
static PyObject *py_all_reduce(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "all_reduce takes 7 arguments");
        return NULL;
    }
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
    return PyLong_FromLong(st);
}

static PyMethodDef methods[] = {
    {"all_reduce", (PyCFunction)(void (*)(void))py_all_reduce, METH_FASTCALL, "sg_all_reduce; returns the status"},
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
