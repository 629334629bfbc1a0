/* policy_probe: an auth.lua for tests of the policy sandbox. It runs the Lua
 * text handed to it as the room id (through the sandbox's own load, so it
 * runs exactly as policy code does) under pcall, and denies with
 * "ok:<value>", "err:<message>" or "load:<message>" as the reason. A call
 * the sandbox stops falls back instead. */
#ifndef EDGEREC_TEST_POLICY_PROBE_H
#define EDGEREC_TEST_POLICY_PROBE_H

static const char policy_probe_auth[] =
	"local M = {}\n"
	"function M.authorize(action, caller, rec, code)\n"
	"  local f, e = load(code, '=probe')\n"
	"  if not f then return false, 'load:' .. tostring(e) end\n"
	"  local ok, v = pcall(f)\n"
	"  return false, (ok and 'ok:' or 'err:') .. tostring(v)\n"
	"end\n"
	"return M\n";

#endif
