"""Tools from MCP servers: configuration (:mod:`.config`), the persona's naming (:mod:`.naming`),
the background hub that owns every connection (:mod:`.hub`, :mod:`.connection`), the tools in
the toolbox (:mod:`.toolbox`) and how a session puts them together (:mod:`.compose`).

Nothing here imports the ``mcp`` SDK at module level: the hub's thread does, once it starts.
"""
