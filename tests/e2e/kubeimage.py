"""A container image from files of this host, for a test cluster with no
registry: one layer, written as a docker-archive tarball (manifest.json, the
config blob, the layer) that `ctr images import` reads.

The kubernetes proxy test puts the built `stockade` binary, its private
modules and every shared library `ldd` names into such an image.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def shared_libraries(*binaries):
    """The absolute paths of every library ldd names for the binaries (the
    dynamic loader included)."""
    libs = set()
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            m = re.search(r"(/\S+) \(0x", line)
            if m:
                libs.add(m.group(1))
    return sorted(libs)


def _tar_bytes(entries):
    """entries: image path -> bytes (a file, mode 0755) or None (a directory)."""
    buf = io.BytesIO()
    dirs = set()
    for path in entries:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in sorted(dirs | {p.strip("/") for p, v in entries.items() if v is None}):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        for path, data in sorted(entries.items()):
            if data is None:
                continue
            ti = tarfile.TarInfo(path.strip("/"))
            ti.size, ti.mode = len(data), 0o755
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def build(out, tag, files, env=(), entrypoint=None):
    """Writes the image tagged `tag` to `out`. files: image path -> host path
    (copied, symbolic links followed), bytes, or None (an empty directory)."""
    entries = {}
    for path, src in files.items():
        if isinstance(src, str):
            with open(src, "rb") as f:
                src = f.read()
        entries[path] = src
    layer = _tar_bytes(entries)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": [f"PATH={PATH}", *env]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    if entrypoint:
        config["config"]["Entrypoint"] = entrypoint
    blob = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(blob).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": [layer_name]}]).encode()
    with tarfile.open(out, "w") as tf:
        for name, data in ((config_name, blob), (layer_name, layer),
                           ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return out


def stockade_files(binary):
    """The files of an image that runs `stockade __proxy`: the binary at
    /usr/local/bin, the proxy and kube modules beside it in
    /usr/local/lib/stockade (LD_LIBRARY_PATH), and their libraries."""
    bindir = os.path.dirname(binary)
    mods = [os.path.join(bindir, f"stockade-{m}.so") for m in ("proxy", "kube")]
    files = {"/usr/local/bin/stockade": binary}
    for m in mods:
        files["/usr/local/lib/stockade/" + os.path.basename(m)] = m
    for lib in shared_libraries(binary, *mods):
        files[lib] = lib
    return files, ["LD_LIBRARY_PATH=/usr/local/lib/stockade"]
