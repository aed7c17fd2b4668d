"""Running a command and killing it (SIGKILL) once its state file says enough epochs are done."""

import json
import os
import signal
import subprocess
import time

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def kill_after_epochs(cmd, state_file, epochs, env=ENV, timeout=240):
    """Start `cmd`, wait until `state_file` records `epochs` epochs done, kill -9 it; the state
    file's contents after the kill."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["epochs_done"] >= epochs:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"{cmd[3]} ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return json.loads(state_file.read_text())
