/**
 * Token buckets per instance and action, on a clock the test moves by hand.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultRateLimits, RateLimitedError, RateLimiter } from "../../src/domain/rate-limit.js";

function limiterAt(limits = defaultRateLimits) {
  const clock = { now: 0 };
  return { clock, limiter: new RateLimiter(limits, () => clock.now) };
}

function refusal(run: () => void): RateLimitedError {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof RateLimitedError, String(err));
    return err;
  }
  assert.fail("the call passed");
}

describe("RateLimiter", () => {
  test("ten test mails pass at once, the eleventh is resource_exhausted with a retry hint of six seconds", () => {
    const { limiter } = limiterAt();
    for (let i = 0; i < 10; i++) limiter.take("test_mail", "i1");

    const err = refusal(() => limiter.take("test_mail", "i1"));
    assert.equal(err.kind, "resource_exhausted");
    assert.equal(err.id, "RATE-lim01");
    assert.equal(err.retryAfterMs, 6000);
    assert.equal(err.message, "too many test mails for this instance (at most 10 per minute); retry in 6 s");
  });

  test("the bucket refills with time, and a refused call spends nothing", () => {
    const { clock, limiter } = limiterAt();
    for (let i = 0; i < 10; i++) limiter.take("test_mail", "i1");
    refusal(() => limiter.take("test_mail", "i1"));
    refusal(() => limiter.take("test_mail", "i1"));

    clock.now += 6000;
    limiter.take("test_mail", "i1");
    const err = refusal(() => limiter.take("test_mail", "i1"));
    assert.equal(err.retryAfterMs, 6000);
  });

  test("instances and actions have buckets of their own", () => {
    const { limiter } = limiterAt();
    for (let i = 0; i < 10; i++) limiter.take("test_mail", "i1");
    refusal(() => limiter.take("test_mail", "i1"));

    limiter.take("test_mail", "i2");
    limiter.take("send_mail", "i1");
  });

  test("sends burst to 100 and then refill at 100 per second", () => {
    const { clock, limiter } = limiterAt();
    for (let i = 0; i < 100; i++) limiter.take("send_mail", "i1");
    const err = refusal(() => limiter.take("send_mail", "i1"));
    assert.equal(err.retryAfterMs, 10);
    assert.match(err.message, /^too many mails for this instance \(at most 100 per second\); retry in 1 s$/);

    clock.now += 50;
    for (let i = 0; i < 5; i++) limiter.take("send_mail", "i1");
    refusal(() => limiter.take("send_mail", "i1"));
  });

  test("an action without a limit always passes", () => {
    const { limiter } = limiterAt({ test_mail: undefined, send_mail: undefined });
    for (let i = 0; i < 10_000; i++) limiter.take("send_mail", "i1");
  });
});
