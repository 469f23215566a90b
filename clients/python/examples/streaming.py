# SPDX-License-Identifier: Apache-2.0
"""Stream a command's output as it is produced, and feed it stdin.

    STOCKADE_SERVER=http://127.0.0.1:8443 STOCKADE_TOKEN=... python3 streaming.py
"""
import sys

from stockade import Sandbox

SPEC = """
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata: {name: streaming, namespace: acme-streaming}
spec: {command: [/bin/sleep, "3600"]}
"""

with Sandbox.create(SPEC, tenant="acme") as sb:
    result = sb.run(
        "for i in 1 2 3; do echo tick $i; sleep 0.2; done; echo done >&2",
        on_stdout=lambda text: print("out:", text, end=""),
        on_stderr=lambda text: print("err:", text, end="", file=sys.stderr),
    )
    print("exit", result.exit_code)
    # stdin goes in whole; the command's output comes back as it runs
    print("sorted", sb.run(["/usr/bin/sort"], stdin="b\nc\na\n").stdout.split())
