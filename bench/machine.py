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


def write_report(out, lines, keep="\n## Findings", default="## Findings\n\n(none yet)"):
    """Writes the report's lines to out, keeping what a person wrote below
    them in the old one (from the first keep marker on, or default when
    there is none), and prints the new part."""
    try:
        old = open(out).read()
    except FileNotFoundError:
        old = ""
    i = old.find(keep)
    kept = old[i + 1:].rstrip() if i >= 0 else default
    text = "\n".join(lines).rstrip("\n") + "\n"
    if kept:
        text += "\n" + kept + "\n"
    open(out, "w").write(text)
    print("\n".join(lines))
