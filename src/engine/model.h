/* The scheduling data model: the hidden keys under /_flotilla/ through which the fleet API, the
 * engine (on the Raft leader) and the agents (on every machine) share what should run where and
 * what does. Every value is a JSON object; the field names below are the contract between those
 * modules, so change them only together. Writes go through the log like any other key. */
#ifndef FLT_ENGINE_MODEL_H
#define FLT_ENGINE_MODEL_H

/* /_flotilla/units/<name>  written by the fleet API (PUT/DELETE /fleet/v1/units/<name>)
 *   {"name": "web@1.service",
 *    "desiredState": "inactive" | "loaded" | "launched",
 *    "hash": "<sha1 hex of the normalized unit text, as fleet's unit hash>",
 *    "options": [{"section": "Unit", "name": "Description", "value": "x"}, ...]}
 * Templates (web@.service) are stored like units and never scheduled. The options are immutable
 * unless replaced; desiredState changes alone. */
#define MODEL_UNITS "/_flotilla/units"

/* /_flotilla/machines/<id>  written only by the leader, from the agents' heartbeats; present
 * while the machine is alive (the leader deletes it when it declares the machine dead)
 *   {"id": "<32 hex>", "publicIP": "10.0.0.1", "metadata": {"region": "us-east"},
 *    "version": "0.1.0", "runtimes": ["exec", "docker"],
 *    "endpoint": "http://10.0.0.1:2379" (this machine's own client URL, for journals),
 *    "memory": <bytes units may use, 0 = not limited>, "cpus": <milli-CPUs, 0 = not limited>}
 * Liveness is kept in the leader's memory (agents heartbeat to it every second, see
 * MODEL_HEARTBEAT_PATH); the log sees a write only when a machine appears, changes or dies. */
#define MODEL_MACHINES "/_flotilla/machines"

/* /_flotilla/metadata/<id>  written by the fleet API's machine metadata PATCH
 *   {"key": "value", ...}   overrides merged over the metadata the agent reports (the engine, the
 *   API and the agents all use the merged view)
 */
#define MODEL_METADATA "/_flotilla/metadata"

/* /_flotilla/schedule/<name>  written only by the engine
 *   {"machineID": "<32 hex>"}            placed
 *   {"reason": "no machine has ..."}     cannot be placed now, and why (users see this)
 * Absent: not (or no longer) to be placed: desired inactive, or the unit is gone. Global units
 * have no schedule key: every agent whose machine matches runs them. */
#define MODEL_SCHEDULE "/_flotilla/schedule"

/* /_flotilla/states/<name>/<machine id>  written only by that machine's agent, on change
 *   {"machineID": "...", "hash": "<unit hash the agent runs>",
 *    "loadState": "loaded", "activeState": "active", "subState": "running",
 *    "since": <unix ns of the last activeState change>, "mainPID": 1776, "handle": "<container
 *    id or pid>", "restarts": 0, "exitCode": -1, "exitSignal": 0, "result": "success",
 *    "message": "<why it failed, or absent>"}
 * One key per machine so that a global unit, or a unit moving between machines, shows each. */
#define MODEL_STATES "/_flotilla/states"

/* An agent's heartbeat: POST of the machine object above (as JSON) to any member's client URL at
 * this path; a follower passes it on to the leader. 204 when taken. */
#define MODEL_HEARTBEAT_PATH "/_flotilla/v1/heartbeat"

/* The journal of a unit on the machine that runs it: GET
 * /_flotilla/v1/journal/<unit>?lines=N[&follow=true][&machine=<id>] on any node (it proxies to
 * the machine's public client URL when the unit runs elsewhere); text/plain lines as journalctl
 * prints them ("Jul 04 10:22:01 host ident[pid]: text"). */
#define MODEL_JOURNAL_PATH "/_flotilla/v1/journal/"

/* What `flotctl status` shows: GET /_flotilla/v1/status/<unit>[?machine=<id>] on any node
 * (proxied like the journal), JSON
 *   {"unit": "x.service", "description": "...", "machineID": "...", "hostname": "core-03",
 *    "loadState": "loaded", "activeState": "active", "subState": "running",
 *    "since": <unix ns>, "mainPID": 1776, "mainCommand": "/usr/bin/docker run ...",
 *    "processes": [{"kind": "ExecStartPre", "command": "/usr/bin/docker rm x", "pid": 1719,
 *                   "exitCode": 1, "exitSignal": 0}, ...],
 *    "restarts": 0, "result": "success", "message": "..."}
 * 404 with {"message": ...} when the unit does not run there. */
#define MODEL_STATUS_PATH "/_flotilla/v1/status/"

#endif
