// `lane/agentRestarted` (issue 12): the status bar says the agent was restarted, and a restart
// that failed is a warning with the reason.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { agentRestartText } from "../../src/agentRestartText";

describe("agent restart", () => {
    it("shows the server's message in the status bar", () => {
        const t = agentRestartText({
            message: "lane agent restarted (was killed or crashed; back in 85 ms)",
            reason: "died",
            downMs: 85,
            restarts: 1,
            error: null,
        });
        assert.equal(t.statusBar, "$(debug-restart) lane agent restarted (was killed or crashed; back in 85 ms)");
        assert.equal(t.warning, null);
    });

    it("warns with the reason when the agent could not be started again", () => {
        const t = agentRestartText({
            message: "lane agent died and could not be started again",
            reason: "died",
            downMs: 900,
            restarts: 2,
            error: "the router cannot listen on 127.0.0.1:4080",
        });
        assert.match(t.statusBar, /^\$\(warning\) lane agent died/);
        assert.equal(
            t.warning,
            "Lane: lane agent died and could not be started again: the router cannot listen on 127.0.0.1:4080",
        );
    });
});
