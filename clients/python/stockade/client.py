# SPDX-License-Identifier: Apache-2.0
"""The stockade gateway client: HTTP/JSON for records and files, the
`stockade-exec.v1` upgrade for commands (docs/api.md, "Exec").

Standard library only (http.client, socket, ssl, json, threading).
"""
import codecs
import http.client
import json
import os
import socket
import ssl
import struct
import threading
import urllib.parse

__all__ = ["Client", "CommandResult", "Files", "Process", "Sandbox", "StockadeError"]

# The exec protocol's frame types (docs/init-protocol.md, a subset).
_STDIN, _STDIN_EOF, _RESIZE, _KILL, _OUTPUT, _EXIT, _ERROR = 16, 17, 18, 19, 33, 34, 35
# What a RESIZE may carry, and the signals a KILL may (docs/api.md, "Exec").
WINSIZE_MAX = 4096
KILL_SIGNALS = frozenset((1, 2, 3, 9, 10, 12, 15, 18, 19, 20, 28))
_FRAME_MAX = 65536
_HDR = struct.Struct(">BBI")
# What a command's result keeps of each stream (the rest is dropped and
# the result says it was truncated); callbacks see everything.
OUTPUT_LIMIT = 16 * 1024 * 1024
# The largest file a write moves (the files limit, docs/api.md).
FILE_WRITE_MAX = 16 * 1024 * 1024


# An exec's ERROR frame carries the session's errno: ENOENT, EBUSY
# (not ready), EINVAL, E2BIG, EOPNOTSUPP, EAGAIN.
_EXEC_ERRORS = {2: ("not_found", 404), 16: ("conflict", 409), 22: ("bad_request", 400),
                7: ("bad_request", 400), 95: ("not_implemented", 501), 11: ("unavailable", 503)}


class StockadeError(Exception):
    """The gateway refused or failed: HTTP status, the API's error code
    (docs/api.md, "Errors"), its message and any spec diagnostics."""

    def __init__(self, status, code, message, diagnostics=None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.diagnostics = list(diagnostics or [])


class CommandResult:
    """What `Sandbox.run` returns: the exit code (128+N when killed by
    signal N) and both streams, decoded as UTF-8 (bytes in *_bytes)."""

    def __init__(self, exit_code, stdout, stderr, truncated=False):
        self.exit_code = exit_code
        self.stdout_bytes = bytes(stdout)
        self.stderr_bytes = bytes(stderr)
        self.truncated = truncated

    @property
    def stdout(self):
        return self.stdout_bytes.decode("utf-8", errors="replace")

    @property
    def stderr(self):
        return self.stderr_bytes.decode("utf-8", errors="replace")

    @property
    def ok(self):
        return self.exit_code == 0

    def __repr__(self):
        return (f"CommandResult(exit_code={self.exit_code}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r})")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class Client:
    """A connection to `stockade serve`.

    server: "http://127.0.0.1:8443", "https://host:port" or "unix:/path"
    ($STOCKADE_SERVER when None). token: a bearer token ($STOCKADE_TOKEN,
    else the first line of $STOCKADE_TOKEN_FILE). cafile, certfile and
    keyfile: TLS server verification and a client certificate (mTLS).
    The token is sent in a header and never appears in messages."""

    def __init__(self, server=None, token=None, *, cafile=None, certfile=None, keyfile=None,
                 timeout=300):
        server = server or os.environ.get("STOCKADE_SERVER")
        if not server:
            raise ValueError("no server: pass server= or set STOCKADE_SERVER")
        if token is None:
            token = os.environ.get("STOCKADE_TOKEN") or None
        if token is None and os.environ.get("STOCKADE_TOKEN_FILE"):
            with open(os.environ["STOCKADE_TOKEN_FILE"], encoding="utf-8") as f:
                token = f.readline().strip() or None
        self.server = server.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._unix = None
        self._ssl = None
        if self.server.startswith("unix:"):
            self._unix = self.server[len("unix:"):]
            self._host, self._port, self._prefix = "localhost", None, ""
            return
        u = urllib.parse.urlsplit(self.server)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"server must be http(s)://HOST:PORT or unix:PATH, not {server!r}")
        self._host = u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        if u.scheme == "https":
            self._ssl = ssl.create_default_context(cafile=cafile)
            if certfile:
                self._ssl.load_cert_chain(certfile, keyfile)

    # ---- plumbing ----

    def _headers(self, extra=None):
        h = {"Accept": "application/json"}
        if self._token:
            h["Authorization"] = "Bearer " + self._token
        h.update(extra or {})
        return h

    def _connection(self, timeout):
        if self._unix:
            return _UnixHTTPConnection(self._unix, timeout)
        if self._ssl:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(self, method, path, *, json_body=None, data=None, content_type=None,
                timeout=None):
        """One request; returns the answer's bytes, raises StockadeError on
        anything but 2xx."""
        headers = {}
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif content_type:
            headers["Content-Type"] = content_type
        conn = self._connection(timeout or self.timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers=self._headers(headers))
            r = conn.getresponse()
            payload = r.read()
        finally:
            conn.close()
        if not 200 <= r.status < 300:
            raise _error(r.status, payload)
        return payload

    def json(self, method, path, body=None, timeout=None):
        return json.loads(self.request(method, path, json_body=body, timeout=timeout) or b"null")

    def _socket(self, timeout):
        if self._unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self._unix)
            return s
        s = socket.create_connection((self._host, self._port), timeout=timeout)
        if self._ssl:
            s = self._ssl.wrap_socket(s, server_hostname=self._host)
        return s

    def url_base(self):
        """The server's URL as a browser would use it (not for unix:)."""
        if self._unix:
            raise ValueError("a unix: server has no URL outside this host")
        return self.server


