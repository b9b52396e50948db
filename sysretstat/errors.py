"""One exception hierarchy; the CLI turns each into a one-line error."""


class SysretstatError(Exception):
    """Base class: a runtime failure with a message fit for one line."""

    exit_code = 1


class UsageError(SysretstatError):
    exit_code = 2


class PermissionDenied(SysretstatError):
    pass


class KernelFeatureMissing(SysretstatError):
    pass


class BpfLoadError(SysretstatError):
    def __init__(self, message, log=""):
        super().__init__(message)
        self.log = log


class VerifierRejected(BpfLoadError):
    """The kernel's verifier refused a program: not a privilege problem.
    `log_path` holds the whole verifier log."""

    def __init__(self, message, log="", program="", log_path=None):
        super().__init__(message, log)
        self.program = program
        self.log_path = log_path


class RecordFileError(SysretstatError):
    pass


class BuildError(SysretstatError):
    """A BPF object is neither packaged nor compilable here (no clang,
    no source, or the compiler refused it)."""


class BenchError(SysretstatError):
    """`sysretstat bench` could not measure: its helper is missing or
    failed, or printed what cannot be analysed."""


class CalibrationError(SysretstatError):
    """The calibration could not be saved (loading never fails: a bad
    file is ignored with a warning)."""


class RemoteError(SysretstatError):
    """A `sysretstat daemon` could not be read (unreachable, not HTTP
    200, not a report)."""


class KernelDataError(SysretstatError):
    """Bytes read from the BPF object (a task dump) that its layout in
    kernel/abi.py cannot account for: the object and the tool disagree."""


class OutputError(SysretstatError):
    """Standard output cannot be written (full disk, I/O error)."""
