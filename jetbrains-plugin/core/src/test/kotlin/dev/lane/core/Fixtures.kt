package dev.lane.core

import com.google.gson.Gson

/** A status as `lane lsp` sends it (the wire JSON, read with Gson as LSP4J reads it): two lanes,
 * one stacked on the other, baseline, traffic. The VS Code extension's test fixture, same values. */
const val SAMPLE_STATUS_JSON = """
{
  "workspaces": [{
    "folder": "/src/b", "service": "demo.b", "protocol": "http", "branch": "feat/login",
    "commit": "0123456789abcdef0123456789abcdef01234567", "error": null,
    "host": "b.demo.localhost:4080", "url": "http://b.demo.localhost:4080/"
  }],
  "backend": "local", "backendError": null, "activeLane": "feature-x", "laneHeader": "x-lane",
  "router": "127.0.0.1:4080",
  "lanes": [
    {"id": "team", "parent": null, "owner": "ann", "createdAt": 1000, "expiresAt": 90000,
     "expiresInSecs": 0, "chain": ["team"], "services": []},
    {"id": "feature-x", "parent": "team", "owner": "bob", "createdAt": 1000, "expiresAt": 20000,
     "expiresInSecs": 18727, "chain": ["feature-x", "team"], "services": [
       {"service": "demo.b", "lane": "feature-x", "version": "feat/login@01234567", "branch": "feat/login",
        "commit": "01234567", "owner": "bob", "state": "healthy", "addr": "127.0.0.1:46010", "requestsPerMinute": 12,
        "log": "/home/bob/.lane/logs/feature-x/demo.b.log"},
       {"service": "demo.c", "lane": "feature-x", "version": "fix@89abcdef", "branch": null, "commit": null,
        "owner": "bob", "state": "healthy", "addr": "127.0.0.1:46011", "requestsPerMinute": 3, "log": null},
       {"service": "demo.c", "lane": "feature-x", "version": "fix@89abcdef", "branch": null, "commit": null,
        "owner": "bob", "state": "starting", "addr": "127.0.0.1:46012", "requestsPerMinute": 0, "log": null}
    ]}
  ],
  "baseline": [
    {"service": "demo.a", "lane": "baseline", "version": null, "branch": null, "commit": null, "owner": null,
     "state": "healthy", "addr": "127.0.0.1:46000", "requestsPerMinute": 40, "log": null},
    {"service": "demo.b", "lane": "baseline", "version": null, "branch": null, "commit": null, "owner": null,
     "state": "healthy", "addr": "127.0.0.1:46001", "requestsPerMinute": 7, "log": null}
  ],
  "healthy": 2, "total": 3, "revision": "42", "deployFailures": [], "baselineSync": []
}
"""

fun sampleStatus(): LaneStatus = Gson().fromJson(SAMPLE_STATUS_JSON, LaneStatus::class.java)
