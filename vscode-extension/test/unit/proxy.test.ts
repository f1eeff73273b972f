// What Switch Traffic says (issue 14, item 4): only requests that carry the lane reach it.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { switchText } from "../../src/proxy";

describe("switchText", () => {
    const listen = "127.0.0.1:4081";
    it("without the proxy: only copied requests enter the lane, and how to make others follow", () => {
        const t = switchText("feature-x", { running: false, listen });
        assert.doesNotMatch(t, /your requests now enter/);
        assert.match(t, /requests copied from Lane \(Copy Request\) now enter feature-x/);
        assert.match(t, /Other requests still reach baseline/);
        assert.match(t, /HTTP_PROXY=http:\/\/127\.0\.0\.1:4081/);
    });
    it("with the proxy: requests sent through it enter the lane, others do not", () => {
        const t = switchText("feature-x", { running: true, listen });
        assert.match(t, /requests sent through the lane proxy \(HTTP_PROXY=http:\/\/127\.0\.0\.1:4081\) and requests copied from Lane now enter feature-x/);
        assert.match(t, /without the proxy still reach baseline/);
    });
    it("back to baseline", () => {
        assert.equal(switchText("baseline", { running: false, listen }), "Lane: your requests enter baseline again (no lane header).");
    });
});