def _error(status, payload):
    try:
        e = json.loads(payload)["error"]
        return StockadeError(status, e.get("code", ""), e.get("message", ""),
                             e.get("diagnostics"))
    except (ValueError, KeyError, TypeError):
        text = payload.decode("utf-8", errors="replace").strip()
        return StockadeError(status, "", text or f"HTTP {status}")


def _quote(s):
    return urllib.parse.quote(str(s), safe="")


class _Exec:
    """One command over the exec upgrade: a thread feeds stdin while the
    caller's thread reads frames, so a command that writes while it reads
    cannot deadlock the pair."""

    def __init__(self, client, sid, body, stdin, on_stdout, on_stderr, timeout):
        self.client = client
        self.sid = sid
        self.body = json.dumps(body).encode()
        self.stdin = stdin
        self.callbacks = {1: on_stdout, 2: on_stderr}
        self.decoders = {1: codecs.getincrementaldecoder("utf-8")(errors="replace"),
                         2: codecs.getincrementaldecoder("utf-8")(errors="replace")}
        self.out = {1: bytearray(), 2: bytearray()}
        self.truncated = False
        self.timeout = timeout

    def _head(self):
        c = self.client
        lines = [f"POST {c._prefix}/v1/sandboxes/{_quote(self.sid)}:exec HTTP/1.1",
                 f"Host: {c._host}",
                 "Connection: Upgrade",
                 "Upgrade: stockade-exec.v1",
                 "Content-Type: application/json",
                 f"Content-Length: {len(self.body)}"]
        if c._token:
            lines.append("Authorization: Bearer " + c._token)
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _feed(self, sock):
        try:
            data = self.stdin or b""
            for off in range(0, len(data), _FRAME_MAX):
                chunk = data[off:off + _FRAME_MAX]
                sock.sendall(_HDR.pack(_STDIN, 0, len(chunk)) + chunk)
            sock.sendall(_HDR.pack(_STDIN_EOF, 0, 0))
        except OSError:
            pass  # the command ended first, or the connection did

    def _output(self, stream, payload):
        cb = self.callbacks.get(stream)
        if cb:
            cb(self.decoders[stream].decode(payload))
        buf = self.out[stream]
        room = OUTPUT_LIMIT - len(buf)
        if len(payload) > room:
            self.truncated = True
            payload = payload[:max(room, 0)]
        buf += payload

    def connect(self):
        """Sends the request; returns (socket, bytes read past the 101)."""
        sock = self.client._socket(self.timeout)
        try:
            sock.sendall(self._head() + self.body)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise StockadeError(0, "", "the server closed the connection before answering")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            status = int(head.split(b" ", 2)[1])
            if status != 101:
                length = None
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                while length is not None and len(buf) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                raise _error(status, buf)
            return sock, buf
        except BaseException:
            sock.close()
            raise

    def frames(self, sock, buf):
        """Reads frames until EXIT (the CommandResult) or ERROR (raised)."""
        while True:
            while len(buf) >= _HDR.size:
                ftype, stream, n = _HDR.unpack_from(buf)
                if len(buf) < _HDR.size + n:
                    break
                payload = buf[_HDR.size:_HDR.size + n]
                buf = buf[_HDR.size + n:]
                if ftype == _OUTPUT:
                    self._output(stream, payload)
                elif ftype == _EXIT:
                    code = struct.unpack(">i", payload[:4])[0]
                    for s, cb in self.callbacks.items():
                        tail = self.decoders[s].decode(b"", final=True)
                        if cb and tail:
                            cb(tail)
                    return CommandResult(code, self.out[1], self.out[2], self.truncated)
                elif ftype == _ERROR:
                    err = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else 0
                    msg = payload[5:].decode("utf-8", errors="replace")
                    # the session's errno, as the API maps it (docs/api.md, "Errors")
                    code, st = _EXEC_ERRORS.get(err, ("exec_failed", 500))
                    raise StockadeError(st, code, msg)
                else:
                    raise StockadeError(101, "protocol", f"unexpected frame type {ftype}")
            chunk = sock.recv(65536)
            if not chunk:
                raise StockadeError(101, "protocol",
                                    "the server closed the exec before its exit status")
            buf += chunk

    def run(self):
        sock, buf = self.connect()
        try:
            feeder = threading.Thread(target=self._feed, args=(sock,), daemon=True)
            feeder.start()
            return self.frames(sock, buf)
        finally:
            sock.close()


