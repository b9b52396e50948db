"""A stand-in for kernel/tracer.Tracer: what the collector uses of it,
with reads queued by the test (no BPF, no root)."""


class FakeTracer:
    """read() returns the next queued RawRead; what the collector asks
    the kernel to forget or to sample is kept for the test to check."""

    guard = {"task_size_max": 1 << 47, "xen_pv": False, "fred": False,
             "la57": False, "pre_6_7": False}

    def __init__(self):
        self.reads = []
        self.forgotten = []
        self.shifts = None
        self.attached = []
        self.obj = None

    def open(self):
        self.obj = object()
        return self

    def attach(self):
        self.attached = ["sr_sys_exit"]
        return self

    def read(self):
        return self.reads.pop(0)

    def forget_details(self, keys):
        self.forgotten.extend(keys)

    def set_sample_shifts(self, shifts):
        self.shifts = shifts

    def run_stats(self):
        return {p: (0, 0) for p in self.attached}

    def detach(self):
        self.attached = []

    def close(self):
        self.obj = None
