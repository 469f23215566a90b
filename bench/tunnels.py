#!/usr/bin/env python3
"""Hold N idle CONNECT tunnels through an HTTP proxy (bench/proxy_tunnels.sh).

Each tunnel: CONNECT up.bench:443, the proxy's 200, then a TLS ClientHello
naming up.bench (the egress proxy checks the SNI before it splices), then
nothing. Prints "held K refused R" once every tunnel is up or refused, then
waits for a line on stdin (or EOF) before closing them all.

  tunnels.py PROXY_URL N
"""
import asyncio
import ssl
import sys
import urllib.parse


def client_hello(name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


errors = []


async def one(host, port, hello, held):
    try:
        r, w = await asyncio.open_connection(host, port)
        w.write(b"CONNECT up.bench:443 HTTP/1.1\r\nHost: up.bench:443\r\n\r\n")
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
        if b" 200" not in head.split(b"\r\n", 1)[0]:
            errors.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            w.close()
            return None
        w.write(hello)
        await w.drain()
        held.append(w)
        return w
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
            asyncio.LimitOverrunError) as e:
        errors.append(repr(e))
        return None


async def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    n = int(sys.argv[2])
    hello = client_hello("up.bench")
    held = []
    # at most 64 handshakes in flight: the proxy's backlog and the peers'
    sem = asyncio.Semaphore(64)

    async def gated():
        async with sem:
            return await one(url.hostname, url.port, hello, held)

    results = await asyncio.gather(*(gated() for _ in range(n)))
    ok = sum(1 for x in results if x is not None)
    print(f"held {ok} refused {n - ok}", flush=True)
    if errors:
        print(f"first error: {errors[0]}", file=sys.stderr, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in held:
        w.close()


asyncio.run(main())