class Process:
    """A command running in a sandbox (Sandbox.spawn): write to its stdin,
    resize its terminal, send it signals, wait for its result. Output is
    read by a thread of its own and goes to the callbacks as it arrives."""

    def __init__(self, ex):
        self._ex = ex
        self._sock, buf = ex.connect()
        self._lock = threading.Lock()
        self._result = None
        self._error = None
        self._stdin_closed = False
        self._reader = threading.Thread(target=self._read, args=(buf,), daemon=True)
        self._reader.start()

    def _read(self, buf):
        try:
            self._result = self._ex.frames(self._sock, buf)
        except BaseException as e:  # handed to wait()
            self._error = e

    def _send(self, ftype, payload=b""):
        with self._lock:
            self._sock.sendall(_HDR.pack(ftype, 0, len(payload)) + payload)

    def write(self, data):
        """Sends data (bytes, or str as UTF-8) to the command's stdin."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._stdin_closed:
            raise ValueError("stdin is closed")
        for off in range(0, len(data), _FRAME_MAX):
            self._send(_STDIN, bytes(data[off:off + _FRAME_MAX]))

    def close_stdin(self):
        """The command reads end-of-file (on a terminal: the EOF character)."""
        if not self._stdin_closed:
            self._stdin_closed = True
            self._send(_STDIN_EOF)

    def resize(self, rows, cols):
        """Sets the size of the command's terminal (tty=True); its
        foreground process group gets SIGWINCH."""
        rows, cols = int(rows), int(cols)
        if not (1 <= rows <= WINSIZE_MAX and 1 <= cols <= WINSIZE_MAX):
            raise ValueError(f"rows and cols are 1..{WINSIZE_MAX}")
        self._send(_RESIZE, struct.pack(">HH", rows, cols))

    def kill(self, sig=15):
        """Sends a signal (default SIGTERM) to the command's process group:
        one of HUP INT QUIT KILL USR1 USR2 TERM CONT STOP TSTP WINCH."""
        sig = int(sig)
        if sig not in KILL_SIGNALS:
            raise ValueError(f"signal {sig} is not one a client may send "
                             f"({sorted(KILL_SIGNALS)})")
        self._send(_KILL, struct.pack(">I", sig))

    def wait(self, timeout=None):
        """The CommandResult once the command exited (TimeoutError if it
        has not within timeout seconds; it keeps running)."""
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise TimeoutError(f"the command has not exited within {timeout} s")
        self._sock.close()
        if self._error is not None:
            raise self._error
        return self._result

    def close(self):
        """Closes the connection, which ends the command if it still runs."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Files:
    """A sandbox's files through the gateway (GET/PUT .../files?path=):
    one regular file per call, moved inside the sandbox by its own
    stockade-init; symbolic links there are never followed."""

    def __init__(self, sandbox):
        self._sb = sandbox

    def _path(self, path):
        if not str(path).startswith("/"):
            raise ValueError(f"a path inside a sandbox is absolute, not {path!r}")
        return (f"/v1/sandboxes/{_quote(self._sb.id)}/files?path="
                f"{urllib.parse.quote(str(path), safe='/')}")

    def read(self, path):
        """The file's bytes (at most 16 MiB)."""
        return self._sb.client.request("GET", self._path(path))

    def read_text(self, path, encoding="utf-8"):
        return self.read(path).decode(encoding)

    def write(self, path, data, mode=0o644):
        """Writes data (bytes, or str as UTF-8) to path: a new file renamed
        over it at the end, so a failed write changes nothing. At most 16 MiB
        (the files limit). Returns {"path","size","mode"}."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if len(data) > FILE_WRITE_MAX:
            raise ValueError(f"{len(data)} bytes: a file written through the gateway is at most "
                             f"{FILE_WRITE_MAX} bytes")
        if not 0 <= int(mode) <= 0o777:
            raise ValueError("mode is permission bits, 0 to 0o777")
        body = self._sb.client.request("PUT", self._path(path) + f"&mode={int(mode):04o}",
                                       data=bytes(data), content_type="application/octet-stream")
        return json.loads(body)


class Sandbox:
    """A sandbox on the gateway. Create one with Sandbox.create(), attach to
    an existing one with Sandbox.connect(); `with` kills it at the end."""

    def __init__(self, client, record):
        self.client = client
        self.record = record
        self.id = record["id"]
        self.files = Files(self)

    @classmethod
    def create(cls, spec=None, *, template=None, client=None, pool=None, env=None, tenant=None,
               owner=None, timeout=None):
        """Creates a sandbox and returns once it is ready.

        spec: a Sandbox document as a dict, or its YAML/JSON text.
        template: instead, a path to a Sandbox file. pool: claim a ready
        member of this warm pool (a cold create when it has none). env: an
        EnvironmentConfig's text. tenant, owner: for identities the policy
        lets create on behalf of others."""
        if (spec is None) == (template is None):
            raise ValueError("give exactly one of spec and template")
        if template is not None:
            with open(template, encoding="utf-8") as f:
                text = f.read()
        elif isinstance(spec, dict):
            text = json.dumps(spec)
        else:
            text = str(spec)
        body = {"spec": text}
        for k, v in (("pool", pool), ("env", env), ("tenant", tenant), ("owner", owner)):
            if v is not None:
                body[k] = v
        client = client or Client()
        record = client.json("POST", "/v1/sandboxes", body, timeout=timeout)
        sb = cls(client, record)
        if record.get("phase") != "ready":
            raise StockadeError(201, "not_ready",
                                f"sandbox {sb.id} is {record.get('phase')}: "
                                f"{record.get('message') or record.get('reason')}")
        return sb

    @classmethod
    def connect(cls, id_or_name, client=None):
        client = client or Client()
        return cls(client, client.json("GET", f"/v1/sandboxes/{_quote(id_or_name)}"))

    def refresh(self):
        self.record = self.client.json("GET", f"/v1/sandboxes/{_quote(self.id)}")
        return self.record

    @property
    def phase(self):
        return self.refresh()["phase"]

    def run(self, cmd, *, stdin=None, env=None, cwd=None, on_stdout=None, on_stderr=None,
            timeout=None):
        """Runs cmd (a list of arguments, or a string for /bin/sh -c) and
        returns a CommandResult once it exits. stdin: bytes or str fed to
        it. on_stdout / on_stderr: called with each piece of output (str)
        as it arrives. timeout: seconds without any output before the
        command is ended (closing the connection ends it) and TimeoutError
        is raised."""
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        body = {"argv": argv}
        if env:
            body["env"] = [f"{k}={v}" for k, v in dict(env).items()]
        if cwd:
            body["cwd"] = cwd
        if isinstance(stdin, str):
            stdin = stdin.encode("utf-8")
        try:
            return _Exec(self.client, self.id, body, stdin, on_stdout, on_stderr,
                         timeout or self.client.timeout).run()
        except socket.timeout as e:
            raise TimeoutError(f"{argv[0]}: no output and no exit within {timeout} s") from e

    def spawn(self, cmd, *, tty=False, rows=None, cols=None, env=None, cwd=None,
              on_stdout=None, on_stderr=None):
        """Starts cmd (as for run) and returns a Process at once: write(),
        close_stdin(), resize(rows, cols), kill(sig), wait(). tty: a
        terminal inside (stderr then comes as stdout), of rows x cols."""
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        body = {"argv": argv, "tty": bool(tty)}
        if (rows is None) != (cols is None):
            raise ValueError("give both rows and cols, or neither")
        if rows is not None:
            if not (1 <= int(rows) <= WINSIZE_MAX and 1 <= int(cols) <= WINSIZE_MAX):
                raise ValueError(f"rows and cols are 1..{WINSIZE_MAX}")
            body["rows"], body["cols"] = int(rows), int(cols)
        if env:
            body["env"] = [f"{k}={v}" for k, v in dict(env).items()]
        if cwd:
            body["cwd"] = cwd
        # the reader waits for output as long as the command runs
        return Process(_Exec(self.client, self.id, body, None, on_stdout, on_stderr, None))

    def logs(self):
        """The workload's output so far (stdout and stderr interleaved)."""
        return self.client.request("GET", f"/v1/sandboxes/{_quote(self.id)}/logs").decode(
            "utf-8", errors="replace")

    def url(self, port):
        """The gateway's URL for a port the sandbox listens on
        (…/v1/sandboxes/{id}/ports/{port}/): HTTP and WebSocket, authorized
        like exec."""
        port = int(port)
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not 1..65535")
        return f"{self.client.url_base()}/v1/sandboxes/{_quote(self.id)}/ports/{port}/"

    def stop(self):
        self.record = self.client.json("POST", f"/v1/sandboxes/{_quote(self.id)}:stop")
        return self.record

    def start(self):
        self.record = self.client.json("POST", f"/v1/sandboxes/{_quote(self.id)}:start")
        return self.record

    def kill(self):
        """Removes the sandbox, running or not (DELETE ?force=1)."""
        self.record = self.client.json("DELETE", f"/v1/sandboxes/{_quote(self.id)}?force=1")
        return self.record

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.kill()
        except StockadeError as e:
            if e.status != 404:
                raise

    def __repr__(self):
        return f"Sandbox({self.id!r})"
