"""Drives `pipeline-mcp` with the Python MCP SDK (PyPI `mcp`), over stdio and over
streamable HTTP, and prints what it saw as one JSON object on stdout.

Run by tests/tests/integration/mcp.rs with the environment deploy/local/mcp-client.sh
installs. It asserts nothing itself: the Rust test checks the output against Postgres.

    python client.py --binary target/debug/pipeline-mcp --api-url http://127.0.0.1:8742 \
        --key KEY --http-url http://127.0.0.1:9110/mcp --query sourdough \
        --url https://example.org/a --project mcp-stdio --http-project mcp-http

Per transport: the tools listed, a `search`, a `submit` (under its own project), a
`search` with an out-of-bounds limit, a `job_status` and a `trace_url` (by URL and job) of
the submitted job, a `job_status` of an unknown job, `dlq_stats`, and a read of the Markdown
resource of the first search hit. Over HTTP also: a request without a key
(its status) and a tool call with a wrong key (the API's refusal).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def parsed(result: Any) -> dict[str, Any]:
    """A tool result: whether it is an error, its text, and its JSON when it is JSON."""
    text = text_of(result)
    out: dict[str, Any] = {"is_error": bool(result.is_error), "text": text}
    try:
        out["json"] = json.loads(text)
    except ValueError:
        pass
    return out


async def exercise(client: Client, query: str, url: str, project: str) -> dict[str, Any]:
    tools = await client.list_tools()
    templates = await client.list_resource_templates()
    search = parsed(await client.call_tool("search", {"query": query, "limit": 5}))
    submit = parsed(await client.call_tool("submit", {"urls": [url, "not a url"], "project": project}))
    bad = parsed(await client.call_tool("search", {"query": query, "limit": 1000}))
    status = trace = None
    if "json" in submit:
        job_id = submit["json"]["job_id"]
        status = parsed(await client.call_tool("job_status", {"job_id": job_id}))
        trace = parsed(await client.call_tool("trace_url", {"url": url, "job_id": job_id}))
    unknown_job = parsed(await client.call_tool("job_status", {"job_id": "00000000-0000-0000-0000-000000000000"}))
    dlq = parsed(await client.call_tool("dlq_stats", {}))
    markdown = None
    hits = search.get("json", {}).get("hits", [])
    if hits:
        uri = f"pipeline://sources/{hits[0]['source_id']}/markdown"
        read = await client.read_resource(uri)
        markdown = {"uri": uri, "text": "".join(getattr(c, "text", "") for c in read.contents)}
    return {
        "tools": sorted(t.name for t in tools.tools),
        "resource_templates": sorted(t.uri_template for t in templates.resource_templates),
        "search": search,
        "submit": submit,
        "bad_search": bad,
        "job_status": status,
        "trace_url": trace,
        "unknown_job": unknown_job,
        "dlq_stats": dlq,
        "markdown": markdown,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--api-url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--http-url", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--http-project", required=True)
    args = ap.parse_args()
    out: dict[str, Any] = {}

    stdio = StdioServerParameters(
        command=args.binary,
        args=["--stdio"],
        env={"PIPELINE_API_URL": args.api_url, "PIPELINE_API_KEY": args.key, "RUST_LOG": "warn"},
    )
    async with Client(stdio) as client:
        out["stdio"] = await exercise(client, args.query, args.url, args.project)

    headers = {"Authorization": f"Bearer {args.key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(args.http_url, http_client=http)) as client:
            out["http"] = await exercise(client, args.query, args.url, args.http_project)

    # No key: refused before any MCP handling (an initialize request, as a client's first).
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "no-key", "version": "0"},
        },
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        resp = await http.post(
            args.http_url,
            json=initialize,
            headers={"Accept": "application/json, text/event-stream"},
        )
        out["http_no_key"] = {"status": resp.status_code, "body": resp.text}
        # The SDK's own client without a key fails to connect.
        try:
            async with Client(streamable_http_client(args.http_url, http_client=http)) as client:
                await client.list_tools()
            out["http_no_key_client"] = {"connected": True}
        except Exception as e:  # noqa: BLE001 - any failure is the expected outcome
            out["http_no_key_client"] = {"connected": False, "error": type(e).__name__}

    # A wrong key passes the bearer check; the API refuses it at the first call.
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer wrong-key"}, timeout=30) as http:
        async with Client(streamable_http_client(args.http_url, http_client=http)) as client:
            out["http_wrong_key"] = parsed(await client.call_tool("dlq_stats", {}))

    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    anyio.run(main)
