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


class RecordFileError(SysretstatError):
    pass
