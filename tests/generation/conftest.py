"""Fixtures every generation test module shares."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """One torch thread for the whole module, module-scoped fixtures (trained models, servers) included.

    On a shared 2-core machine, OpenMP threads spinning against other processes make small kernels up to
    ~100x slower; one thread keeps these tests fast and their timing stable. Service jobs run in server
    threads of the test process and share the setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
