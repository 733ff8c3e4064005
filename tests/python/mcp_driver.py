"""Drives `sealgate mcp` with the official Python MCP SDK (PyPI `mcp`), for
tests/tests/mcp.rs.

The Rust test sets up the world (a simulator host, moto behind a fault layer, a
workspace with agent, admin and approver keys, ceilings, buckets, an object) and
writes it to a JSON file; this script plays an agent's MCP client against two
servers it starts over stdio: one with the default flags, one with
--allow-inline-credentials. Each server runs behind `tee`, so every byte of the MCP
channel in both directions, and the server's stderr, lands in files the Rust test
scans for secrets afterwards.

It writes a report (every check with its outcome, and what it saw) and exits 0 even
when a check failed: the Rust test asserts on the report, so a failure shows which
check and why.

Usage: python mcp_driver.py CONFIG.json
"""

import asyncio
import json
import os
import stat
import subprocess
import sys
import traceback
import urllib.request

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError
import mcp.types as types
from pydantic import AnyUrl

CFG = json.load(open(sys.argv[1]))
REPORT = {"checks": [], "tools": {}, "events": []}


def check(name, ok, detail=""):
    REPORT["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)[:4000]})
    print(("ok   " if ok else "FAIL ") + name, file=sys.stderr, flush=True)


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def log(kind, **data):
    REPORT["events"].append({"kind": kind, **data})


def server(name, extra_args):
    """Server parameters: `sealgate mcp` behind tee, stdin and stdout copied to files."""
    d = CFG["transcripts"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SEALGATE_URL": CFG["url"],
        "SEALGATE_TOKEN": CFG["agent_key"],
        "SEALGATE_ADMIN_TOKEN": CFG["admin_key"],
        "SEALGATE_WORKSPACE": CFG["workspace"],
        # The most verbose logging there is: no log line may carry a secret either.
        "RUST_LOG": "trace",
        "SG_BIN": CFG["sealgate"],
        "SG_IN": os.path.join(d, f"{name}.in"),
        "SG_OUT": os.path.join(d, f"{name}.out"),
        "SG_ERR": os.path.join(d, f"{name}.err"),
    }
    script = 'tee -a "$SG_IN" | "$SG_BIN" mcp "$@" 2>>"$SG_ERR" | tee -a "$SG_OUT"'
    return StdioServerParameters(command="/bin/sh", args=["-c", script, "sh", *extra_args], env=env)


def approve(grant_id, decision="approve"):
    req = urllib.request.Request(
        f"{CFG['url']}/v1/approvals/{grant_id}",
        data=json.dumps({"decision": decision, "reason": "mcp test approver"}).encode(),
        headers={"Authorization": f"Bearer {CFG['approver_key']}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.load(r)


def access(bucket, actions, ttl=1800, run_id="mcp-run"):
    return {
        "account_id": CFG["account"],
        "actions": actions,
        "resources": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "regions": ["us-east-1"],
        "ttl_seconds": ttl,
        "reason": "mcp integration test",
        "run_id": run_id,
    }


# What a command run through `sealgate exec` does: use S3 with whatever credentials it
# was given, and hand the secrets it saw to the Rust test through a file (never stdout),
# so the test can look for exactly those values everywhere else.
USE_S3 = r"""
import json, os, sys, boto3
from botocore.config import Config
endpoint, bucket, secrets = sys.argv[1], sys.argv[2], sys.argv[3]
c = boto3.Session().get_credentials().get_frozen_credentials()
with open(secrets, "a") as f:
    f.write(json.dumps({"secret": c.secret_key, "token": c.token, "key_id": c.access_key}) + "\n")
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
print("listed", len(keys))
"""


def run_exec(grant_flag, grant_value):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SEALGATE_URL": CFG["url"],
        "SEALGATE_TOKEN": CFG["agent_key"],
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    cmd = [CFG["sealgate"], "exec", grant_flag, grant_value, "--",
           CFG["boto3_python"], "-c", USE_S3, CFG["s3_endpoint"], CFG["bucket"], CFG["secrets_file"]]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    log("exec", argv=cmd[:4], code=p.returncode, stdout=p.stdout, stderr=p.stderr)
    return p


def create_role(name, external_id):
    """The customer's role, trusting sealgate only with this External ID (boto3 from .venv)."""
    code = r"""
import json, sys, boto3
endpoint, name, ext = sys.argv[1], sys.argv[2], sys.argv[3]
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": ext}}}]}
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id=sys.argv[4], aws_secret_access_key=sys.argv[5])
iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
"""
    subprocess.run([CFG["boto3_python"], "-c", code, CFG["moto_url"], name, external_id,
                    CFG["moto_key_id"], CFG["moto_secret"]],
                   check=True, capture_output=True, text=True, timeout=60)


async def call(session, name, args, record=True):
    """A tool call; its text goes into the report's events unless `record` is off (the
    inline server's answers carry secrets by design, and the report is scanned)."""
    r = await session.call_tool(name, args)
    log("tool", name=name, is_error=bool(r.isError), text=text_of(r)[:2000] if record else "(not recorded)")
    return r


async def protocol_error(session, name, args):
    try:
        r = await session.call_tool(name, args)
        return None, f"no protocol error; isError={r.isError}: {text_of(r)[:300]}"
    except McpError as e:
        return e.error.code, e.error.message


async def default_session():
    updated = asyncio.Queue()

    async def on_message(m):
        if isinstance(m, types.ServerNotification) and isinstance(m.root, types.ResourceUpdatedNotification):
            await updated.put(str(m.root.params.uri))

    async with stdio_client(server("default", [])) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as s:
            init = await s.initialize()
            caps = init.capabilities
            check("resources can be subscribed to", caps.resources is not None and caps.resources.subscribe, caps)

            # Every tool, with a description and an input schema whose fields are described.
            tools = (await s.list_tools()).tools
            for t in tools:
                props = t.inputSchema.get("properties", {})
                REPORT["tools"][t.name] = {
                    "description": t.description or "",
                    "type": t.inputSchema.get("type"),
                    "fields": {k: v.get("description", "") for k, v in props.items()},
                }
            templates = (await s.list_resource_templates()).resourceTemplates
            check("grants are a resource template",
                  [t.uriTemplate for t in templates] == ["sealgate://grants/{grant_id}"], templates)

            # Scope and preview.
            r = await call(s, "aws_describe_scope", {"account_id": CFG["account"]})
            check("describe scope", not r.isError and "s3:Get*" in text_of(r), text_of(r))
            r = await call(s, "aws_preview_request", access(CFG["bucket"], ["s3:ListBucket"]))
            check("preview says auto_approve", not r.isError and r.structuredContent["decision"] == "auto_approve",
                  text_of(r))

            # Request → an active grant: id, status, expiry, secret_ref; no secret anywhere.
            r = await call(s, "aws_request_access", access(CFG["bucket"], ["s3:ListBucket", "s3:GetObject"]))
            g = r.structuredContent or {}
            check("request access is active", not r.isError and g.get("status") == "active", text_of(r))
            check("request answers id, status, expiry, secret_ref",
                  all(g.get(k) for k in ["grant_id", "status", "expires_at", "secret_ref"]), g)
            check("request names sealgate exec", "sealgate exec --secret-ref" in text_of(r), text_of(r))
            REPORT["active_grant"] = g.get("grant_id")
            secret_ref = g.get("secret_ref", "")

            # The runtime resolves the secret_ref: a real SDK uses the grant through exec.
            p = await asyncio.to_thread(run_exec, "--secret-ref", secret_ref)
            check("exec with the secret_ref lists the bucket", p.returncode == 0 and "listed" in p.stdout,
                  f"{p.returncode} {p.stdout} {p.stderr}")

            # Credentials inline are refused by default, with the way to use the grant.
            r = await call(s, "aws_get_credentials", {"grant_id": g.get("grant_id", "")})
            t = text_of(r)
            check("get_credentials is refused by default", r.isError, t)
            check("the refusal says how to use the grant",
                  "sealgate exec --grant" in t and "credential_process" in t, t)
            check("the refusal carries no credentials",
                  "secret_access_key" not in json.dumps(r.structuredContent or {}), r.structuredContent)

            # A request routed to an approver: a tool error that says how to wait; the client
            # subscribes, an approver approves, and the notification arrives.
            r = await call(s, "aws_request_access", access(CFG["pending_bucket"], ["s3:ListBucket"]))
            pg = r.structuredContent or {}
            pid = pg.get("grant_id", "")
            uri = f"sealgate://grants/{pid}"
            t = text_of(r)
            check("a pending grant is a tool error", r.isError and pg.get("status") == "pending", t)
            check("the pending error says how to wait", "aws_poll_grant" in t and uri in t, t)
            listed = [str(x.uri) for x in (await s.list_resources()).resources]
            check("the grant is listed as a resource", uri in listed, listed)
            res = await s.read_resource(AnyUrl(uri))
            check("the resource reads as pending", json.loads(res.contents[0].text)["status"] == "pending",
                  res.contents[0].text)
            await s.subscribe_resource(AnyUrl(uri))
            status, approved = await asyncio.to_thread(approve, pid)
            check("the approver approved", status == 200 and approved.get("status") == "active", approved)
            try:
                got = await asyncio.wait_for(updated.get(), timeout=40)
            except asyncio.TimeoutError:
                got = None
            check("notifications/resources/updated arrives for the grant", got == uri, got)
            res = await s.read_resource(AnyUrl(uri))
            check("the resource now reads active", json.loads(res.contents[0].text)["status"] == "active",
                  res.contents[0].text)
            r = await call(s, "aws_poll_grant", {"grant_id": pid, "wait_seconds": 1})
            check("poll says active", not r.isError and r.structuredContent["status"] == "active", text_of(r))
            await s.unsubscribe_resource(AnyUrl(uri))

            # A denial while subscribed is pushed too.
            r = await call(s, "aws_request_access", access(CFG["pending_bucket"], ["s3:GetObject"], run_id="mcp-deny"))
            did = (r.structuredContent or {}).get("grant_id", "")
            duri = f"sealgate://grants/{did}"
            await s.subscribe_resource(AnyUrl(duri))
            status, denied = await asyncio.to_thread(approve, did, "deny")
            check("the approver denied", status == 200 and denied.get("status") == "denied", denied)
            try:
                got = await asyncio.wait_for(updated.get(), timeout=40)
            except asyncio.TimeoutError:
                got = None
            check("the denial is pushed as notifications/resources/updated", got == duri, got)
            r = await call(s, "aws_poll_grant", {"grant_id": did})
            check("poll on the denied grant is a tool error", r.isError and "denied" in text_of(r), text_of(r))

            # A denial: outside the ceiling, a tool error that says what next.
            r = await call(s, "aws_request_access", access(CFG["bucket"], ["s3:DeleteObject"]))
            t = text_of(r)
            check("a denial is a tool error", r.isError and (r.structuredContent or {}).get("status") == "denied", t)
            check("the denial says what next", "aws_describe_scope" in t and "Do not send the same request" in t, t)

            # Release: exec on a released grant fails cleanly (exit 3).
            r = await call(s, "aws_release_access", {"grant_id": g.get("grant_id", "")})
            check("release", not r.isError and r.structuredContent["status"] == "released", text_of(r))
            p = await asyncio.to_thread(run_exec, "--grant", g.get("grant_id", ""))
            check("exec on the released grant exits 3", p.returncode == 3 and "not active" in p.stderr,
                  f"{p.returncode} {p.stderr}")
            r = await call(s, "aws_poll_grant", {"grant_id": g.get("grant_id", "")})
            check("poll on the released grant is a tool error", r.isError and "released" in text_of(r), text_of(r))

            # OIDC: the token goes to a private file; its inclusion is proven and checked.
            r = await call(s, "oidc_mint_token", {"task_id": "mcp-test", "ttl_seconds": 600})
            m = r.structuredContent or {}
            path = m.get("token_file", "")
            check("mint answers a token file, not the token", not r.isError and path and "token" not in m, m)
            mode = stat.S_IMODE(os.stat(path).st_mode) if path and os.path.exists(path) else None
            check("the token file is 0600", mode == 0o600, oct(mode or 0))
            with open(path) as f:
                token = f.read()
            with open(CFG["token_file_copy"], "w") as f:
                f.write(token)
            proven = None
            for _ in range(40):
                r = await call(s, "audit_prove_token", {"jti": m.get("jti", "")})
                proven = r
                if not r.isError or not (r.structuredContent or {}).get("retry"):
                    break
                await asyncio.sleep(0.5)
            pc = proven.structuredContent or {}
            check("audit_prove_token verifies", not proven.isError and pc.get("verified") is True, text_of(proven))
            REPORT["proof"] = pc
            r = await call(s, "audit_prove_token", {"token": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")})
            check("an altered token is not proven", r.isError, text_of(r))

            # BYO: the role does not trust the External ID yet → the typed error says where it goes.
            reg = {"role_arn": CFG["byo_role_arn"], "bucket": CFG["byo_bucket"], "region": "us-east-1"}
            r = await call(s, "byo_register_bucket", reg)
            b = r.structuredContent or {}
            ext = (b.get("grant") or {}).get("external_id", "")
            t = text_of(r)
            check("BYO_ASSUME_ROLE_FAILED is a tool error", r.isError and "BYO_ASSUME_ROLE_FAILED" in t, t)
            check("it says the External ID goes in sts:ExternalId",
                  "sts:ExternalId" in t and ext and ext in t and "byo_check_bucket" in t, t)
            await asyncio.to_thread(create_role, CFG["byo_role_arn"].rsplit("/", 1)[1], ext)
            r = await call(s, "byo_check_bucket", {"run_id": "mcp-run"})
            check("byo check passes once the role trusts it",
                  not r.isError and r.structuredContent["grant"]["status"] == "active", text_of(r))
            r = await call(s, "byo_register_bucket", reg)
            t = text_of(r)
            check("a second bucket is a 409 with the two safe paths",
                  r.isError and "BYO_GRANT_EXISTS" in t and "byo_check_bucket" in t and "byo_disconnect_bucket" in t, t)
            r = await call(s, "byo_register_artifact", {"s3_uri": CFG["byo_object"], "expected_sha256": CFG["byo_sha256"],
                                                       "run_id": "mcp-run"})
            check("byo artifact registered", not r.isError and r.structuredContent["sha256"] == CFG["byo_sha256"],
                  text_of(r))
            r = await call(s, "byo_get_audit", {"run_id": "mcp-run", "limit": 100})
            kinds = [e["event_type"] for e in (r.structuredContent or {}).get("entries", [])]
            check("byo audit lists the calls", not r.isError and "sts:AssumeRole" in kinds and "s3:HeadObject" in kinds,
                  kinds)
            r = await call(s, "byo_disconnect_bucket", {})
            check("disconnect is refused while an artifact uses the grant",
                  r.isError and "BYO_GRANT_IN_USE" in text_of(r), text_of(r))
            r = await call(s, "byo_rotate_external_id", {})
            new_ext = ((r.structuredContent or {}).get("grant") or {}).get("external_id")
            check("rotate gives a new External ID", not r.isError and new_ext and new_ext != ext, text_of(r))

            # Malformed arguments: JSON-RPC invalid params, not tool results.
            for name, args in [
                ("aws_poll_grant", {"grant_id": 42}),
                ("aws_poll_grant", {"grant_id": "gr_1", "surprise": True}),
                ("aws_request_access", {"account_id": CFG["account"]}),
                ("aws_get_credentials", {"grant_id": "../../v1/admin"}),
                ("no_such_tool", {}),
            ]:
                code, msg = await protocol_error(s, name, args)
                check(f"malformed {name} {sorted(args)} is invalid params", code == -32602, f"{code} {msg}")


async def inline_session():
    async with stdio_client(server("inline", ["--allow-inline-credentials"])) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            r = await call(s, "aws_request_access", access(CFG["bucket"], ["s3:ListBucket"], run_id="mcp-inline"))
            gid = (r.structuredContent or {}).get("grant_id", "")
            r = await call(s, "aws_get_credentials", {"grant_id": gid}, record=False)
            c = r.structuredContent or {}
            check("get_credentials works with --allow-inline-credentials",
                  not r.isError and c.get("secret_access_key") and c.get("session_token"), sorted(c))
            with open(CFG["inline_file"], "w") as f:
                json.dump({"secret": c.get("secret_access_key"), "token": c.get("session_token")}, f)
            r = await call(s, "oidc_mint_token", {}, record=False)
            check("mint includes the token with --allow-inline-credentials",
                  not r.isError and (r.structuredContent or {}).get("token", "").count(".") == 2,
                  sorted(r.structuredContent or {}))


async def main():
    for name, session in [("default", default_session), ("inline", inline_session)]:
        try:
            await session()
        except Exception:
            check(f"the {name} session ran to the end", False, traceback.format_exc())
    with open(CFG["report"], "w") as f:
        json.dump(REPORT, f, indent=1)


asyncio.run(main())
