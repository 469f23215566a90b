# SPDX-License-Identifier: Apache-2.0
"""Create a sandbox, run commands in it, move files in and out, remove it.

    STOCKADE_SERVER=http://127.0.0.1:8443 STOCKADE_TOKEN=... python3 quickstart.py
"""
from stockade import Sandbox

SPEC = {
    "apiVersion": "stockade.dev/v1alpha1",
    "kind": "Sandbox",
    "metadata": {"name": "quickstart", "namespace": "acme-quickstart"},
    "spec": {"command": ["/bin/sleep", "3600"]},
}

# `with` removes the sandbox at the end, also when something fails
with Sandbox.create(SPEC, tenant="acme") as sb:
    print("sandbox", sb.id)

    result = sb.run(["/bin/sh", "-c", "echo hello from $(hostname); echo oops >&2; exit 3"])
    print("exit", result.exit_code)
    print("stdout", result.stdout.strip())
    print("stderr", result.stderr.strip())

    sb.files.write("/workspace/hello.py", "print(sum(range(10)))\n")
    print("file", sb.files.read_text("/workspace/hello.py").strip())
    print("wc", sb.run("wc -c < /workspace/hello.py").stdout.strip())

    # the port proxy's address for a server the sandbox would run on 8080
    print("url", sb.url(8080))
