"""Start a command held at the gate until tracing of it has begun.

`record -- CMD` must see the command's very first return (its execve):
the child blocks on a pipe before exec; the tracer adds its pid and
attaches, then opens the gate.  (subprocess.Popen cannot do this: it
waits for the exec before returning.)
"""

import os
import shutil
import signal

from sysretstat.errors import UsageError


class GatedCommand:
    def __init__(self, argv):
        if not argv:
            raise UsageError("no command given after --")
        path = shutil.which(argv[0])
        if path is None:
            raise UsageError("command not found: %s" % argv[0])
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(gate_w)
                os.close(err_r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                while not os.read(gate_r, 1):
                    os._exit(127)  # parent went away: do not run
                os.close(gate_r)
                os.execv(path, argv)
            except OSError as e:
                os.write(err_w, str(e.errno).encode())
            finally:
                os._exit(127)
        os.close(gate_r)
        os.close(err_w)
        self.pid = pid
        self._gate = gate_w
        self._err = err_r
        self.argv = argv
        self.returncode = None

    def release(self):
        """Open the gate; raise UsageError if the exec then fails."""
        if self._gate is None:
            return
        os.write(self._gate, b"g")
        os.close(self._gate)
        self._gate = None
        err = os.read(self._err, 16)
        os.close(self._err)
        if err:
            self.wait()
            raise UsageError("cannot run %s: %s"
                             % (self.argv[0], os.strerror(int(err))))

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self):
        self.release()
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                self.returncode = 0
                break
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self, sig=signal.SIGKILL):
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        if self._gate is not None:
            os.close(self._gate)
            self._gate = None
        self.wait() if self._gate is None else None
