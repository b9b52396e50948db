"""Record files: what `record` writes and `report`, `diff` and `plot`
read.

    format   the file format (its description), versions, framing, and
             the encoding of snapshots and counts
    writer   Writer: a recording, frame by frame, that never costs the
             previous FILE
    reader   read() and the Recording it returns; damage and cuts;
             read_run(), a recording or a report document to compare
    series   the time series a Recording carries

Callers use this package's names (record.read, record.Writer, ...).
"""

from sysretstat.errors import RecordFileError
from sysretstat.record.format import (CHECKPOINT_BYTES, CHECKPOINT_EVERY,
                                      HEADER_LEN, MAGIC, READ_VERSIONS,
                                      V2_OUTCOMES, VERSION)
from sysretstat.record.reader import (Recording, file_error, open_regular,
                                      read, read_run)
from sysretstat.record.series import Series
from sysretstat.record.writer import Writer, check_writable, rotate

__all__ = ["CHECKPOINT_BYTES", "CHECKPOINT_EVERY", "HEADER_LEN", "MAGIC",
           "READ_VERSIONS", "RecordFileError", "Recording", "Series",
           "V2_OUTCOMES", "VERSION", "Writer", "check_writable",
           "file_error", "open_regular", "read", "read_run", "rotate"]
