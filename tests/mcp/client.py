"""An independent MCP client for tests/mcp.rs: the official `mcp` Python SDK over the
Streamable HTTP transport against a running ringway.

Usage: client.py URL API_KEY
Runs one session with the API key (initialize, list tools, calls that reach the upstream, a
call the validation refuses, an unknown tool) and one without it (the route's policy denies),
then prints what it saw as one JSON object on stdout. tests/mcp.rs asserts on it.
"""

import asyncio
import contextlib
import json
import sys

from mcp.client.session import ClientSession

try:  # the SDK's 2.x names
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.exceptions import MCPError
except ImportError:  # 1.x
    from mcp.client.streamable_http import streamablehttp_client
    from mcp.shared.exceptions import McpError as MCPError

    streamable_http_client = None


@contextlib.asynccontextmanager
async def transport(url, headers):
    """(read, write) streams of a Streamable HTTP connection sending `headers`."""
    if streamable_http_client is not None:
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                yield read, write
    else:
        async with streamablehttp_client(url, headers=headers) as (read, write, _):
            yield read, write


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def call_report(result):
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = getattr(result, "isError", False)
    structured = getattr(result, "structured_content", None)
    if structured is None:
        structured = getattr(result, "structuredContent", None)
    return {"isError": bool(is_error), "text": text_of(result), "structured": structured}


async def session(url, headers, work):
    async with transport(url, headers) as (read, write):
        async with ClientSession(read, write) as s:
            init = await asyncio.wait_for(s.initialize(), 20)
            return await work(s, init)


async def with_key(s, init):
    out = {
        "protocol": getattr(init, "protocol_version", None) or getattr(init, "protocolVersion", None),
        "server": (getattr(init, "server_info", None) or getattr(init, "serverInfo")).name,
        "has_tools": init.capabilities.tools is not None,
    }
    listed = await s.list_tools()
    out["tools"] = {
        t.name: getattr(t, "input_schema", None) or getattr(t, "inputSchema", None) for t in listed.tools
    }
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


# Bounded: a hung gateway fails the test instead of stalling it.
asyncio.run(asyncio.wait_for(main(), 60))
