// Unit tests of the agent desk's DOM-free logic (node --test tests/web/): the three-ring
// countdown and the offer details read from the INVITE's headers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ringProgress } from "../../web/js/agent/ringer.js";

test("the countdown splits the offer into three rings and counts the seconds down", () => {
  assert.deepEqual(ringProgress(0, 18000), { ring: 1, leftSecs: 18, fraction: 0 });
  assert.equal(ringProgress(5999, 18000).ring, 1);
  assert.equal(ringProgress(6000, 18000).ring, 2);
  assert.equal(ringProgress(12500, 18000).ring, 3);
  assert.equal(ringProgress(12500, 18000).leftSecs, 6);
  const over = ringProgress(30000, 18000);
  assert.equal(over.ring, 3, "never past the third ring");
  assert.equal(over.leftSecs, 0);
  assert.equal(over.fraction, 1);
  assert.equal(ringProgress(-5, 18000).ring, 1, "a clock step back stays at ring 1");
  assert.equal(ringProgress(100, 0).ring, 3, "a zero timeout does not divide by zero");
});

test("the wallboard's browser phone reads dialled monitoring codes and mode digits", async () => {
  const { parseMonitorCode, modeDigit } = await import("../../web/js/sup_phone.js");
  assert.deepEqual(parseMonitorCode("*311002"), { monitorMode: "listen", agent: "1002" });
  assert.deepEqual(parseMonitorCode(" *331003 "), { monitorMode: "barge", agent: "1003" });
  assert.equal(parseMonitorCode("*341002"), null);
  assert.equal(parseMonitorCode("100"), null);
  assert.equal(parseMonitorCode("*31"), null);
  assert.equal(modeDigit("listen"), "1");
  assert.equal(modeDigit("whisper"), "2");
  assert.equal(modeDigit("barge"), "3");
  assert.equal(modeDigit("shout"), null);
});

test("the phone's WebRTC configuration carries the session's STUN/TURN servers", async () => {
  const { Phone } = await import("../../web/js/agent/phone.js");
  const turn = { urls: ["turn:turn.example.com:3478"], username: "desk", credential: "s3cret" };
  const phone = new Phone({ extension: "1001", password: "x", events: {}, iceServers: [turn] });
  assert.deepEqual(phone.mediaOptions().pcConfig.iceServers, [turn]);
  const bare = new Phone({ extension: "1001", password: "x", events: {} });
  assert.deepEqual(bare.mediaOptions().pcConfig.iceServers, [], "none configured: host candidates");
});
