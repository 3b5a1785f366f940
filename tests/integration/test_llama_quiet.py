"""llama.cpp is silenced in C, and a model load leaves the process's stdout and stderr alone."""

from __future__ import annotations

import pytest

from tests.integration.test_offline import run_python

pytestmark = pytest.mark.subprocess  # each case needs a fresh interpreter: llama.cpp's logger is global

LOAD = (
    "from persona_runtime.local_model import bundled_model_path, open_llama\n"
    "llm = open_llama(bundled_model_path(), 512, 1)\n"
)


def test_what_another_thread_writes_during_a_model_load_reaches_the_terminal(tmp_path) -> None:
    # llama-cpp-python's own quieting points fds 1 and 2 at /dev/null for the whole load, and
    # the REPL's prompt or a notice written meanwhile was lost.
    proc = run_python(
        "import os, threading\n"
        "loaded = threading.Event()\n"
        "written = []\n"
        "def write():\n"
        "    while not loaded.is_set():\n"
        "        os.write(1, b'.'); os.write(2, b','); written.append(1)\n"
        "        loaded.wait(0.001)\n"
        "writer = threading.Thread(target=write); writer.start()\n"
        + LOAD
        + "loaded.set(); writer.join()\n"
        "os.write(1, f'|{len(written)}'.encode())\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dots, count = proc.stdout.split("|")
    assert int(count) > 0
    assert dots == "." * int(count)
    assert proc.stderr == "," * int(count)  # and llama.cpp itself wrote nothing


def test_llama_cpp_logs_to_a_c_function_that_needs_no_gil(tmp_path) -> None:
    # A Python log callback takes the GIL for each of a load's log lines: with another thread
    # running Python, the load waited on it (0.8 s instead of 0.2 s, measured in bench).
    proc = run_python(
        "import ctypes, llama_cpp\n"
        "from persona_runtime.llama_quiet import quiet_llama_cpp\n"
        "def current():\n"
        "    callback, data = llama_cpp.llama_log_callback(), ctypes.c_void_p()\n"
        "    llama_cpp.llama_log_get(ctypes.byref(callback), ctypes.byref(data))\n"
        "    return ctypes.cast(callback, ctypes.c_void_p).value\n"
        "python_callback = current()\n"
        "quiet_llama_cpp(); quiet_llama_cpp()\n"
        "getpid = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value\n"
        "print(python_callback != getpid, current() == getpid)\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True"]


BLAS_THREADS = (
    "import ctypes, os\n"
    "from persona_runtime.shared_imports import warm_shared_imports\n"
    "warm_shared_imports()\n"
    "path = next(line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line)\n"
    "threads = ctypes.CDLL(path).scipy_openblas_get_num_threads64_()\n"
    "print(threads, os.environ.get('OPENBLAS_NUM_THREADS'), threads == min(2, os.cpu_count()))\n"
)


def test_a_session_runs_openblas_on_one_thread_without_passing_that_to_children(tmp_path) -> None:
    proc = run_python(BLAS_THREADS, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[:2] == ["1", "None"]


def test_a_blas_thread_count_the_person_set_wins(tmp_path) -> None:
    proc = run_python(BLAS_THREADS, tmp_path, OPENBLAS_NUM_THREADS="2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[1:] == ["2", "True"]  # OpenBLAS caps it at the cores there are
