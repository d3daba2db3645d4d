"""Symbols: what a compiled module's artifact and its .wasm's DWARF say about its frames.

One dependency chain (artifact <- addrmap, debug_info, line_program <- dwarf, module_names <- lines), the only user
of pyelftools (DWARF 5 range lists; the rest is decoded by hand, lazily), and two
ways in: a module's own name (`module_name`), and source lines for a finished profile (`DebugInfo`,
`add_source_lines`).
"""

from wasmtime_gp._symbols.lines import DebugInfo, WasmSource, add_source_lines
from wasmtime_gp._symbols.module_names import module_name

__all__ = ["DebugInfo", "WasmSource", "add_source_lines", "module_name"]
