"""Builds small OCI image layouts for the image tests: a busybox root made
from this host's /bin/busybox and the libraries it loads, and hostile
layers written byte by byte. Nothing is downloaded."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile


def _blob(d, data):
    h = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
    with open(f"{d}/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)


def tar_bytes(entries, compress=True):
    """entries: (TarInfo, bytes or None)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = bio.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def entry(name, kind="file", data=b"", mode=0o644, link="", uid=0, gid=0):
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    if kind == "file":
        ti.size = len(data)
        return ti, data
    ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
               "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
    ti.linkname = link
    return ti, None


def busybox_libs():
    out = subprocess.run(["ldd", "/bin/busybox"], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(path)
    return libs


def busybox_layer(user_home=True):
    ents = []
    dirs = set()

    def mkdirs(path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                ents.append(entry(d, "dir", mode=0o755))

    mkdirs("bin/x")
    ents.append(entry("bin/busybox", data=open("/bin/busybox", "rb").read(), mode=0o755))
    for app in ["sh", "true", "id", "cat", "ls", "echo", "env", "pwd", "sleep", "touch", "stat"]:
        # a hard link's header carries its target's mode, as tar writes it
        # (podman's unpacker applies it to the shared inode)
        ents.append(entry("bin/" + app, "hardlink", link="bin/busybox", mode=0o755))
    for lib in busybox_libs():
        mkdirs(lib)
        ents.append(entry(lib.lstrip("/"), data=open(os.path.realpath(lib), "rb").read(), mode=0o755))
    mkdirs("etc/x")
    ents.append(entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"))
    ents.append(entry("etc/group", data=b"root:x:0:\napp:x:1000:\n"))
    if user_home:
        mkdirs("home/app/x")
    return tar_bytes(ents)


def write_layout(d, layers, config, tag="latest", media="application/vnd.oci.image.layer.v1.tar+gzip"):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    ldesc = []
    for layer in layers:
        dg, n = _blob(d, layer)
        ldesc.append({"mediaType": media, "digest": dg, "size": n})
    def diff_id(layer):
        try:
            raw = gzip.decompress(layer)
        except (OSError, EOFError):
            raw = layer  # not gzip (or not even that): the hostile corpus
        return "sha256:" + hashlib.sha256(raw).hexdigest()

    cfg = {"architecture": "amd64", "os": "linux", "config": config,
           "rootfs": {"type": "layers", "diff_ids": [diff_id(layer) for layer in layers]}}
    cd, cn = _blob(d, json.dumps(cfg).encode())
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
           "layers": ldesc}
    md, mn = _blob(d, json.dumps(man).encode())
    with open(f"{d}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
            "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    with open(f"{d}/oci-layout", "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return md


APP_CONFIG = {"Env": ["PATH=/bin", "GREETING=hello"], "Cmd": ["/bin/sh", "-c", "echo from-cmd"],
              "WorkingDir": "/home/app", "User": "app"}
