"""What the bench reports say about the machine and the tools: imported by
the report steps of bench/*.sh (run from the checkout's root)."""
import subprocess


def ver(cmd):
    """The first line a tool prints for its version, or "?"."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
        return (p.stdout or p.stderr).splitlines()[0].strip()
    except Exception:
        return "?"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"
