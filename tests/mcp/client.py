"""An independent MCP client for tests/mcp.rs: the official `mcp` Python SDK over the
Streamable HTTP transport against a running ringway.

Usage: client.py URL API_KEY
Runs one session with the API key (initialize, list tools, calls that reach the upstream, a
call the validation refuses, an unknown tool) and one without it (the route's policy denies),
then prints what it saw as one JSON object on stdout. tests/mcp.rs asserts on it.
"""

import asyncio
import json
import sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def call_report(result):
    return {
        "isError": bool(result.is_error),
        "text": text_of(result),
        "structured": result.structured_content,
    }


async def session(url, headers, work):
    async with create_mcp_http_client(headers=headers, timeout=httpx2.Timeout(20.0)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                init = await asyncio.wait_for(s.initialize(), 20)
                return await work(s, init)


async def with_key(s, init):
    out = {
        "protocol": init.protocol_version,
        "server": init.server_info.name,
        "has_tools": init.capabilities.tools is not None,
    }
    listed = await s.list_tools()
    out["tools"] = {t.name: t.input_schema for t in listed.tools}
    out["list"] = call_report(await s.call_tool("listPets", {"limit": 2}))
    out["show"] = call_report(await s.call_tool("showPetById", {"petId": "p 1"}))
    out["create"] = call_report(
        await s.call_tool("createPet", {"body": {"id": 7, "name": "rex"}})
    )
    out["bad_arg"] = call_report(await s.call_tool("listPets", {"limit": "many"}))
    try:
        await s.call_tool("noSuchTool", {})
        out["unknown"] = None
    except MCPError as e:
        out["unknown"] = {"code": e.error.code, "message": e.error.message}
    try:
        await s.call_tool("showPetById", {})
        out["missing_arg"] = None
    except MCPError as e:
        out["missing_arg"] = {"code": e.error.code, "message": e.error.message}
    await s.send_ping()
    return out


async def without_key(s, init):
    return {"denied": call_report(await s.call_tool("listPets", {}))}


async def main():
    url, key = sys.argv[1], sys.argv[2]
    report = await session(url, {"X-API-Key": key}, with_key)
    report.update(await session(url, {}, without_key))
    bad = await session(url, {"X-API-Key": "rwk_not_a_real_key"}, without_key)
    report["bad_key"] = bad["denied"]
    print(json.dumps(report))


asyncio.run(main())
