#!/usr/bin/env python3
"""Write the seed corpora in seeds/{frames,payload,text}/.

Run from proto/fuzz/: `python3 gen_seeds.py`. Seeds are valid envelopes
(one per message family, with nested results, diagnostics and metrics so the
fuzzer starts deep inside the structure), a few streams of several frames,
and text with the control characters `text` must escape.
"""
import json
import os
import struct

RESULT = {
    "check": "disk", "target": "/", "status": "warn", "summary": "81% used",
    "metrics": {"used_pct": 81.5, "free_bytes": 1e9, "zero": 0.0},
    "duration_ms": 3, "at": "2026-11-23T00:00:00Z", "changed": ["x"],
}
TICKET = {
    "id": 7, "title": "disk full", "agent": "pc-1", "check": "disk",
    "status": "open", "priority": "high", "source": "alert", "monitor": "disk /",
    "assignee": None, "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}
MESSAGES = [
    {"type": "done"},
    {"type": "progress", "text": "resolving \u001b[2J \u202e"},
    {"type": "error", "code": "frame_too_large", "message": "too big"},
    {"type": "error", "code": "quota_exceeded", "message": "newer peer"},
    {"type": "hello", "version_min": 1, "version_max": 1, "software": "0.1.0",
     "os": "Debian GNU/Linux 12", "hostname": "pc-1", "capabilities": ["disk", "dns"]},
    {"type": "welcome", "version": 1, "name": "pc-1", "capabilities": []},
    {"type": "enroll", "token": "t", "name": "pc-1", "csr_pem": "-----BEGIN"},
    {"type": "list_agents"},
    {"type": "agents", "agents": [{"name": "pc-1", "online": True, "last_seen": None,
                                   "version": "0.1.0", "os": None, "hostname": "h",
                                   "revoked": False}]},
    {"type": "run", "agent": "pc-1", "check": "tcp", "args": ["h:1", "--send=PING"], "ticket": 3},
    {"type": "exec", "check": "http", "args": ["http://h/", "--contains", "s"], "role": "technician"},
    {"type": "exec", "check": "plugin", "args": ["check_dummy", "0"]},
    {"type": "exec_fix", "action": "script", "args": [], "dry_run": True, "role": "admin"},
    {"type": "exec_runbook", "name": "printer", "params": ["Q=lp"], "role": "viewer"},
    {"type": "ticket_update", "id": 3, "change": "assign", "operator": "alice"},
    {"type": "ticket_update", "id": 3, "change": "resolve", "comment": "ok"},
    {"type": "ticket_detail", "ticket": TICKET,
     "entries": [{"at": "t", "kind": "comment", "author": "a", "body": "b"}]},
    {"type": "tickets", "tickets": [TICKET]},
    {"type": "notice", "at": "t", "kind": "alert", "agent": "pc-1", "ticket": 1, "text": "x"},
    {"type": "events", "events": [{
        "seq": 1, "monitor": "disk /", "kind": "incident_opened", "in_incident": True,
        "result": RESULT,
        "diagnostics": {
            "top_cpu": [{"pid": 1, "name": "init", "cpu_pct": 12.5, "memory_bytes": 1024}],
            "top_memory": [], "disks": [{"mount": "/", "used_pct": 81.5, "free_bytes": 10}],
            "default_route": "10.0.0.1", "dns_servers": ["10.0.0.1"]}}]},
    {"type": "ack", "upto": 18446744073709551615},
    {"type": "verdict", "verdict": "escalate", "reason": "r", "evidence": [RESULT]},
    {"type": "result", "result": RESULT},
    {"type": "runbooks", "runbooks": [{"name": "n", "description": "d",
                                       "params": [["Q", "queue"]], "source": "shipped"}],
     "invalid": ["f:1: bad"]},
    {"type": "list_audit", "agent": None, "limit": 10},
    {"type": "audit", "entries": [{"id": 1, "at": "t", "who": "w", "role": "admin", "agent": None,
                                   "action": "fix", "args": "a", "outcome": "ok", "hash": "00"}]},
]


def payload(msg, v=1):
    return json.dumps({"v": v, **msg}, separators=(",", ":"), ensure_ascii=False).encode()


def frame(p):
    return struct.pack(">I", len(p)) + p


def write(kind, name, data):
    os.makedirs(f"seeds/{kind}", exist_ok=True)
    with open(f"seeds/{kind}/{name}", "wb") as f:
        f.write(data)


for i, msg in enumerate(MESSAGES):
    name = f"{i:02}-{msg['type']}"
    p = payload(msg)
    write("payload", name, p)
    # frames input: [limit selector, chunking, stream...]; 0x00 = 1 MiB cap
    # and one push; 0x01 = byte by byte; 0x07 = chunks of 1..=7.
    write("frames", name, bytes([0x00, i % 3 * 3 + (i % 2)]) + frame(p))

write("payload", "unknown-version", payload({"type": "done"}, v=7))

# Full-precision floats, as a plugin's perfdata can carry them. These two
# decode, re-encode and decode back unchanged; their digits are where
# mutations find the float drift of README.md, "Findings".
def result_with(metric, used_pct):
    return ('{"v":1,"type":"events","events":[{"seq":2,"monitor":"m","kind":"incident_opened",'
            '"in_incident":true,"result":{"check":"plugin","target":"t","status":"crit",'
            '"summary":"s","metrics":{"m":%s},"duration_ms":1,"at":"t"},"diagnostics":'
            '{"top_cpu":[{"pid":1,"name":"p","cpu_pct":99.9,"memory_bytes":1}],"top_memory":[],'
            '"disks":[{"mount":"/","used_pct":%s,"free_bytes":1}],"default_route":null,'
            '"dns_servers":[]}}]}' % (metric, used_pct)).encode()


long_floats = result_with("6.2717459944000996e104", "1.1695698339729451e74")
write("payload", "long-floats", long_floats)
write("frames", "long-floats", bytes([0x00, 0x02]) + frame(long_floats))

# Known crashers (README.md, "Findings"): not seeds, kept to reproduce.
# `target/x86_64-unknown-linux-gnu/release/payload regressions/payload/*`
for name, data in [
    ("float-drift", b'{"v":1,"type":"result","result":{"check":"","target":"","status":"ok",'
                    b'"summary":"","metrics":{"m":1.91254e79},"duration_ms":0,"at":""}}'),
    ("float-drift-found", result_with("6.2717459944000996e104", "191254e74")),
    ("cpu-pct-overflow", result_with("1.0", "1.0").replace(b'"cpu_pct":99.9', b'"cpu_pct":1e39')),
]:
    os.makedirs("regressions/payload", exist_ok=True)
    os.makedirs("regressions/frames", exist_ok=True)
    open(f"regressions/payload/{name}", "wb").write(data)
    open(f"regressions/frames/{name}", "wb").write(bytes([0x00, 0x00]) + frame(data))
os.makedirs("regressions/text", exist_ok=True)
open("regressions/text/truncate-under-ellipsis", "wb").write(b"abcd")
done = frame(payload({"type": "done"}))
prog = frame(payload(MESSAGES[1]))
write("frames", "stream-3", bytes([0x00, 0x05]) + prog + done + done)
write("frames", "stream-small-limit", bytes([0x82, 0x01]) + done + done)  # cap 32
write("frames", "truncated", bytes([0x00, 0x00]) + prog[:-1])
write("frames", "too-large", bytes([0x00, 0x00]) + struct.pack(">I", (1 << 20) + 1) + b"{")

write("text", "plain", "plain text ü".encode())
write("text", "controls", "a\u001b]0;owned\u0007b\nc\rd\te\u009b2J\u007f".encode())
write("text", "bidi", "\u202etxt.exe \u2066x\u2069 \u2028 \u200e".encode())
write("text", "json", '{"t":"a\\u001b[2J\u009b\u202e","n":[1,2.5,null,true]}'.encode())
write("text", "astral", "😀 \U0010ffff é".encode())


# libFuzzer dictionary (json.dict): every field name and message/enum tag
# found in proto/src, plus JSON pieces that reach edge cases.
def write_dict():
    import re
    src = "".join(open(f"../src/{f}.rs").read() for f in ("message", "result", "event"))
    fields = set(re.findall(r"^\s*(?:pub )?([a-z_][a-z0-9_]*):\s", src, re.M))
    variants = set()
    for enum in ["Message", "ErrorCode", "TicketChange", "Status", "EventKind", "Role"]:
        body = re.search(r"pub enum " + enum + r" \{(.*?)\n\}", src, re.S).group(1)
        for v in re.findall(r"^\s{4}([A-Z][A-Za-z]*)\b", body, re.M):
            variants.add(re.sub(r"(?<!^)([A-Z])", r"_\1", v).lower())
    fields -= {"self", "f", "other"}
    toks = sorted('"%s"' % f for f in fields) + sorted('"%s"' % v for v in variants)
    toks += ['{"v":1,', '"type":', '":"', '":[', '":{', "null", "true", "false", "1e39",
             "-0.0", "1.7976931348623157e308", "\\u0000", "\\ud800", '"--send="',
             '"--contains"', '"tcp"', '"http"', '"plugin"',
             # full-precision floats: where float parsing must round correctly
             "95.87872702291189", "9.772653672976701e107", "0.30000000000000004",
             "3.4028235e38", "3.4028236e38", "1.401298e-45", "2.2250738585072014e-308",
             "5e-324", "18446744073709551616", "-9223372036854775809"]
    with open("json.dict", "w") as f:
        f.write("# libFuzzer dictionary for frames/payload, written by gen_seeds.py:\n"
                "# firstline field names, message tags and JSON pieces.\n")
        for i, t in enumerate(toks):
            esc = t.replace("\\", "\\\\").replace('"', '\\"')
            f.write(f'kw{i}="{esc}"\n')


write_dict()
