"""Start a command held at the gate until tracing of it has begun.

`record -- CMD` must see the command's very first return (its execve),
and none of the launcher's own: the child stops itself with SIGSTOP,
the tracer adds its pid, and SIGCONT opens the gate.  The kernel passes
the kill's sys_exit before the child stops, so after the gate the child's
next syscall is the execve: a gate that blocked in read() would have its
read and close counted as the command's.  (subprocess.Popen cannot do
this: it waits for the exec before returning.)
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
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(err_r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                if os.getppid() != parent:
                    os._exit(127)  # parent went away: do not run
                os.kill(os.getpid(), signal.SIGSTOP)
                # Nothing between here and the exec may make a syscall.
                os.execv(path, argv)
            except OSError as e:
                os.write(err_w, str(e.errno).encode())
            finally:
                os._exit(127)
        os.close(err_w)
        self.pid = pid
        self._gate = True
        self._err = err_r
        self.argv = argv
        self.returncode = None
        # Held only once stopped: tracing that starts after this sees
        # nothing of the launcher.
        _, status = os.waitpid(pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            self._gate = None
            os.close(err_r)
            self.returncode = os.waitstatus_to_exitcode(status)
            raise UsageError("cannot run %s: the launcher exited"
                             % argv[0])

    def release(self):
        """Open the gate; raise UsageError if the exec then fails."""
        if self._gate is None:
            return
        self._gate = None
        os.kill(self.pid, signal.SIGCONT)
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
        if self._gate is not None:
            # A stopped child would hold any other signal pending forever.
            sig = signal.SIGKILL
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        if self._gate is not None:
            # Killed while held: it never runs, and has no exec to report.
            self._gate = None
            os.close(self._err)
        self.wait()
